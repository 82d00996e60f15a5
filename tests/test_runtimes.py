"""Runtimes: each computes what eager computes on pruned networks (filters and heads removed, single weights
masked), says in one line why it cannot run where it cannot, and the speed-up arithmetic on planted timings."""

from __future__ import annotations

import time

import pytest
import torch

from gstbench.builtin.impl.effectors import MaskEffector
from gstbench.builtin.impl.runtimes import has_2_4_pattern
from gstbench.builtin.models import cnn1d, transformer
from gstbench.builtin.speed import OutputMismatch, check_outputs, measure, speedups
from gstbench.plugins import Registry
from gstbench.plan.config import ComponentRef
from gstbench.pruning import without_dead_filters

from conftest import effector_applied

SHAPE = (1, 40)
CPU = torch.device("cpu")


def _runtime(name: str, **options):
    return Registry().build("runtimes", ComponentRef(f"gstbench:{name}", tuple(options.items())))


def _filters_removed():
    torch.manual_seed(0)
    model = cnn1d(SHAPE, 10, channels=[8, 16, 16, 16]).eval()
    effector_applied(MaskEffector(), model, None, "conv3", [0, 3, 5, 9])
    slim, removed = without_dead_filters(model, torch.zeros(1, *SHAPE))
    assert removed == 4
    return slim.eval()


def _heads_removed():
    torch.manual_seed(0)
    model = transformer(SHAPE, 10, dim=16, depth=2, heads=4, head_dim=4, hidden=24, patch=4).eval()
    effector_applied(MaskEffector(), model, None, "block2.heads", [1, 2])
    slim, removed = without_dead_filters(model, torch.zeros(1, *SHAPE))
    assert removed == 2 and slim.blocks[1].attn.heads == 2
    return slim.eval()


