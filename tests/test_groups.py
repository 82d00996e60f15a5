"""Attention heads and MLP neurons as prunable groups: masked == removed, scores by hand, refusals, real cells."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.nn import functional as F

from gstbench.builtin.impl.calibrated_scorers import MagnitudeScorer, WandaScorer, compared
from gstbench.builtin.impl.effectors import MaskEffector, RemoveEffector
from gstbench.builtin.impl.gradient_scorers import HeadImportanceScorer, TaylorScorer
from gstbench.builtin.impl.scorers import NormScorer
from gstbench.builtin.impl.sparsegpt import sparsegpt_update
from gstbench.builtin.models import cnn1d, transformer
from gstbench.components import GroupSlice, PrunableGroup, PruningContext, TensorData
from gstbench.engine import run_cell
from gstbench.errors import SpecError
from gstbench.plan.checks import validate_cells
from gstbench.plan.parse import cell_from_config
from gstbench.pruning import dead_filters, layer_states, without_dead_filters
from gstbench.testing import ContractError, check_model

from conftest import changed, effector_applied, train_steps

SHAPE = (1, 40)


def small():
    torch.manual_seed(0)
    return transformer(SHAPE, 10, dim=16, depth=2, heads=4, head_dim=4, hidden=24, patch=4)


def trained(model, steps=5):
    """A few Adam steps, so no weight is at its initial value; returns the optimizer with its moments."""
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train_steps(model, opt, torch.randn(32, *SHAPE, generator=g), torch.randint(0, 10, (32,), generator=g), steps)
    return opt


@pytest.mark.parametrize("name,indices", [("block1.heads", [1, 3]), ("block2.heads", [0]),
                                          ("block1.neurons", [0, 5, 6, 23]), ("block2.neurons", [2, 7])])
def test_masked_and_removed_heads_and_neurons_compute_the_same_function_and_train_alike(name, indices):
    model = small()
    opt = trained(model)
    removed = copy.deepcopy(model)
    removed_opt = torch.optim.Adam(removed.parameters(), lr=1e-2)
    removed_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # its own moments, not shared tensors
    mask = MaskEffector()
    effector_applied(mask, model, opt, name, indices)
    layer, kept = effector_applied(RemoveEffector(), removed, removed_opt, name, indices)
    assert kept.tolist() == [i for i in range(layer.n_original) if i not in indices]
    assert sum(p.numel() for p in removed.parameters()) < sum(p.numel() for p in model.parameters())
    x = torch.randn(64, *SHAPE)
    torch.testing.assert_close(removed(x), model(x), atol=1e-5, rtol=1e-5)
    # the removed model's Adam moments were sliced: the same steps keep both on the same function
    y = torch.randint(0, 10, (64,))
    train_steps(model, opt, x, y, 3, mask.after_step)
    train_steps(removed, removed_opt, x, y, 3)
    torch.testing.assert_close(removed(x), model(x), atol=1e-4, rtol=1e-4)


def test_removing_heads_keeps_the_head_count_consistent_and_the_model_exportable():
    model = small().eval()
    trained(model)
    effector_applied(RemoveEffector(), model, None, "block1.heads", [0, 2])
    attention = model.blocks[0].attn
    assert attention.heads == 2 and attention.q.out_features == 8 and attention.out.in_features == 8
    x = torch.randn(3, *SHAPE)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    torch.testing.assert_close(program.module()(x), model(x))


def test_dead_units_are_found_and_cut_for_deployment():
    model = small().eval()
    effector_applied(MaskEffector(), model, None, "block2.heads", [1])
    effector_applied(MaskEffector(), model, None, "block1.neurons", [3, 4])
    dead = dead_filters(model)
    assert dead["block2.heads"].nonzero().flatten().tolist() == [1]
    assert dead["block1.neurons"].nonzero().flatten().tolist() == [3, 4]
    assert not dead["block1.heads"].any()
    slim, removed = without_dead_filters(model, torch.zeros(1, *SHAPE))
    assert removed == 3 and slim.blocks[1].attn.heads == 3 and slim.blocks[0].mlp.fc1.out_features == 22
    x = torch.randn(8, *SHAPE)
    torch.testing.assert_close(slim(x), model(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("p", [1, 2])
def test_a_groups_norm_is_the_norm_of_all_its_slices(p):
    model = small()
    trained(model)
    ctx = PruningContext(model, None, torch.zeros(1, *SHAPE), torch.Generator())
    heads = layer_states(model, ["block1.heads"])["block1.heads"]
    attn = model.blocks[0].attn
    by_hand = []
    for h in range(4):
        rows = slice(4 * h, 4 * h + 4)
        parts = [getattr(attn, m).weight[rows] for m in "qkv"] + [getattr(attn, m).bias[rows] for m in "qkv"]
        parts.append(attn.out.weight[:, rows])
        by_hand.append(torch.cat([t.detach().flatten() for t in parts]).norm(p=p))
    torch.testing.assert_close(NormScorer(p).score(heads, ctx), torch.stack(by_hand))
    neurons = layer_states(model, ["block2.neurons"])["block2.neurons"]
    mlp = model.blocks[1].mlp
    expected = torch.cat([mlp.fc1.weight, mlp.fc1.bias[:, None], mlp.fc2.weight.T], dim=1).detach().norm(p=p, dim=1)
    torch.testing.assert_close(NormScorer(p).score(neurons, ctx), expected)


CELL = {
    "model": {"name": "transformer", "dim": 16, "heads": 4, "head_dim": 4, "hidden": 32},
    "dataset": {"name": "mnist1d", "num_samples": 600, "train_split": 0.5},
    "train": {"epochs": 3, "batch_size": 64, "milestones": ["2ep"]},
    "prune": {"scorer": "l2", "target": "smallest", "effector": "mask", "start": "1ep", "end": "2ep",
              "period": "1ep", "layers": {"block1.heads": {"fraction": 0.5}, "block2.neurons": {"fraction": 0.25}}},
}


@pytest.mark.parametrize("role,name", [("scorer", "bn-gamma"), ("effector", "sparsegpt")])
def test_a_component_for_filters_only_is_refused_on_heads_in_one_line(registry, role, name):
    spec = cell_from_config(changed(CELL, **{f"prune__{role}": name}), 0, registry)
    with pytest.raises(SpecError) as caught:
        validate_cells([spec], registry)
    message = str(caught.value)
    assert "\n" not in message and f"'gstbench:{name}'" in message and "group of heads" in message
    assert "groups" in message and caught.value.key == f"prune.{role}"


def test_soft_zeroes_a_units_rows_which_regrow_and_its_last_event_masks_it_as_mask_does():
    from gstbench.builtin.impl.effectors import SoftEffector

    model = small()
    opt = trained(model)
    soft = SoftEffector()
    layer, _ = effector_applied(soft, model, opt, "block1.heads", [1], SHAPE)
    attn = model.blocks[0].attn
    assert all(float(p[4:8].detach().abs().sum()) == 0 for p in (attn.q.weight, attn.k.bias, attn.v.weight))
    assert float(attn.out.weight[:, 4:8].detach().abs().sum()) > 0  # the next layer still reads it: it can regrow
    g = torch.Generator().manual_seed(2)
    train_steps(model, opt, torch.randn(32, *SHAPE, generator=g), torch.randint(0, 10, (32,), generator=g), 3)
    assert float(attn.v.weight[4:8].detach().abs().sum()) > 0
    masked = copy.deepcopy(model)
    ctx = PruningContext(model, opt, torch.randn(2, *SHAPE), torch.Generator().manual_seed(0))
    soft.harden(layer, ctx)
    effector_applied(MaskEffector(), masked, torch.optim.Adam(masked.parameters()), "block1.heads", [1], SHAPE)
    x = torch.randn(8, *SHAPE, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked(x))  # hardened: exactly mask's network


@pytest.mark.parametrize("effector", ["soft", {"name": "zero", "steps": 3}, {"name": "noise", "steps": 3}])
def test_soft_and_temporary_pruning_of_heads_and_neurons_run_in_a_cell(registry, effector):
    result = run_cell(cell_from_config(changed(CELL, prune__effector=effector), 0, registry), registry)
    assert result.status == "ok", result.traceback
    assert len(result.events) == 2


@pytest.mark.parametrize("restore", [True, False])
def test_zero_silences_every_slice_of_a_unit_then_restores_it_or_lets_its_rows_restart_from_zero(restore):
    from gstbench.builtin.impl.effectors import ZeroEffector

    model = small()
    opt = trained(model)
    before = copy.deepcopy(model.state_dict())
    zero = ZeroEffector(steps=2, restore=restore)
    effector_applied(zero, model, opt, "block2.neurons", [3, 7], SHAPE)
    mlp = model.blocks[1].mlp
    rows, columns = (mlp.fc1.weight, mlp.fc1.bias), mlp.fc2.weight
    assert all(float(t[[3, 7]].detach().abs().sum()) == 0 for t in rows) and float(columns[:, [3, 7]].detach().abs().sum()) == 0
    zero.after_step()
    zero.after_step()  # the second step was the last: released
    torch.testing.assert_close(columns.detach()[:, [3, 7]], before["blocks.1.mlp.fc2.weight"][:, [3, 7]])
    for t, key in zip(rows, ("blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc1.bias")):
        if restore:
            torch.testing.assert_close(t.detach()[[3, 7]], before[key][[3, 7]])
        else:  # rows restart from zero with no optimizer memory; the columns that read them pass their gradient
            assert float(t[[3, 7]].detach().abs().sum()) == 0
            assert all(float(v[[3, 7]].detach().abs().sum()) == 0 for v in opt.state[t].values() if v.shape == t.shape)


def test_noise_perturbs_a_units_rows_by_their_parameters_untargeted_variance_and_leaves_the_columns():
    from gstbench.builtin.impl.effectors import NoiseEffector

    model = small()
    opt = trained(model)
    attn = model.blocks[0].attn
    before = {n: p.detach().clone() for n, p in (("v", attn.v.weight), ("out", attn.out.weight))}
    noise = NoiseEffector(steps=1, variance="untargeted")
    layer, _ = effector_applied(noise, model, opt, "block1.heads", [2], SHAPE)
    changed_rows = attn.v.weight.detach()[8:12] - before["v"][8:12]
    assert float(changed_rows.abs().min()) > 0 and torch.equal(attn.v.weight.detach()[:8], before["v"][:8])
    torch.testing.assert_close(attn.out.weight.detach(), before["out"])  # the columns the next layer reads it through
    untargeted = torch.cat([before["v"][:8], before["v"][12:]])
    assert noise.variance_for(layer, attn.v.weight, torch.tensor([*range(8), *range(12, 16)])) == pytest.approx(
        float(untargeted.var()))
    assert float(changed_rows.std()) == pytest.approx(float(untargeted.std()), rel=0.35)


class FixedHeadCount(torch.nn.Module):
    """Attention that keeps its head count from construction: once heads are cut away it no longer runs."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.embed = torch.nn.Linear(input_shape[-1], 16)
        self.q, self.k, self.v, self.out = (torch.nn.Linear(16, 16) for _ in range(4))
        self.head = torch.nn.Linear(16, num_classes)
        self.n_heads = 4
        rows = [GroupSlice(f"{m}.{t}", 0, 4) for m in "qkv" for t in ("weight", "bias")]
        self.prunable_layers = {"heads": PrunableGroup("heads", (*rows, GroupSlice("out.weight", 1, 4)))}

    def forward(self, x):
        tokens = self.embed(x)  # (batch, channels as tokens, 16)
        b, t, _ = tokens.shape
        q, k, v = (m(tokens).reshape(b, t, self.n_heads, -1).transpose(1, 2) for m in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, 16)
        return self.head(self.out(y).mean(1))


