"""The engine on a real tiny cell: seeded, events measured as defined, failures recorded."""

from __future__ import annotations

import pytest
import torch

from gstbench.plan.parse import cell_from_config
from gstbench.engine import run_cell
from gstbench.engine.evaluation import evaluate
from gstbench.plugins import Registry, hookimpl

from conftest import changed

TINY = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 600, "train_split": 0.5},
    "train": {"epochs": 3, "batch_size": 64, "milestones": ["2ep"]},
    "prune": {"scorer": "l2", "target": "smallest", "effector": "mask", "start": "1ep", "end": "2ep",
              "period": "1ep", "layers": {"conv2": {"fraction": 0.5}, "conv3": {"fraction": 0.25}}},
}


def cell(registry, seed=0, **changes):
    return cell_from_config(changed(TINY, **changes), seed, registry)


def test_same_seed_same_numbers_other_seed_other_numbers(registry):
    a, b = run_cell(cell(registry), registry), run_cell(cell(registry), registry)
    assert a.status == "ok", a.traceback
    assert a.metrics == b.metrics and a.curves == b.curves and a.events == b.events
    c = run_cell(cell(registry, seed=1), registry)
    assert c.curves.train_loss != a.curves.train_loss


@pytest.mark.parametrize("effector", ["mask", "remove"])
def test_events_follow_the_schedule_and_the_definition(registry, effector):
    result = run_cell(cell(registry, prune__effector=effector), registry)
    assert result.status == "ok", result.traceback
    events = result.events
    spe = result.steps_per_epoch
    assert [e.step for e in events] == [spe, 2 * spe]
    assert sum(e.layers["conv2"].count for e in events) == 8  # 16 -> ceil(0.5 * 16)
    assert sum(e.layers["conv3"].count for e in events) == 4  # 16 -> ceil(0.75 * 16)
    for e in events:
        assert e.instability == pytest.approx((e.t_pre - e.t_post) / e.t_pre)
    m = result.metrics
    assert m["stability"] == pytest.approx(1 - sum(e.instability for e in events) / 2)
    assert m["remaining_filters"] == {"conv2": 8, "conv3": 12}
    assert m["gap"] == pytest.approx(m["train_acc"] - m["final_test_acc"])
    post = [events[-1].t_post] + result.curves.test_acc[2:]  # epoch 2 ends before the last event
    assert m["best_test_acc"] == max(post)
    assert result.curves.lr == [1e-3, 1e-3, 1e-4]
    pruned = set(events[0].layers["conv2"].pruned) | set(events[1].layers["conv2"].pruned)
    assert len(pruned) == 8 and pruned <= set(range(16))


@pytest.mark.parametrize("scorer", ["l2", "activation-l1", "bn-gamma"])
def test_mask_and_remove_cells_give_the_same_pruned_filters_and_accuracies(registry, scorer):
    masked = run_cell(cell(registry, prune__scorer=scorer), registry)
    removed = run_cell(cell(registry, prune__scorer=scorer, prune__effector="remove"), registry)
    assert masked.status == removed.status == "ok", (masked.traceback, removed.traceback)
    for a, b in zip(masked.events, removed.events):
        assert a.layers == b.layers
        assert a.t_post == pytest.approx(b.t_post, abs=1e-3)
    assert removed.metrics["params"] < masked.metrics["params"]


def test_unpruned_cell_has_full_stability(registry):
    result = run_cell(cell(registry, prune=False), registry)
    assert result.metrics["stability"] == 1.0 and result.events == []
    assert result.metrics["best_test_acc"] == max(result.curves.test_acc)


def test_evaluation_leaves_batchnorm_statistics_and_train_mode_alone():
    from gstbench.builtin.models import cnn1d

    model = cnn1d((1, 40), 10)
    model.train()
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    evaluate(model, torch.randn(100, 1, 40), torch.randint(0, 10, (100,)))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), k


def test_a_diverging_cell_is_recorded_as_failed(registry):
    spec = cell(registry, train={"optimizer": "sgd", "lr": 1e38, "momentum": 0.9, "epochs": 3, "batch_size": 64})
    result = run_cell(spec, registry)
    assert result.status == "failed"
    assert "non-finite training loss" in result.error