def _weights_masked(model):
    """Half of every linear and convolution weight zeroed, the smallest first: unstructured sparsity."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d)):
                w = module.weight
                w[w.abs() <= w.abs().flatten().median()] = 0
    return model


@pytest.mark.parametrize("name", ["eager", "compile", "onnxruntime", "sparse-csr"])
@pytest.mark.parametrize("make", [_filters_removed, _heads_removed])
def test_every_runtime_computes_what_eager_does_on_a_pruned_network(name, make):
    model = make()
    if name == "sparse-csr":
        model = _weights_masked(model)
    runtime = _runtime(name)
    assert runtime.unavailable(model, CPU) is None
    x = torch.randn(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    run = runtime.prepare(model, x)
    with torch.inference_mode():
        reference = model(x)
    got = run(x)
    assert got.shape == reference.shape and not got.requires_grad
    check_outputs(name, reference, got, runtime.tolerance)
    torch.testing.assert_close(got, reference, rtol=1e-4, atol=1e-5)


def test_runtimes_that_cannot_run_here_say_why_in_one_line(monkeypatch):
    model = _filters_removed()
    reasons = {"semi-structured": _runtime("semi-structured").unavailable(model, CPU),
               "sparse-csr on cuda": _runtime("sparse-csr").unavailable(model, torch.device("cuda"))}
    bare = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())
    reasons["sparse-csr without layers"] = _runtime("sparse-csr").unavailable(bare, CPU)
    monkeypatch.setenv("PATH", "/nonexistent")  # no C++ compiler for inductor
    reasons["compile"] = _runtime("compile").unavailable(model, CPU)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    reasons["onnxruntime"] = _runtime("onnxruntime").unavailable(model, CPU)
    assert all(r and "\n" not in r for r in reasons.values()), reasons
    assert "CUDA" in reasons["semi-structured"] and "CPU" in reasons["sparse-csr on cuda"]
    assert "g++" in reasons["compile"] and "pip install 'gstbench[speed]'" in reasons["onnxruntime"]
    with pytest.raises(ValueError, match="not one of default"):
        _runtime("compile", mode="fastest")


def test_the_2_4_pattern_is_two_zeros_in_every_four_inputs():
    w = torch.tensor([[1.0, 0, 0, 2, 0, 3, 0, 4], [0, 0, 5, 6, 7, 0, 8, 0]])
    assert has_2_4_pattern(w)
    w[1, 0] = 1.0
    assert not has_2_4_pattern(w) and not has_2_4_pattern(torch.zeros(2, 6))


def test_speedups_realized_predicted_and_the_share_delivered():
    assert speedups(10.0, 5.0, 4e6, 1e6) == {"realized": 2.0, "predicted": 4.0, "delivered": 0.5}
    assert speedups(45.22, 46.53, 4.12e9, 4.12e9 / 20)["realized"] < 1  # Torch-Pruning's ResNet-50 at 0.05: slower
    with pytest.raises(ValueError):
        speedups(1.0, 0.0, 1.0, 1.0)


class _Sleeping:
    """A runtime whose calls take planted times: the parent 6 ms, the pruned network 2 ms."""

    tolerance = (0.0, 0.0)

    def unavailable(self, model, device):
        return None

    def prepare(self, model, example):
        pause = 0.006 if model.tag == "parent" else 0.002

        def run(x):
            time.sleep(pause)
            with torch.inference_mode():
                return model(x)
        return run


class _Wrong(_Sleeping):
    def prepare(self, model, example):
        return lambda x: model(x) + 1.0


def _tagged(tag: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 10)).eval()
    model.tag = tag
    return model


def test_measure_times_each_runtime_in_turns_and_reports_planted_speedups():
    pruned, parent = _tagged("pruned"), _tagged("parent")
    x = torch.randn(3, *SHAPE)
    out = measure(pruned, parent, x, {"batch1": 1, "large": 8}, {"sleeping": _Sleeping(),
                                                                  "semi-structured": _runtime("semi-structured")},
                  (3e6, 1e6), warmup=1, repeats=5)
    assert "CUDA" in out["semi-structured"]["unavailable"]
    for label, batch in (("batch1", 1), ("large", 8)):
        row = out["sleeping"][label]
        assert row["batch"] == batch and row["predicted"] == 3.0 and row["max_abs_diff"] == {"pruned": 0.0,
                                                                                              "parent": 0.0}
        assert 2.0 < row["realized"] < 3.3, row  # 6 ms / 2 ms, plus the pass itself on both
        assert row["delivered"] == pytest.approx(row["realized"] / 3.0)
        assert set(row["prepare_s"]) == {"pruned", "parent"}


def test_a_runtime_that_computes_another_function_is_refused_in_one_line():
    with pytest.raises(OutputMismatch) as caught:
        measure(_tagged("pruned"), _tagged("parent"), torch.randn(2, *SHAPE), {"batch1": 1}, {"wrong": _Wrong()},
                (2.0, 1.0), warmup=0, repeats=3)
    assert "runtime wrong gives outputs 1 from eager's" in str(caught.value) and "\n" not in str(caught.value)


def test_zero_weight_macs_count_each_zero_weight_once_per_output_position():
    from gstbench.builtin.speed import zero_weight_macs

    model = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(160, 10))
    with torch.no_grad():
        model[0].weight.zero_()  # 12 weights, each applied at 40 positions
        model[2].weight[:, :16] = 0  # 160 weights, once each
    assert zero_weight_macs(model, torch.zeros(3, 1, 40)) == 12 * 40 + 160


SPEED_CELL = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 400, "train_split": 0.5},
    "train": {"epochs": 1, "batch_size": 100},
    "rewind": "finetune@0",
    "metrics": [{"name": "speed", "runtimes": ["eager", "sparse-csr", "semi-structured"], "batch": 8,
                 "warmup": 1, "repeats": 3}],
}


@pytest.mark.parametrize("granularity", ["filters", "weights"])
def test_the_speed_metric_reports_each_runtime_and_batch_against_the_macs_prediction(granularity):
    from gstbench.engine import run_cell
    from gstbench.plan.parse import cell_from_config

    config = {**SPEED_CELL, "prune": {"scorer": "l1", "target": "smallest", "effector": "mask", "rounds": 1,
                                      "fraction": 0.5, "granularity": granularity, "layers": ["conv2", "conv3"]}}
    result = run_cell(cell_from_config(config, 0, Registry()), Registry())
    assert result.status == "ok", result.traceback
    m = result.metrics
    assert "CUDA" in m["speed_unavailable"]["semi_structured"]
    for runtime in ("eager", "sparse_csr"):
        for batch in ("batch1", "batch"):
            assert m[f"speed_{runtime}_{batch}_realized"] > 0
            assert m[f"speed_{runtime}_{batch}_delivered"] == pytest.approx(
                m[f"speed_{runtime}_{batch}_realized"] / m["speed_predicted"])
    macs = m["speed_settings"]["macs"]
    assert macs["parent"] / macs["pruned"] == pytest.approx(m["speed_predicted"])
    if granularity == "filters":  # the dead filters are gone from the network timed
        assert m["speed_settings"]["dead_units_removed"] == 16 and macs["pruned"] == macs["pruned_dense"]
    else:  # the zeros stay in place; the prediction does not count them
        assert m["speed_settings"]["dead_units_removed"] == 0 and macs["pruned"] < macs["pruned_dense"]
    assert 1.2 < m["speed_predicted"] < 4  # half of conv2 and conv3, the bulk of the MACs


class _SparseOnly(_Sleeping):
    """A sparse format: it refuses the parent (no sparse pattern there), which measure times dense in eager."""

    sparse = True

    def unavailable(self, model, device):
        return "the parent has no sparse pattern" if model.tag == "parent" else None

    def prepare(self, model, example):
        assert model.tag == "pruned", "a sparse runtime's parent runs dense, in eager"
        return super().prepare(model, example)


def test_a_sparse_format_is_timed_against_the_dense_parent_in_eager():
    pruned, parent = _tagged("pruned"), _tagged("parent")
    pruned.train()  # what measure found it in, it leaves it in
    out = measure(pruned, parent, torch.randn(2, *SHAPE), {"batch1": 1}, {"csr": _SparseOnly()}, (2.0, 1.0),
                  warmup=0, repeats=3)
    assert out["csr"]["batch1"]["realized"] < 1  # the pruned network sleeps 2 ms, the eager parent does not
    assert pruned.training and not parent.training


class _SparseWithBaseline(_SparseOnly):
    """A sparse format at another precision: its parent runs in its ``baseline`` (here one sleeping 6 ms)."""

    baseline = _Sleeping()


def test_a_sparse_format_with_a_baseline_has_its_parent_timed_in_it():
    pruned, parent = _tagged("pruned"), _tagged("parent")
    out = measure(pruned, parent, torch.randn(2, *SHAPE), {"batch1": 1}, {"fp16": _SparseWithBaseline()},
                  (2.0, 1.0), warmup=0, repeats=3)
    assert out["fp16"]["batch1"]["realized"] == pytest.approx(3, rel=0.3)  # 6 ms over 2 ms, not eager's


def test_the_2_4_kernels_baseline_is_the_parent_in_fp16_eager():
    from gstbench.builtin.impl.runtimes import EagerHalf, SemiStructured

    assert isinstance(SemiStructured.baseline, EagerHalf) and SemiStructured.sparse
    assert "CUDA" in EagerHalf().unavailable(_tagged("parent"), CPU)


def test_a_network_at_initialization_is_pruned_and_timed_without_a_training_step():
    from gstbench.engine import run_cell
    from gstbench.plan.parse import cell_from_config

    config = {**SPEED_CELL, "train": {"epochs": 0, "batch_size": 100},
              "prune": {"scorer": "l1", "target": "smallest", "effector": "mask", "rounds": 1, "fraction": 0.5,
                        "layers": ["conv2", "conv3"]}}
    config["metrics"] = [{**SPEED_CELL["metrics"][0], "runtimes": ["eager"]}]
    result = run_cell(cell_from_config(config, 0, Registry()), Registry())
    assert result.status == "ok", result.traceback
    assert result.timing["train_s"] == 0 and [r.curves.step for r in result.rounds] == [[0], [0]]
    assert result.rounds[1].sparsity == pytest.approx(0.5, abs=0.05) and result.metrics["speed_predicted"] > 1.5


def test_random_images_meet_the_dataset_contract_and_declare_their_shape_without_building():
    from gstbench import testing

    registry = Registry()
    component = registry.get("datasets", "gstbench:random-images")
    data = testing.check_dataset(component, options={"height": 8, "width": 8, "num_samples": 40})
    assert data.x_train.shape == (20, 3, 8, 8) and data.x_test.shape == (20, 3, 8, 8) and data.num_classes == 10
    shape = registry.data_shape(ComponentRef("gstbench:random-images", (("height", 8), ("width", 8),
                                                                        ("num_samples", 40))))
    assert (shape.input_shape, shape.n_train, shape.n_test) == ((3, 8, 8), 20, 20)
    with pytest.raises(ValueError, match="random-images needs"):
        component.factory(classes=1)


def test_the_speed_suite_trains_nothing_and_times_single_weights_in_a_sparse_format_too():
    from gstbench.plan.suite import load_suite
    from gstbench.run.cost import estimate

    registry = Registry()
    suite = load_suite(registry, "speed", placeholders=True, build_models=False)
    assert all(cell.train.epochs == 0 for cell in suite.cells)
    assert estimate(suite, registry, placeholders=True)["epochs"] == 0  # no training epoch in the whole matrix
    pruned = [cell for cell in suite.cells if cell.prune]
    assert len(pruned) == 4 * 7 and {cell.rewind.id for cell in pruned} == {"gstbench:finetune"}
    for cell in pruned:
        runtimes = dict(cell.metrics[0].options)["runtimes"]
        assert ("gstbench:sparse-csr" in runtimes) == (cell.prune.granularity == "weights")
    # its configurations share labels but for the model and the level, which the labels then name
    from gstbench.plan.selection import config_label, distinguishing_keys

    keys = distinguishing_keys(suite.cells, list(suite.axes))
    assert keys == ["prune.fraction", "model"]
    labels = [config_label(cell, list(suite.axes), keys) for cell in suite.cells]
    assert len(set(labels)) == len(labels) and "l1 smallest mask 1 round fraction=0.5 model=cnn1d" in labels[1]
    assert "magnitude smallest mask 1 round global fraction=0.5 model=cnn1d" in labels[4]


def test_compile_compiles_every_pair_for_itself_past_dynamos_recompile_limit():
    """Every Sequential shares one forward: without a fresh cache per pair, dynamo stops compiling after 8
    networks and runs the rest eagerly, saying so only in a log line (torch's loggers do not propagate)."""
    import logging

    said: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    logger = logging.getLogger("torch._dynamo")
    logger.addHandler(handler)
    compiled = {"compile": _runtime("compile")}
    try:
        for width in range(5, 10):  # 5 pairs: 10 networks of other shapes
            pruned = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, width)).eval()
            parent = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(40, 2 * width)).eval()
            measure(pruned, parent, torch.randn(2, *SHAPE), {"batch1": 1}, compiled, (2.0, 1.0), warmup=1, repeats=3)
    finally:
        logger.removeHandler(handler)
    assert not [m for m in said if "recompile_limit" in m], said


