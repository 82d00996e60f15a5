"""Prune-retrain rounds: single-weight pruning, rewinds (weights@k, lr@k, none, reinit, finetune@n), post-training
pruning (finetune@0) with a calibration size, data-order stability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gstbench.builtin.impl.scorers import NormScorer
from gstbench.components import WEIGHTS, PruningContext
from gstbench.plan.parse import cell_from_config
from gstbench.engine import run_cell
from gstbench.engine.evaluation import evaluate
from gstbench.engine.lmc import linear_mode_connectivity, weight_distance
from gstbench.engine.pruner import Pruner
from gstbench.engine.state import Cell
from gstbench.errors import SpecError
from gstbench.plugins import Registry, hookimpl
from gstbench.plan.checks import validate_cells

from conftest import changed

K = 5  # the rewind step used below (steps per epoch: 5)
ROUNDS = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 600, "train_split": 0.5},
    "train": {"epochs": 3, "batch_size": 64, "milestones": ["2ep"]},
    "prune": {"scorer": "l1", "target": "smallest", "effector": "mask", "granularity": "weights", "scope": "global",
              "rounds": 2, "fraction": 0.5, "layers": ["conv1", "conv2", "conv3", "conv4", "classifier"]},
    "rewind": f"weights@{K}it",
}


def config(**changes):
    return changed(ROUNDS, **changes)


class StepRecorder:
    """A plugin scorer (magnitude) that snapshots the model's state before training step K, every time."""

    seen: list[dict[str, torch.Tensor]] = []

    def __init__(self):
        self.inner = NormScorer(1)
        self.model = None

    def attach(self, ctx, layers):
        self.model = ctx.model

    def before_train_batch(self, step):
        if step == K:
            StepRecorder.seen.append({k: v.detach().clone() for k, v in self.model.state_dict().items()})

    def score(self, layer, ctx):
        return self.inner.score(layer, ctx)


class RecorderPlugin:
    @hookimpl
    def register_scorers(self, register):
        register("step-recorder", StepRecorder, capabilities=[WEIGHTS])


@pytest.fixture
def recording_registry():
    StepRecorder.seen = []
    return Registry(extra_plugins=[("recorder", RecorderPlugin())])


def test_weights_at_k_restores_exactly_the_step_k_values_of_surviving_weights(recording_registry):
    reg = recording_registry
    spec = cell_from_config(config(prune__scorer="step-recorder", prune__rounds=1), 0, reg)
    result = run_cell(spec, reg)
    assert result.status == "ok", result.traceback
    at_k, after_rewind = StepRecorder.seen  # round 0 reaching step K; round 1 starting at step K
    assert result.rounds[1].start_step == K and result.rounds[1].replay_lr
    pruned = total = 0
    for name, layer in (("conv1", "features.block1.conv"), ("conv4", "features.block4.conv"),
                        ("classifier", "classifier")):
        before, after = at_k[f"{layer}.weight"], after_rewind[f"{layer}.weight"]
        alive = after != 0
        assert torch.equal(after[alive], before[alive])  # bit-exact, not approximately
        pruned += int((~alive).sum())
        total += alive.numel()
    assert pruned > 0
    for key in ("features.block2.bn.running_mean", "features.block2.bn.running_var"):
        assert torch.equal(after_rewind[key], at_k[key])  # BN statistics rewound too
    # the masked model at step K differs from the step-K model only in the pruned weights
    assert result.rounds[1].sparsity == pytest.approx(0.5, abs=1e-3)


def test_lr_at_k_keeps_the_weights_and_replays_the_schedule(recording_registry):
    reg = recording_registry
    spec = cell_from_config(config(prune__scorer="step-recorder", prune__rounds=1, rewind="lr@1ep"), 0, reg)
    result = run_cell(spec, reg)
    assert result.status == "ok", result.traceback
    first, retrain = result.rounds[0].curves, result.rounds[1].curves
    assert first.lr == [1e-3, 1e-3, 1e-4]
    assert retrain.lr == first.lr[1:] and retrain.step == first.step[1:]
    # the weights were kept: retraining starts from the trained, masked weights, not from step K's
    at_k, retrain_start = StepRecorder.seen
    assert not torch.equal(retrain_start["features.block1.conv.weight"], at_k["features.block1.conv.weight"])