def test_a_raising_component_is_recorded_as_failed(registry):
    result = run_cell(cell(registry, prune__layers={"conv2": {"fraction": 0.5, "start": "1ep", "end": "9ep"}}),
                      registry)
    assert result.status == "failed" and "not before the end of training" in result.error


class ScalarScorer:
    def score(self, layer, ctx):
        return layer.conv.weight.detach().sum()  # one number, not one per filter


class ScalarScorerPlugin:
    @staticmethod
    @hookimpl
    def register_scorers(register):
        register("scalar", ScalarScorer)


def test_a_scorer_of_the_wrong_shape_fails_its_cell_with_the_scorer_named():
    registry = Registry([("oops", ScalarScorerPlugin())], installed=False)
    result = run_cell(cell(registry, prune__scorer="oops:scalar"), registry)
    assert result.status == "failed"
    assert "scorer oops:scalar returned scores of shape () for layer 'conv2' with filters of shape (16,)" \
        in result.error


class NanScorer:
    def score(self, layer, ctx):
        scores = layer.conv.weight.detach().abs().flatten(1).sum(1)
        scores[0] = float("nan")
        return scores


class IntScorer:
    def score(self, layer, ctx):
        return torch.arange(layer.alive.numel())


class BadScoresPlugin:
    @staticmethod
    @hookimpl
    def register_scorers(register):
        register("nan", NanScorer)
        register("ints", IntScorer)


@pytest.mark.parametrize("name,said", [("nan", "non-finite"), ("ints", "non-float")])
def test_a_scorer_returning_non_finite_or_non_float_scores_fails_its_cell_naming_the_plugin(name, said):
    registry = Registry([("oops", BadScoresPlugin())], installed=False)
    result = run_cell(cell(registry, prune__scorer=f"oops:{name}"), registry)
    assert result.status == "failed"
    assert f"scorer oops:{name} returned {said} scores for layer 'conv2' at step" in result.error


class WeightNorm:
    def compute(self, ctx):
        return {"weight_norm": float(sum(p.detach().pow(2).sum() for p in ctx.model.parameters()) ** 0.5),
                "weight_norm_settings": {"params": "all"}}


class MetricPlugin:
    __version__ = "1.0"

    @staticmethod
    @hookimpl
    def register_metrics(register):
        register("weight-norm", lambda: WeightNorm(), description="L2 norm of all weights")


def test_metric_plugins_run_at_the_end_and_report_their_cost():
    registry = Registry(extra_plugins=[("weights", MetricPlugin)])
    spec = cell_from_config({**TINY, "prune": False, "metrics": ["weights:weight-norm"]}, 0, registry)
    result = run_cell(spec, registry)
    assert result.status == "ok", result.traceback
    assert result.metrics["weight_norm"] > 0
    assert result.metrics["weight_norm_settings"] == {"params": "all"}
    assert result.metrics["metric_wall_s"]["weight-norm"] >= 0
    masked = run_cell(cell(registry), registry).metrics
    assert masked["params_nonzero"] < masked["params"]


def test_a_resnet_cell_prunes_inner_and_post_shortcut_convs(registry):
    spec = cell(registry, model={"name": "resnet1d", "channels": [8, 16]},
                prune__scorer="activation-l1",
                prune__layers={"layer1.1.conv2": {"fraction": 0.5}, "layer2.1.conv1": {"fraction": 0.5}})
    result = run_cell(spec, registry)
    assert result.status == "ok", result.traceback
    assert result.metrics["remaining_filters"] == {"layer1.1.conv2": 4, "layer2.1.conv1": 8}


def test_suite_validation_and_the_cost_estimate_load_no_engine_module():
    """The plan and the cost estimate build components through the registry: none of the engine loads."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from gstbench.plugins import get_registry\n"
            "from gstbench.plan.suite import load_suite\n"
            "from gstbench.run.cost import estimate\n"
            "registry = get_registry()\n"
            "estimate(load_suite(registry, 'tradeoff'), registry)\n"
            "print(sorted(m for m in sys.modules if m.startswith('gstbench.engine')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert eval(out) == []