def test_cells_of_the_same_shapes_share_one_measurement_and_a_sparse_formats_zeros_count():
    from gstbench.engine import run_cell
    from gstbench.plan.parse import cell_from_config

    def speed(seed, granularity, runtimes):
        config = {**SPEED_CELL, "train": {"epochs": 0, "batch_size": 100},
                  "prune": {"scorer": "random", "target": "smallest", "effector": "mask", "rounds": 1,
                            "fraction": 0.5, "granularity": granularity, "layers": ["conv2", "conv3"]}}
        config["metrics"] = [{**SPEED_CELL["metrics"][0], "runtimes": runtimes, "batch": 6}]
        result = run_cell(cell_from_config(config, seed, Registry()), Registry())
        assert result.status == "ok", result.traceback
        return result.metrics

    first, again = speed(10, "filters", ["eager"]), speed(11, "filters", ["eager"])  # other filters, same shapes
    assert not first["speed_settings"]["shared"] and again["speed_settings"]["shared"]
    assert again["speed_eager_batch_ms"] == first["speed_eager_batch_ms"]
    # single weights: the dense time is the parent's shapes', shared; in a sparse format the zeros decide
    dense = [speed(s, "weights", ["eager"]) for s in (12, 13)]
    assert dense[1]["speed_settings"]["shared"]
    sparse = [speed(s, "weights", ["eager", "sparse-csr"]) for s in (12, 13)]
    assert not sparse[0]["speed_settings"]["shared"] and not sparse[1]["speed_settings"]["shared"]


def test_the_op_count_is_torch_prunings_once_per_architecture_whatever_the_weights():
    import torch_pruning as tp

    from gstbench.builtin.speed import counted_ops

    example = torch.zeros(1, *SHAPE)
    torch.manual_seed(0)
    first, other_weights = (cnn1d(SHAPE, 10, channels=[8, 16, 16, 16]).eval() for _ in range(2))
    wider = cnn1d(SHAPE, 10, channels=[8, 16, 16, 32]).eval()
    _weights_masked(other_weights)  # zeros in place: the same shapes, the same count
    slim, heads = _filters_removed(), _heads_removed()
    for model in (first, other_weights, wider, slim, heads):
        assert counted_ops(model, example) == tp.utils.count_ops_and_params(model, example)
    assert counted_ops(first, example) == counted_ops(other_weights, example) != counted_ops(wider, example)
    assert counted_ops(slim, example) != counted_ops(first, example)
