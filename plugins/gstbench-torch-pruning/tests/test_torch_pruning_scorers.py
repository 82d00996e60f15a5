"""gstbench-torch-pruning: each scorer meets gstbench's contract and computes its paper's definition."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

import gstbench_torch_pruning
from gstbench.components import PruningContext
from gstbench.engine import run_cell
from gstbench.pruning import layer_states
from gstbench.plan.suite import load_suite
from gstbench.testing import check_scorer

pytest_plugins = "gstbench.testing"


@pytest.fixture
def registry(register_plugin):
    return register_plugin(gstbench_torch_pruning, name="torch-pruning")


@pytest.mark.parametrize("name", list(gstbench_torch_pruning.SCORERS))
def test_each_scorer_meets_the_contract(registry, name):
    scores = check_scorer(registry.get("scorers", f"torch-pruning:{name}"))
    assert set(scores) == {"conv1", "conv2", "conv3", "conv4"}


def _scored(factory, model, data, layer_name="conv2", step=3):
    """One score() call as the engine makes it, on a copy of ``model``."""
    model = copy.deepcopy(model)
    ctx = PruningContext(model, None, data.x_train[:2], torch.Generator().manual_seed(0), step=step, data=data,
                         batch_seed=11)
    layer = layer_states(model, [layer_name])[layer_name]
    return factory().score(layer, ctx), model, layer, ctx


def _filters(weight: torch.Tensor) -> torch.Tensor:
    return weight.detach().flatten(1)


def test_magnitude_criteria_are_unnormalized_filter_definitions(tiny_model, tiny_data):
    # group_reduction="first" keeps the filter's own term; without normalization, the raw values
    scores, model, layer, _ = _scored(lambda: gstbench_torch_pruning.group_norm(group_reduction="first"),
                                      tiny_model, tiny_data)
    w = _filters(layer.conv.weight)
    torch.testing.assert_close(scores, (w ** 2).sum(1))

    scores, *_ = _scored(gstbench_torch_pruning.bn_scale, tiny_model, tiny_data)
    torch.testing.assert_close(scores, layer.bn.weight.detach().abs())

    scores, *_ = _scored(lambda: gstbench_torch_pruning.fpgm(group_reduction="first"), tiny_model, tiny_data)
    torch.testing.assert_close(scores, torch.cdist(w.abs() ** 2, w.abs() ** 2).sum(0))

    scores, *_ = _scored(lambda: gstbench_torch_pruning.lamp(group_reduction="first"), tiny_model, tiny_data)
    norms = (w ** 2).sum(1)
    # LAMP: a unit's squared norm over the sum of the squared norms not below it (Lee et al. 2021)
    expected = torch.stack([n / norms[norms >= n].sum() for n in norms])
    torch.testing.assert_close(scores, expected)


def test_gradient_criteria_use_the_step_batch_and_change_nothing(tiny_model, tiny_data):
    scores, model, layer, ctx = _scored(lambda: gstbench_torch_pruning.taylor(batch_size=64, group_reduction="first"),
                                        tiny_model, tiny_data)
    x, y = ctx.training_batch(64)
    reference = copy.deepcopy(tiny_model).train()
    conv = reference.get_submodule(layer.spec.conv)
    (g,) = torch.autograd.grad(F.cross_entropy(reference(x), y), conv.weight)
    torch.testing.assert_close(scores, (_filters(conv.weight) * g.flatten(1)).abs().sum(1))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_model.state_dict().values())), \
        "BatchNorm running stats must be restored after the scoring pass"

    # OBD: w^2 times the mean of the squared per-example gradients (not the last example's, as
    # Torch-Pruning 1.6's accumulate_grad would give)
    scores, _, _, ctx = _scored(lambda: gstbench_torch_pruning.hessian(batch_size=8, group_reduction="first"),
                                tiny_model, tiny_data)
    x, y = ctx.training_batch(8)
    losses = F.cross_entropy(reference(x), y, reduction="none")
    squares = torch.stack([torch.autograd.grad(loss, conv.weight, retain_graph=True)[0] ** 2 for loss in losses])
    expected = (_filters(conv.weight) ** 2 * squares.mean(0).flatten(1)).sum(1)
    torch.testing.assert_close(scores, expected)
    last_only = (_filters(conv.weight) ** 2 * squares[-1].flatten(1)).sum(1)
    assert not torch.allclose(scores, last_only)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="group_reduction must be one of mean, sum"):
        gstbench_torch_pruning.taylor(group_reduction="avg")
    with pytest.raises(ValueError, match="normalizer must be one of none"):
        gstbench_torch_pruning.fpgm(normalizer="lamp")


def test_a_suite_cell_runs_with_a_torch_pruning_scorer(registry):
    # the smoke suite: the tradeoff's model family and schedule in seconds (a tradeoff cell takes minutes here)
    suite = load_suite(registry, "smoke", seeds=1, overrides={"prune.scorer": "torch-pruning:taylor"})
    spec = next(c for c in suite.cells if c.prune is not None)
    result = run_cell(spec, registry)
    assert result.status == "ok", result.error
    assert spec.prune.scorer.id == "torch-pruning:taylor"
    assert result.metrics["n_events"] == len(result.events) > 0
    assert result.metrics["targeted_filters"]["conv3"] > 0


def test_lamp_ranks_filters_of_all_layers_in_one_list_and_the_norms_may_not(registry):
    from gstbench.errors import SpecError
    from gstbench.plan.checks import validate_cells
    from gstbench.plan.parse import cell_from_config

    def cell(scorer):
        return cell_from_config({
            "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
            "dataset": {"name": "mnist1d", "num_samples": 200, "train_split": 0.5},
            "train": {"epochs": 0, "batch_size": 50}, "rewind": "finetune@0",
            "prune": {"scorer": scorer, "target": "smallest", "effector": "mask", "scope": "global", "rounds": 1,
                      "fraction": 0.5, "layers": ["conv1", "conv2", "conv3", "conv4"]}}, 0, registry)

    result = run_cell(cell("torch-pruning:lamp"), registry)  # LAMP's scores are made to compare across layers
    assert result.status == "ok", result.error
    assert sum(c.count for c in result.events[0].layers.values()) == 28
    with pytest.raises(SpecError, match="does not declare its scores comparable across layers"):
        validate_cells([cell("torch-pruning:group-norm")], registry, "s.toml")