def test_check_model_passes_the_transformer_and_catches_a_fixed_head_count_and_a_bad_slice():
    check_model(transformer, options={"dim": 16, "heads": 4, "head_dim": 4, "hidden": 16})
    with pytest.raises(ContractError, match="after cutting units of 'heads' the model fails"):
        check_model(FixedHeadCount)

    def uneven(input_shape, num_classes):
        model = FixedHeadCount(input_shape, num_classes)
        group = model.prunable_layers["heads"]
        model.prunable_layers["heads"] = PrunableGroup("heads", (*group.slices, GroupSlice("head.weight", 1, 8)))
        return model

    with pytest.raises(ContractError, match=r"split into different unit counts \[2, 4\]"):
        check_model(uneven)


def data_context(model, n=24, seed=3, dtype=torch.float64):
    """A pruning context whose training split is ``n`` random labelled signals (the scorers' examples)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *SHAPE, generator=g, dtype=dtype)
    y = torch.randint(0, 10, (n,), generator=g)
    return PruningContext(model, None, x[:2], torch.Generator(), data=TensorData(x, y, x, y, num_classes=10))


def gated_losses(model, path, unit, width, x, y, factor, channels_dim):
    """Per-example losses with unit ``unit`` of the output of module ``path`` multiplied by ``factor``."""
    def hook(module, inputs, out):
        out = out.clone()
        if channels_dim == -1:
            out[..., unit * width:(unit + 1) * width] *= factor
        else:
            out[:, unit] *= factor
        return out

    handle = model.get_submodule(path).register_forward_hook(hook)
    try:
        with torch.no_grad():
            return F.cross_entropy(model(x), y, reduction="none")
    finally:
        handle.remove()


@pytest.mark.parametrize("make,name,path,width,dim", [
    (small, "block1.heads", "blocks.0.attn.heads_out", 4, -1),
    (small, "block2.neurons", "blocks.1.mlp.act", 1, -1),
    (lambda: cnn1d(SHAPE, 10, channels=(4, 6, 6, 6)), "conv2", "features.block2.bn", 1, 1),
])
def test_head_importance_is_the_mean_absolute_derivative_of_each_units_gate(make, name, path, width, dim):
    model = make().double().eval()
    ctx = data_context(model)
    layer = layer_states(model, [name])[name]
    scores = HeadImportanceScorer(examples=24).score(layer, ctx)
    x, y = ctx.data.x_train, ctx.data.y_train
    eps = 1e-6
    by_hand = torch.stack([
        ((gated_losses(model, path, u, width, x, y, 1 + eps, dim) - gated_losses(model, path, u, width, x, y,
                                                                                  1 - eps, dim)) / (2 * eps)).abs().mean()
        for u in range(layer.n_physical)])
    torch.testing.assert_close(scores.double(), by_hand / by_hand.norm(), rtol=1e-5, atol=1e-7)


def test_taylor_sums_the_first_order_saliency_over_each_units_weights():
    model = small()
    trained(model)
    model.double().eval()
    ctx = data_context(model)
    loss = F.cross_entropy(model(ctx.data.x_train), ctx.data.y_train)
    model.zero_grad()
    loss.backward()
    attn = model.blocks[0].attn
    by_hand = []
    for h in range(4):
        rows = slice(4 * h, 4 * h + 4)
        total = sum((getattr(attn, m).weight[rows] * getattr(attn, m).weight.grad[rows]).abs().sum()
                    + (getattr(attn, m).bias[rows] * getattr(attn, m).bias.grad[rows]).abs().sum() for m in "qkv")
        total = total + (attn.out.weight[:, rows] * attn.out.weight.grad[:, rows]).abs().sum()
        by_hand.append(total.detach())
    heads = layer_states(model, ["block1.heads"])["block1.heads"]
    torch.testing.assert_close(TaylorScorer(examples=24).score(heads, ctx), torch.stack(by_hand))


def inputs_of(model, path, x):
    """Every row (example x token) the module ``path`` sees on ``x``."""
    seen = []
    handle = model.get_submodule(path).register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen[0].reshape(-1, seen[0].shape[-1])


def test_wanda_is_the_weight_magnitude_times_its_inputs_norm_compared_per_row_or_per_layer():
    model = small()
    trained(model)
    ctx = data_context(model, dtype=torch.float32)
    layer = layer_states(model, ["blocks.0.mlp.fc1"], "weights")["blocks.0.mlp.fc1"]
    x = inputs_of(model, "blocks.0.mlp.fc1", ctx.data.x_train)
    by_hand = model.blocks[0].mlp.fc1.weight.detach().abs() * x.norm(dim=0)
    per_layer = WandaScorer(examples=24, compare="layer").score(layer, ctx)
    torch.testing.assert_close(per_layer, by_hand)
    per_row = WandaScorer(examples=24, compare="output").score(layer, ctx)
    assert torch.equal(per_row.argsort(dim=1), by_hand.argsort(dim=1))  # each row's order kept, as ranks
    assert torch.equal(per_row.sort(dim=1).values, torch.arange(16.).expand(24, 16))
    # a share of the layer taken smallest-first takes that share from every row
    chosen = per_row.flatten().argsort(stable=True)[:24 * 4]
    assert torch.bincount(chosen // 16, minlength=24).tolist() == [4] * 24
    magnitude = MagnitudeScorer("layer").score(layer, ctx)
    torch.testing.assert_close(magnitude, model.blocks[0].mlp.fc1.weight.detach().abs())


def test_wanda_on_heads_sums_each_weights_score_over_the_head():
    model = small()
    trained(model)
    ctx = data_context(model, dtype=torch.float32)
    x = ctx.data.x_train
    attn = model.blocks[1].attn
    into_qkv = inputs_of(model, "blocks.1.attn.q", x).norm(dim=0)
    into_out = inputs_of(model, "blocks.1.attn.out", x).norm(dim=0)
    rows = inputs_of(model, "blocks.1.attn.q", x).shape[0]
    by_hand = []
    for h in range(4):
        r = slice(4 * h, 4 * h + 4)
        total = sum((getattr(attn, m).weight[r].abs() * into_qkv).sum() + getattr(attn, m).bias[r].abs().sum() * rows ** 0.5
                    for m in "qkv")
        by_hand.append((total + (attn.out.weight[:, r].abs() * into_out[r]).sum()).detach())
    heads = layer_states(model, ["block2.heads"])["block2.heads"]
    torch.testing.assert_close(WandaScorer(examples=24, compare="output").score(heads, ctx), torch.stack(by_hand))


def sequential_least_squares(w, pruned, x, damp):
    """The reference for SparseGPT's update, solved directly: columns in order; at a pruned weight of a row, the
    row's later columns move by the ridge least-squares solution that best restores the row's output on ``x``
    (damped as SparseGPT damps H = X^T X / n), the earlier ones stay."""
    w, x = w.double().clone(), x.double()
    n = x.shape[0]
    lam = damp * (x ** 2).sum(0).mean() / n
    for r in range(w.shape[0]):
        for i in range(w.shape[1]):
            if not pruned[r, i]:
                continue
            later = x[:, i + 1:]
            a = torch.cat([later / n ** 0.5, lam ** 0.5 * torch.eye(later.shape[1], dtype=x.dtype)])
            b = torch.cat([x[:, i] * w[r, i] / n ** 0.5, torch.zeros(later.shape[1], dtype=x.dtype)])
            w[r, i + 1:] += torch.linalg.lstsq(a, b[:, None]).solution[:, 0]
            w[r, i] = 0
    return w


def test_sparsegpts_update_is_the_sequential_least_squares_solution_and_beats_plain_zeroing():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 12, generator=g, dtype=torch.float64) @ torch.randn(12, 12, generator=g, dtype=torch.float64)
    w = torch.randn(6, 12, generator=g, dtype=torch.float64)
    pruned = torch.zeros(6, 12, dtype=torch.bool)
    pruned.scatter_(1, w.abs().argsort(dim=1)[:, :6], True)  # half of every row, smallest first
    updated = sparsegpt_update(w, pruned, x.T @ x / x.shape[0], damp=0.01)
    torch.testing.assert_close(updated, sequential_least_squares(w, pruned, x, 0.01), atol=1e-9, rtol=1e-7)
    assert bool((updated[pruned] == 0).all())
    error = lambda v: float((x @ (w - v).T).norm())  # noqa: E731
    assert error(updated) < error(w * ~pruned)


def test_the_sparsegpt_effector_reconstructs_a_models_linear_layer_and_keeps_it_sparse():
    model = small()
    opt = trained(model)
    ctx = data_context(model, dtype=torch.float32)
    ctx.optimizer = opt
    name = "blocks.0.mlp.fc2"
    layer = layer_states(model, [name], "weights")[name]
    before = model.blocks[0].mlp.fc2.weight.detach().clone()
    chosen = before.abs().flatten().argsort()[:before.numel() // 2]
    layer.alive.view(-1)[chosen] = False
    effector = registry_effector("sparsegpt")
    effector.apply(layer, chosen, ctx)
    after = model.blocks[0].mlp.fc2.weight.detach()
    assert bool((after.view(-1)[chosen] == 0).all()) and not torch.equal(after[layer.alive], before[layer.alive])
    train_steps(model, opt, ctx.data.x_train, ctx.data.y_train, 2, effector.after_step)
    assert bool((model.blocks[0].mlp.fc2.weight.view(-1)[chosen] == 0).all())
    conv = layer_states(cnn1d(SHAPE, 10), ["conv2"], "weights")["conv2"]
    with pytest.raises(ValueError, match="sparsegpt reconstructs linear layers"):
        effector.apply(conv, torch.tensor([0]), ctx)


def registry_effector(name):
    from gstbench.plan.config import ComponentRef
    from gstbench.plugins import get_registry

    return get_registry().build("effectors", ComponentRef(f"gstbench:{name}"))


def test_obs_saliency_is_each_weight_squared_over_its_columns_inverse_hessian_entry_among_the_later_columns():
    model = small()
    trained(model)
    ctx = data_context(model, dtype=torch.float32)
    name = "blocks.1.attn.out"
    layer = layer_states(model, [name], "weights")[name]
    x = inputs_of(model, name, ctx.data.x_train).double()
    h = x.T @ x / x.shape[0]
    h += 0.01 * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    entries = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in range(h.shape[0])])
    by_hand = model.blocks[1].attn.out.weight.detach().double() ** 2 / entries[None, :]
    scores = registry_scorer("obs").score(layer, ctx)
    torch.testing.assert_close(scores.double(), by_hand, rtol=1e-4, atol=1e-8)


def registry_scorer(name):
    from gstbench.plan.config import ComponentRef
    from gstbench.plugins import get_registry

    return get_registry().build("scorers", ComponentRef(f"gstbench:{name}"))


SUITE = """
name = "tiny-heads"
seeds = 1
[base]
model = { name = "transformer", dim = 16, heads = 4, head_dim = 4, hidden = 32 }
dataset = { name = "mnist1d", num_samples = 600, train_split = 0.5 }
train = { epochs = 3, batch_size = 64, save_model = true }
prune = { scorer = "taylor", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { "block1.heads" = { fraction = 0.5 }, "block2.neurons" = { fraction = 0.5 } } }
[axes]
"prune.effector" = ["mask", "remove"]
[scales.quick]
"""


@pytest.mark.slow
def test_a_run_on_heads_and_neurons_stores_models_that_load_slim_and_export(tmp_path, registry):
    import gstbench
    from conftest import run_cli

    (tmp_path / "heads.toml").write_text(SUITE)
    proc = run_cli("run", "--suite", str(tmp_path / "heads.toml"), "--out", str(tmp_path / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    cells = sorted(d for d in (tmp_path / "run" / "cells").iterdir() if d.is_dir())
    assert len(cells) == 2
    x = registry.load_data(gstbench.load_model(cells[0]).gstbench_spec.dataset).x_test[:16]
    outputs = []
    for cell in cells:
        masked, slim = gstbench.load_model(cell), gstbench.load_model(cell, structured=True)
        assert slim.blocks[0].attn.heads == 2 and slim.blocks[1].mlp.fc1.out_features == 16
        with torch.no_grad():
            torch.testing.assert_close(slim(x), masked(x), atol=1e-5, rtol=1e-5)
            outputs.append(slim(x))
        proc = run_cli("export-model", str(cell), str(tmp_path / f"{cell.name}.pt2"))
        assert proc.returncode == 0, proc.stderr
        program = torch.export.load(str(tmp_path / f"{cell.name}.pt2")).module()
        with torch.no_grad():
            torch.testing.assert_close(program(x), slim(x), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-3, rtol=1e-3)  # mask and remove: one network
    results = [json.loads((cell / "result.json").read_text()) for cell in cells]
    for result in results:
        assert result["metrics"]["remaining_units"] == {"block1.heads": 2, "block2.neurons": 16}
    picked = [[{n: layer["pruned"] for n, layer in json.loads(line)["layers"].items()}
               for line in (cell / "events.jsonl").read_text().splitlines()] for cell in cells]
    assert len(picked[0]) == 2 and picked[0] == picked[1]  # the same units picked, masked or removed




@pytest.mark.slow
def test_the_heads_suite_runs_its_matrix_and_reports_its_claims(tmp_path, registry):
    from conftest import run_cli, tiny_transformer_suite
    from gstbench.plan.suite import load_suite

    suite = load_suite(registry, "heads", placeholders=True, build_models=False)
    assert len(suite.cells) == 7 * 8 and [c["id"] for c in suite.claims] == [
        "gst-tradeoff", "gst-targets", "gst-prune-helps", "gst-l-beats-s"]
    assert {name for name, _ in next(c for c in suite.cells if c.prune).prune.layers} == {
        "block1.neurons", "block3.heads", "block3.neurons"}
    (tmp_path / "heads.toml").write_text(tiny_transformer_suite("heads", 2))  # its matrix on a tiny transformer
    proc = run_cli("run", "--suite", str(tmp_path / "heads.toml"), "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    for claim in suite.claims:
        assert claim["id"] in proc.stdout, proc.stdout[-3000:]
    assert max(map(len, proc.stdout.splitlines())) <= 100, proc.stdout  # off a terminal: 100 columns
    # narrower, the rows drop the scorer they all share before they are cut short, and still tell apart
    from gstbench.reports.report import build_report
    from gstbench.reports.run_summary import render_run_summary

    screen = render_run_summary(build_report(tmp_path / "run"), tmp_path / "run", 80)
    header, _, rest = screen.partition("leaderboard, by ")[2].partition("\nconfiguration")
    rows = [line.split("  ")[0] for line in rest.split("\n\n")[0].splitlines()[2:]]
    assert max(map(len, screen.split("\n\n")[0].splitlines())) <= 80, screen
    assert " ".join(header.split()).endswith("every row: head-importance heads+neurons"), screen
    assert len(set(rows)) == 7 and "unpruned" in rows, screen
    assert "largest mask 4ep" in rows and not any("…" in row for row in rows), screen


@pytest.mark.parametrize("scorer", ["magnitude", "wanda"])
def test_compared_within_groups_of_4_inputs_half_a_layer_smallest_first_is_the_2_4_pattern(scorer):
    from gstbench.builtin.impl.runtimes import has_2_4_pattern

    model = small()
    trained(model)
    ctx = data_context(model, dtype=torch.float32)
    layer = layer_states(model, ["blocks.0.mlp.fc1"], "weights")["blocks.0.mlp.fc1"]
    score = (MagnitudeScorer("2:4") if scorer == "magnitude" else WandaScorer(examples=24, compare="2:4"))
    scores = score.score(layer, ctx).flatten()
    # the smallest half, ties between groups drawn in a random order (as the engine breaks them)
    order = torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(3))
    chosen = order[scores[order].argsort(stable=True)[:scores.numel() // 2]]
    weight = model.blocks[0].mlp.fc1.weight.detach().clone().flatten()
    weight[chosen] = 0
    assert has_2_4_pattern(weight.reshape(24, 16))
    kept = model.blocks[0].mlp.fc1.weight.detach().reshape(-1, 4).abs()  # magnitude: the 2 largest of every 4 stay
    if scorer == "magnitude":
        assert torch.equal(weight.reshape(-1, 4) != 0, kept >= kept.sort(dim=1).values[:, 2:3])
    with pytest.raises(ValueError, match="not a multiple of 4"):
        compared(torch.ones(3, 6), "2:4")
