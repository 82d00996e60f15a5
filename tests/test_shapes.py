"""Shapes without tensors: every built-in model's and dataset's declared shapes match the built ones, and `suites show`
plans a 10,000-cell suite (checks and cost estimate) without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch_pruning as tp

from gstbench.components import PrunableGroup
from gstbench.plan.config import ComponentRef
from gstbench.plugins import get_registry
from gstbench.pruning import layer_states

from conftest import DATA, run_cli

MNIST1D = [{}, {"num_samples": 600, "train_split": 0.5}, {"num_samples": 777, "train_split": 0.33, "seed": 3}]
MODELS = [("cnn1d", {}, (1, 40), 10), ("cnn1d", {"channels": [8, 16, 16, 16], "pool_after": [1, 2, 3]}, (1, 40), 10),
          ("resnet1d", {}, (1, 40), 10), ("resnet1d", {"channels": [8, 16, 32], "blocks": 2}, (1, 40), 10),
          ("vgg11-bn", {}, (3, 32, 32), 10), ("resnet18-cifar", {}, (3, 32, 32), 100),
          ("resnet20", {}, (3, 32, 32), 10), ("resnet56", {}, (3, 32, 32), 100),
          ("transformer", {}, (1, 40), 10), ("transformer", {"heads": [3, 1], "hidden": [20, 7]}, (1, 40), 10),
          ("transformer", {"dim": 24, "depth": 3, "heads": 3, "head_dim": 8, "hidden": 40, "patch": 8}, (3, 32, 32),
           100)]


def ref(name: str, options: dict) -> ComponentRef:
    return ComponentRef(f"gstbench:{name}", tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                         for k, v in options.items())))


@pytest.mark.parametrize("options", MNIST1D)
def test_mnist1d_declares_the_sizes_it_generates(options):
    registry = get_registry()
    shape, data = registry.data_shape(ref("mnist1d", options)), registry.load_data(ref("mnist1d", options))
    assert (shape.input_shape, shape.num_classes, shape.n_train, shape.n_test) == (
        data.input_shape, data.num_classes, data.x_train.shape[0], data.x_test.shape[0])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_declares_the_sizes_of_its_files(name):
    registry = get_registry()
    shape, stand_in = registry.data_shape(ref(name, {})), registry.load_data(ref(name, {}), placeholder=True)
    assert (shape.input_shape, shape.num_classes, shape.n_train, shape.n_test) == (
        stand_in.input_shape, stand_in.num_classes, stand_in.x_train.shape[0], stand_in.x_test.shape[0])


@pytest.mark.parametrize("name, options, input_shape, classes", MODELS, ids=[f"{m[0]}-{i}" for i, m in enumerate(MODELS)])
def test_each_builtin_model_declares_its_built_layers_and_torch_prunings_mac_count(name, options, input_shape,
                                                                                    classes):
    from gstbench.shapes import DataShape

    registry = get_registry()
    model_ref = ref(name, options)
    shape = registry.model_shape(model_ref, DataShape(input_shape, classes, 1, 1))
    model = registry.build("models", model_ref, input_shape, classes).eval()
    macs, _ = tp.utils.count_ops_and_params(model, example_inputs=torch.zeros(1, *input_shape))
    assert shape.macs == macs
    declared = list(model.prunable_layers)
    assert list(shape.units) == declared
    assert shape.units == {n: s.n_original for n, s in layer_states(model, declared).items()}
    modules = [n for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Conv2d,
                                                                      torch.nn.Linear))]
    groups = {n: spec.kind for n, spec in model.prunable_layers.items() if isinstance(spec, PrunableGroup)}
    assert shape.groups == groups
    filters = [n for n in declared if n not in groups]  # a group's units are not one weight tensor's
    assert shape.weights == {n: s.n_original for n, s in layer_states(model, filters + modules, "weights").items()}


def test_a_shape_that_cannot_be_built_is_refused_as_the_model_is():
    from gstbench.shapes import DataShape

    registry = get_registry()
    too_many_pools = ref("cnn1d", {"channels": [8] * 6, "pool_after": [1, 2, 3, 4, 5, 6]})
    with pytest.raises(ValueError) as declared:
        registry.model_shape(too_many_pools, DataShape((1, 40), 10, 1, 1))
    with pytest.raises(ValueError) as built:
        registry.build("models", too_many_pools, (1, 40), 10)
    assert str(declared.value) == str(built.value)


PLAN = """
import json, sys
from gstbench.cli import main
sys.argv = ["gstbench", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(json.dumps({"torch": "torch" in sys.modules, "code": code}), file=sys.stderr)
"""


def _plan(*args: str) -> tuple[dict, subprocess.CompletedProcess]:
    proc = subprocess.run([sys.executable, "-c", PLAN, *args], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc


def test_suites_show_of_a_10000_cell_suite_imports_no_torch_and_estimates_what_the_built_models_give(tmp_path):
    values = ", ".join(f"{0.1 + 0.5 * i / 100:.4f}" for i in range(100))
    lrs = ", ".join(f"{0.001 * (i + 1):.4f}" for i in range(50))
    suite = tmp_path / "wide.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace("seeds = 2", "seeds = 1").replace(
        '"prune.target" = ["smallest", "largest"]',
        f'"prune.target" = ["smallest", "largest"]\n"prune.layers.conv3.fraction" = [{values}]\n"train.lr" = [{lrs}]'))
    seen, proc = _plan("suites", "show", str(suite), "--json")
    assert seen == {"torch": False, "code": 0}, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["cells"] == 10_001
    # the same estimate from the models built and counted by torch-pruning (the path a plugin model takes)
    from gstbench.plan.suite import load_suite
    from gstbench.run import cost

    registry = get_registry()
    small = load_suite(registry, str(DATA / "tiny.toml"), build_models=False)
    declared = cost.estimate(small, registry)
    counted = cost._estimate(small, _NoShapes(registry), cost.DEFAULT_TFLOPS, placeholders=False)
    assert declared == counted


class _NoShapes:
    """The registry as a plugin whose model and dataset declare no shapes would make it look."""

    def __init__(self, registry):
        self._registry = registry

    def data_shape(self, ref):
        return None

    def model_shape(self, ref, data):
        return None

    def __getattr__(self, name):
        return getattr(self._registry, name)


@pytest.mark.parametrize("change, key", [('"prune.target" = ["smallest", "largest"]\n[base.prune.layers.conv9]\n'
                                          'fraction = 0.5', "prune.layers.conv9"),
                                         ('"prune.target" = ["smallest", "largest"]\n"prune.end" = ["9ep"]',
                                          "prune.layers.conv2.end")])
def test_suites_show_refuses_on_shapes_what_run_refuses_on_built_models(tmp_path, change, key):
    suite = tmp_path / "bad.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace('"prune.target" = ["smallest", "largest"]', change))
    seen, shown = _plan("suites", "show", str(suite))
    assert seen == {"torch": False, "code": 2}
    ran = run_cli("run", "--suite", str(suite), "--out", str(tmp_path / "out"))
    assert ran.returncode == 2
    assert f"at key '{key}'" in shown.stderr.splitlines()[0]
    assert shown.stderr.splitlines()[0] == ran.stderr.strip().splitlines()[-1]