def test_no_rewind_fine_tunes_at_the_final_rate_and_reinit_starts_over(registry):
    none = run_cell(cell_from_config(config(rewind="none", prune__rounds=1), 0, registry), registry)
    assert none.rounds[1].curves.lr == [pytest.approx(1e-4)] * 3
    reinit = run_cell(cell_from_config(config(rewind="reinit", prune__rounds=1), 0, registry), registry)
    assert reinit.rounds[1].curves.lr == [1e-3, 1e-3, 1e-4] and reinit.rounds[1].start_step == 0
    for r in (none, reinit):
        assert r.status == "ok"
        assert r.metrics["sparsity"] == pytest.approx(0.5, abs=1e-3)
        assert r.metrics["params_nonzero"] < r.metrics["params"] * 0.6  # masks held through retraining


def test_post_training_pruning_without_fine_tuning_ends_with_the_pruned_network_as_it_is(registry):
    result = run_cell(cell_from_config(config(rewind="finetune@0", prune__rounds=1), 0, registry), registry)
    assert result.status == "ok", result.traceback
    event, = result.events
    pruned = result.rounds[1]
    # no step ran after the event: the cell ends with the event's t_post, and the curve is that one point
    assert pruned.start_step == result.total_steps and pruned.curves.step == [result.total_steps]
    assert result.metrics["final_test_acc"] == pruned.final_test_acc == pruned.best_test_acc == event.t_post
    assert result.metrics["final_test_loss"] == event.loss_post
    assert result.metrics["train_acc"] == pruned.curves.train_acc_running[0]
    assert result.rounds[0].final_test_acc == event.t_pre  # pruned from the trained parent
    assert result.metrics["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_fine_tuning_trains_the_schedules_last_steps_at_its_final_rate(registry):
    result = run_cell(cell_from_config(config(rewind="finetune@1ep", prune__rounds=1), 0, registry), registry)
    pruned = result.rounds[1]
    assert pruned.start_step == result.total_steps - result.steps_per_epoch and pruned.curves.lr == [pytest.approx(1e-4)]
    assert result.metrics["final_test_acc"] == pruned.curves.test_acc[-1]


class CalibrationRecorder:
    """A plugin scorer (magnitude) that notes how many calibration examples the context gives it."""

    sizes: list[int] = []

    def score(self, layer, ctx):
        CalibrationRecorder.sizes.append(len(ctx.training_batch(64)[0]))
        return NormScorer(1).score(layer, ctx)


def test_calibration_sets_how_many_examples_every_draw_takes(registry):
    class Plugin:
        @hookimpl
        def register_scorers(self, register):
            register("calibration-recorder", CalibrationRecorder, capabilities=[WEIGHTS])

    reg = Registry(extra_plugins=[("calibration", Plugin())])
    for calibration, expected in ((None, 64), (16, 16)):
        CalibrationRecorder.sizes = []
        cfg = config(rewind="finetune@0", prune__rounds=1, prune__scorer="calibration-recorder")
        if calibration is not None:
            cfg["prune"]["calibration"] = calibration
        assert run_cell(cell_from_config(cfg, 0, reg), reg).status == "ok"
        assert CalibrationRecorder.sizes and set(CalibrationRecorder.sizes) == {expected}


def test_rounds_cut_a_fraction_of_what_remains(registry):
    result = run_cell(cell_from_config(config(prune__rounds=3), 0, registry), registry)
    assert result.status == "ok", result.traceback
    sparsity = [r.sparsity for r in result.rounds]
    assert sparsity == pytest.approx([0, 0.5, 0.75, 0.875], abs=1e-3)
    assert [e.round for e in result.events] == [1, 2, 3]
    assert result.metrics["sparsity_by_round"] == sparsity


def pruner_for(registry, **changes):
    spec = cell_from_config(config(**changes), 0, registry)
    data = registry.load_data(spec.dataset)
    torch.manual_seed(0)
    model = registry.build_model(spec.model, data)
    ctx = PruningContext(model, torch.optim.SGD(model.parameters(), lr=0.1), data.x_train[:2],
                         torch.Generator().manual_seed(0))
    return Pruner(Cell(spec, registry, data, torch.device("cpu")), ctx), model, data


def test_global_magnitude_pruning_cuts_the_globally_smallest_weights(registry):
    pruner, model, data = pruner_for(registry)
    weights = {n: s.conv.weight.detach().clone() for n, s in pruner.layers.items()}
    before = torch.cat([w.flatten() for w in weights.values()])
    pruner.event(0, pruner.round_cuts(), lambda reuse=False: evaluate(model, data.x_test, data.y_test))
    after = torch.cat([s.conv.weight.detach().flatten() for s in pruner.layers.values()])
    cut = after == 0
    assert int(cut.sum()) == int(np.ceil(0.5 * before.numel()))
    assert before[cut].abs().max() <= before[~cut].abs().min()
    per_layer = {n: float((s.conv.weight == 0).float().mean()) for n, s in pruner.layers.items()}
    assert max(per_layer.values()) - min(per_layer.values()) > 0.1  # global: layers lose different shares


def test_per_layer_scope_cuts_each_layer_by_its_fraction(registry):
    pruner, model, data = pruner_for(registry, prune__scope="layer")
    pruner.event(0, pruner.round_cuts(), lambda reuse=False: evaluate(model, data.x_test, data.y_test))
    for name, state in pruner.layers.items():
        w = state.conv.weight
        assert int((w == 0).sum()) == int(np.ceil(0.5 * w.numel())), name
        assert int((~state.alive).sum()) == int(np.ceil(0.5 * w.numel()))


def test_single_weight_masks_train_like_filter_masks_in_a_schedule(registry):
    cfg = config(prune={"scorer": "random", "target": "smallest", "effector": "mask", "granularity": "weights",
                        "start": "1ep", "end": "2ep", "period": "1ep", "fraction": 0.6,
                        "layers": ["conv2", "classifier"]}, rewind="none")
    result = run_cell(cell_from_config(cfg, 0, registry), registry)
    assert result.status == "ok", result.traceback
    counts = result.metrics["targeted_weights"]
    # the schedule keeps ceil((1 - fraction) * n), as for filters
    assert counts == {"conv2": 384 - int(np.ceil(0.4 * 384)), "classifier": 1600 - int(np.ceil(0.4 * 1600))}
    assert len(result.events) == 2 and result.events[0].layers["conv2"].pruned is None


@pytest.mark.parametrize("changes,key,reason", [
    ({"prune__effector": "remove"}, "prune.effector", "whole filters only"),
    ({"prune__scorer": "bn-gamma"}, "prune.scorer", "whole filters only"),
    ({"prune__effector": {"name": "zero", "steps": 5}}, "prune.effector", "whole filters only"),
    ({"prune__granularity": "filters", "prune__scope": "layer", "prune__layers": ["conv2"],
      "prune__effector": {"name": "zero", "steps": 5}}, "prune.effector", "never make the network sparser"),
    ({"prune__granularity": "filters", "prune__scope": "layer", "prune__layers": ["conv4"],
      "prune__effector": "remove"}, "prune.effector", "unpruned shapes"),
    ({"prune__granularity": "filters", "prune__layers": ["conv2", "conv3"]}, "prune.scope",
     "does not declare its scores comparable across layers"),
    ({"rewind": "weights@3ep"}, "rewind", "not inside training"),
    ({"prune__rounds": 0, "rewind": "none", "prune__start": "1ep"}, "prune.layers.classifier.end", "missing"),
    ({"prune__start": "1ep"}, "prune.start", "no meaning"),
    ({"prune__data_order_stability": True, "prune__rounds": 0}, "prune.data_order_stability", "set prune.rounds"),
    ({"prune__layers": ["conv2", "features"]}, "prune.layers.features", "no prunable layer or conv/linear"),
    ({"rewind": "finetune@4ep"}, "rewind", "not 0 to the schedule's 15"),
    ({"rewind": "finetune@0", "prune__data_order_stability": True}, "rewind", "retrains nothing"),
    ({"prune__calibration": 0}, "prune.calibration", "must be >= 1"),
    ({"prune__calibration": 1.5}, "prune.calibration", "not a whole number"),
])
def test_impossible_combinations_are_refused_before_training(registry, changes, key, reason):
    with pytest.raises(SpecError) as err:
        validate_cells([cell_from_config(config(**changes), 0, registry, source="s.toml")], registry, "s.toml")
    assert err.value.key == key and reason in str(err.value) and "s.toml" in str(err.value)


def test_a_rewind_without_rounds_is_refused(registry):
    cfg = config(prune={"scorer": "l2", "target": "smallest", "effector": "mask", "start": "1ep", "end": "2ep",
                        "period": "1ep", "layers": {"conv2": {"fraction": 0.5}}})
    with pytest.raises(SpecError, match="acts between prune-retrain rounds") as err:
        validate_cells([cell_from_config(cfg, 0, registry)], registry)
    assert err.value.key == "rewind"


def test_rewind_steps_are_canonical(registry):
    same = [cell_from_config(config(rewind=r), 0, registry).hash for r in
            ("weights@0it", "weights@0", "weights@0ep", {"name": "weights", "at": 0}, "weights@0%")]
    assert len(set(same)) == 1
    with pytest.raises(SpecError, match="needs option"):
        cell_from_config(config(rewind="weights"), 0, registry)  # k has no natural default: say it
    assert cell_from_config(config(rewind="weights@10%"), 0, registry).rewind.options == (("at", "10%"),)


def test_data_order_copies_give_lmc_curves_whose_endpoints_are_the_two_models(registry):
    spec = cell_from_config(config(prune__data_order_stability=True, prune__lmc_points=7, prune__rounds=1), 0,
                            registry)
    result = run_cell(spec, registry)
    assert result.status == "ok", result.traceback
    for r in result.rounds:
        lmc = r.lmc
        assert len(lmc.alpha) == 7 and lmc.alpha[0] == 0 and lmc.alpha[-1] == 1
        assert lmc.test_error[0] == pytest.approx(1 - r.final_test_acc, abs=1e-12)
        assert lmc.test_error[-1] == pytest.approx(1 - r.twin_final_test_acc, abs=1e-12)
        assert lmc.barrier == pytest.approx(max(lmc.test_error) - (lmc.test_error[0]
                                                                          + lmc.test_error[-1]) / 2)
        assert r.weight_distance > 0  # another data order: another solution
    assert result.metrics["lmc_barrier"] == result.rounds[-1].lmc.barrier


def test_lmc_and_distance_on_known_models(registry):
    spec = cell_from_config(config(), 0, registry)
    data = registry.load_data(spec.dataset)
    torch.manual_seed(0)
    a = registry.build_model(spec.model, data)
    torch.manual_seed(1)
    b = registry.build_model(spec.model, data)
    sa, sb = a.state_dict(), b.state_dict()
    lmc = linear_mode_connectivity(a, sa, sb, data.x_test, data.y_test, points=5)
    assert lmc.test_error[0] == 1 - evaluate(a, data.x_test, data.y_test)[0]
    assert lmc.test_error[-1] == 1 - evaluate(b, data.x_test, data.y_test)[0]
    same = linear_mode_connectivity(a, sa, sa, data.x_test, data.y_test, points=5)
    assert same.barrier == 0 and len(set(same.test_error)) == 1
    keys = ["classifier.weight"]
    assert weight_distance(sa, sa, keys) == 0
    w = sa["classifier.weight"]
    assert weight_distance({"w": w}, {"w": -w}, ["w"]) == pytest.approx(2.0)
    assert weight_distance({"w": w}, {"w": 2 * w}, ["w"]) == pytest.approx(1 / 1.5)


@pytest.mark.parametrize("fraction, pruned", [(0.9, 51), (0.99, 52)])  # ceil(f * 56), at most 56 less 1 a layer
def test_a_global_ranking_of_filters_by_mean_magnitude_prunes_layers_unevenly_and_empties_none(registry, fraction,
                                                                                               pruned):
    layers = ["conv1", "conv2", "conv3", "conv4"]
    sizes = {"conv1": 8, "conv2": 16, "conv3": 16, "conv4": 16}
    cfg = config(train={"epochs": 0, "batch_size": 64}, rewind="finetune@0",
                 prune={"scorer": "magnitude", "target": "smallest", "effector": "mask", "scope": "global",
                        "rounds": 1, "fraction": fraction, "layers": layers})
    result = run_cell(cell_from_config(cfg, 0, registry), registry)
    assert result.status == "ok", result.traceback
    cut = result.events[0].layers
    assert sum(c.count for c in cut.values()) == pruned == min(math.ceil(fraction * 56), 56 - 4)
    assert all(cut[n].remaining >= 1 for n in cut) and set(cut) <= set(layers)  # no layer emptied
    assert sum(cut[n].remaining for n in cut) + sum(sizes[n] for n in layers if n not in cut) == 56 - pruned
    # mean |w| shrinks with fan-in at initialization: the deeper layers go first, the shares differ
    shares = {n: (cut[n].count if n in cut else 0) / sizes[n] for n in layers}
    assert len(set(shares.values())) > 1, shares


def test_a_global_ranking_of_a_norm_would_favour_large_units_and_is_refused_in_one_line(registry):
    cfg = config(prune={"scorer": "l1", "target": "smallest", "effector": "mask", "scope": "global", "rounds": 2,
                        "fraction": 0.5, "layers": ["conv2", "conv3"]})
    with pytest.raises(SpecError, match="use gstbench:magnitude") as err:
        validate_cells([cell_from_config(cfg, 0, registry, source="s.toml")], registry, "s.toml")
    assert err.value.key == "prune.scope" and "\n" not in str(err.value)
