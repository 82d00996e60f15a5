"""Temporary effectors: zero (restore or re-entry at zero) and noise, counted in training steps."""

from __future__ import annotations

import pytest
import torch

from gstbench.builtin.impl.effectors import NoiseEffector, ZeroEffector, _unit_tensors
from gstbench.builtin.models import cnn1d
from gstbench.components import PruningContext
from gstbench.plan.parse import cell_from_config
from gstbench.engine import run_cell
from gstbench.pruning import layer_states

from conftest import train_steps

SHAPE = (1, 40)
TARGETS = torch.tensor([1, 4, 9])


def setup(seed=0):
    torch.manual_seed(seed)
    model = cnn1d(SHAPE, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(64, *SHAPE), torch.randint(0, 10, (64,))
    step(model, opt, x, y, None, n=3)
    layer = layer_states(model, ["conv3"])["conv3"]
    assert (layer.bn.bias[TARGETS] > 0).any() and (layer.bn.bias[TARGETS] <= 0).any()  # both cases covered
    layer.alive[TARGETS] = False
    return model, opt, x, y, layer, PruningContext(model, opt, x[:2], torch.Generator().manual_seed(seed))


def step(model, opt, x, y, effector, n=1):
    train_steps(model, opt, x, y, n, effector.after_step if effector is not None else None)


def snapshot(layer):
    return {k: t[TARGETS].detach().clone() for k, t in _unit_tensors(layer).items()}


def test_zero_with_restore_returns_exactly_the_pre_event_weights_and_bn_statistics():
    model, opt, x, y, layer, ctx = setup()
    before = snapshot(layer)
    others = layer.conv.weight[[0, 2, 3]].detach().clone()
    effector = ZeroEffector(steps=4, restore=True)
    effector.apply(layer, TARGETS, ctx)
    for k in range(3):  # steps 1..3 of 4: the forward passes see zeros
        assert torch.count_nonzero(layer.conv.weight[TARGETS]) == 0
        assert torch.count_nonzero(layer.bn.weight[TARGETS]) == torch.count_nonzero(layer.bn.bias[TARGETS]) == 0
        step(model, opt, x, y, effector)
    assert not torch.equal(layer.bn.running_mean[TARGETS], before["bn.running_mean"])  # stats moved meanwhile
    step(model, opt, x, y, effector)  # step 4: released
    after = snapshot(layer)
    for k in before:
        assert torch.equal(after[k], before[k]), k
    assert not torch.equal(layer.conv.weight[[0, 2, 3]], others)  # the rest trained as usual
    assert effector.active == []


def test_re_entry_at_zero_starts_from_zero_and_trains_afterwards():
    model, opt, x, y, layer, ctx = setup()
    before = snapshot(layer)
    effector = ZeroEffector(steps=3, restore=False)
    effector.apply(layer, TARGETS, ctx)
    step(model, opt, x, y, effector, n=3)
    assert torch.count_nonzero(layer.conv.weight[TARGETS]) == 0
    assert torch.count_nonzero(opt.state[layer.conv.weight]["exp_avg"][TARGETS]) == 0
    for k in ("bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        assert torch.equal(snapshot(layer)[k], before[k]), k
    step(model, opt, x, y, effector, n=2)
    regrown = (layer.conv.weight[TARGETS].detach().flatten(1) != 0).any(dim=1)
    # every channel whose restored beta lets gradient through the ReLU regrows (beta's own
    # optimizer momentum may carry a slightly negative one over too)
    assert regrown[before["bn.bias"] > 0].all()


def test_noise_has_the_variance_of_the_untargeted_filters_and_stops_after_n_steps():
    model, opt, x, y, layer, ctx = setup()
    w = layer.conv.weight
    expected = float(w.detach()[layer.alive].var())
    effector = NoiseEffector(steps=60, variance="untargeted")
    increments = []
    last = w.detach().clone()
    effector.apply(layer, TARGETS, ctx)
    for _ in range(60):  # no optimizer step: only the effector moves the weights
        increments.append((w.detach() - last)[TARGETS].flatten())
        last = w.detach().clone()
        effector.after_step()
    draws = torch.cat(increments).double()
    n = draws.numel()  # 60 draws x 3 filters x 64 x 3 weights
    assert torch.equal(w.detach(), last)  # the 60th step added nothing: N draws in all
    assert torch.count_nonzero(increments[-1]) == increments[-1].numel()
    ratio = float(draws.var()) / expected
    assert abs(ratio - 1) < 6 * (2 / (n - 1)) ** 0.5, ratio  # chi-square: sd of the ratio is sqrt(2/(n-1))
    assert abs(float(draws.mean())) < 6 * (expected / n) ** 0.5
    assert torch.equal(w.detach()[layer.alive], last[layer.alive])  # untargeted filters untouched


def test_noise_is_seeded_and_a_fixed_variance_is_honored():
    runs = []
    for _ in range(2):
        model, opt, x, y, layer, ctx = setup(seed=3)
        NoiseEffector(steps=1, variance=0.25).apply(layer, TARGETS, ctx)
        runs.append(layer.conv.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="'untargeted' or a number > 0"):
        NoiseEffector(steps=1, variance="large")
    with pytest.raises(ValueError, match="steps >= 1"):
        ZeroEffector(steps=0, restore=False)


@pytest.mark.parametrize("effector", [{"name": "zero", "steps": 5, "restore": True}, {"name": "noise", "steps": 5}])
def test_temporary_cells_run_and_count_targets_not_removals(registry, effector):
    cfg = {"model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
           "dataset": {"name": "mnist1d", "num_samples": 600, "train_split": 0.5},
           "train": {"epochs": 3, "batch_size": 64},
           "prune": {"scorer": "l2", "target": "smallest", "effector": effector, "start": "1ep", "end": "2ep",
                     "period": "1ep", "layers": {"conv3": {"fraction": 0.5}}}}
    result = run_cell(cell_from_config(cfg, 0, registry), registry)
    assert result.status == "ok", result.traceback
    assert result.metrics["targeted_filters"] == {"conv3": 8}
    assert result.metrics["remaining_filters"] == {"conv3": 16}
