"""gstbench.testing: the built-ins meet every contract, and each rule catches a component that breaks it."""

from __future__ import annotations

import re
import types

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gstbench import hookimpl, plugins
from gstbench.builtin.impl.effectors import MaskEffector
from gstbench.components import REMOVES_UNITS, PrunableLayer, Resume, TensorData
from gstbench.errors import PluginError
from gstbench.pruning import remove_filters
from gstbench.testing import (ContractError, check_dataset, check_effector, check_metric, check_model,
                              check_rewind, check_scorer, check_target)

pytest_plugins = "gstbench.testing"


# ---- the built-ins pass ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["l2", "activation-l1", "random"])
def test_builtin_scorers_meet_the_contract(registry, name):
    scores = check_scorer(registry.get("scorers", name))
    assert set(scores) == {"conv1", "conv2", "conv3", "conv4"}


def test_builtin_targets_effectors_rewinds_metrics_models_and_data_meet_their_contracts(registry):
    for name in ("smallest", "largest", "random"):
        check_target(registry.get("targets", name))
    check_effector(registry.get("effectors", "mask"))  # filters and single weights
    check_effector(registry.get("effectors", "remove"))
    check_effector(registry.get("effectors", "zero"), options={"steps": 2})
    check_rewind(registry.get("rewinds", "weights"), options={"at": "1ep"})
    check_rewind(registry.get("rewinds", "lr"), options={"at": "1ep"})
    check_rewind(registry.get("rewinds", "reinit"))
    values = check_metric(registry.get("metrics", "functional-distance"), options={"samples": 32})
    assert "functional_distance_settings" in values
    check_metric(registry.get("metrics", "hessian-trace"), options={"samples": 16, "probes": 2, "deflation": 2})
    check_model(registry.get("models", "resnet1d"))
    check_dataset(registry.get("datasets", "mnist1d"), options={"num_samples": 200})


# ---- each rule catches its violation ---------------------------------------------------------
class ShapeScorer:
    def score(self, layer, ctx):
        return torch.ones(layer.n_physical + 1)


class GlobalRandomScorer:
    def score(self, layer, ctx):
        return torch.rand(layer.alive.shape)


class TrainModeForwardScorer:
    """Runs a training-mode forward pass: BatchNorm running stats move."""

    def score(self, layer, ctx):
        ctx.model(ctx.example_input)
        return layer.conv.weight.detach().flatten(1).norm(dim=1).cpu()


class EvalScorer:
    def score(self, layer, ctx):
        ctx.model.eval()
        return layer.conv.weight.detach().flatten(1).norm(dim=1).cpu()


class LeakyHooksScorer:
    def attach(self, ctx, layers):
        for layer in layers.values():
            layer.conv.register_forward_hook(lambda *args: None)

    def detach(self):
        pass

    def score(self, layer, ctx):
        return torch.zeros(layer.alive.shape)


class ForgetsRemovalScorer:
    """Keeps one number per filter from the start and never slices it after removal."""

    def attach(self, ctx, layers):
        self.sizes = {name: layer.n_physical for name, layer in layers.items()}

    def score(self, layer, ctx):
        return torch.zeros(self.sizes[layer.name])


@pytest.mark.parametrize("scorer,rule", [
    (ShapeScorer, "returned shape"),
    (GlobalRandomScorer, "drew from torch's global RNG"),
    (TrainModeForwardScorer, "changed the model (features.block1.bn.num_batches_tracked"),
    (EvalScorer, "left the model in eval mode"),
    (LeakyHooksScorer, "still on the model after detach()"),
    (ForgetsRemovalScorer, "after removal"),
])
def test_check_scorer_catches_each_broken_rule(scorer, rule):
    with pytest.raises(ContractError, match=rf"scorer .*{scorer.__name__}.*{re.escape(rule)}"):
        check_scorer(scorer)


class NoGenerator:
    def select(self, scores, alive, count, generator):
        candidates = alive.nonzero().flatten()
        return candidates[torch.randperm(len(candidates))[:count]]


class PicksDead:
    def select(self, scores, alive, count, generator):
        return torch.arange(count)


def test_check_target_catches_global_rng_and_dead_units():
    with pytest.raises(ContractError, match="global RNG"):
        check_target(NoGenerator)
    with pytest.raises(ContractError, match="distinct alive indices"):
        check_target(PicksDead)


class ZeroWholeLayer:
    def apply(self, layer, indices, ctx):
        with torch.no_grad():
            layer.conv.weight.zero_()


class DoesNothing:
    def apply(self, layer, indices, ctx):
        return None


class ZeroOnceWithoutBatchNorm:
    """Zeroes the filters once: BatchNorm's beta keeps the channel on, and training brings the filter back."""

    def apply(self, layer, indices, ctx):
        with torch.no_grad():
            layer.conv.weight[indices] = 0


class RemoveForgettingOptimizer:
    def apply(self, layer, indices, ctx):
        return remove_filters(ctx.model, layer, indices, None, ctx.example_input)


class MaskButSayRemoved:
    def apply(self, layer, indices, ctx):
        MaskEffector().apply(layer, indices, ctx)
        return torch.arange(layer.n_physical)


@pytest.mark.parametrize("effector,capabilities,rule", [
    (ZeroWholeLayer, (), "outside the targeted units"),
    (DoesNothing, (), "changed nothing in the targeted units"),
    (ZeroOnceWithoutBatchNorm, (), "still contribute to the output"),
    (RemoveForgettingOptimizer, (REMOVES_UNITS,), "optimizer still holds the old tensors"),
    (MaskButSayRemoved, (), "without declaring the removes-units capability"),
    (MaskButSayRemoved, (REMOVES_UNITS,), "as the kept units"),
])
def test_check_effector_catches_each_broken_rule(effector, capabilities, rule):
    with pytest.raises(ContractError, match=rule):
        check_effector(effector, capabilities=capabilities)


class RewindsPastTheEnd:
    def checkpoint_step(self, steps_per_epoch, total_steps):
        return None

    def rewind(self, ctx):
        return Resume(step=ctx.total_steps)


class LoadsWithoutSaying:
    def checkpoint_step(self, steps_per_epoch, total_steps):
        return None

    def rewind(self, ctx):
        ctx.model.load_state_dict(ctx.fresh_state())
        return Resume(step=0)


class NoisyRewind:
    def checkpoint_step(self, steps_per_epoch, total_steps):
        return None

    def rewind(self, ctx):
        with torch.no_grad():
            for p in ctx.model.parameters():
                p.add_(torch.randn(p.shape) * 0.01)
        return Resume(step=0)


@pytest.mark.parametrize("rewind,rule", [
    (RewindsPastTheEnd, "with 0 <= step < 12"),
    (LoadsWithoutSaying, "declare the loads-weights capability"),
    (NoisyRewind, "global RNG"),
])
def test_check_rewind_catches_each_broken_rule(rewind, rule):
    with pytest.raises(ContractError, match=rule):
        check_rewind(rewind)


class NoSettings:
    def compute(self, ctx):
        return {"weight_norm": 1.0}


class TensorValue:
    def compute(self, ctx):
        return {"norm": torch.tensor(1.0), "norm_settings": {"p": 2}}


class TrainModeLoss:
    def compute(self, ctx):
        loss = F.cross_entropy(ctx.model(ctx.data.x_test[:32]), ctx.data.y_test[:32])
        return {"loss": loss.item(), "loss_settings": {"samples": 32}}


class LeavesGradients:
    def compute(self, ctx):
        ctx.model.eval()
        loss = F.cross_entropy(ctx.model(ctx.data.x_test[:32]), ctx.data.y_test[:32])
        loss.backward()
        ctx.model.train()
        return {"loss": loss.item(), "loss_settings": {"samples": 32}}


class UnseededSample:
    def compute(self, ctx):
        gen = torch.Generator()
        gen.seed()
        idx = torch.randperm(len(ctx.data.x_test), generator=gen)[:8]
        return {"first": idx.tolist(), "first_settings": {"samples": 8}}


@pytest.mark.parametrize("metric,rule", [
    (NoSettings, "reports no settings"),
    (TensorValue, "JSON cannot store"),
    (TrainModeLoss, "changed the model"),
    (LeavesGradients, r"left gradients in \.grad"),
    (UnseededSample, "two computations on the same model gave different values"),
])
def test_check_metric_catches_each_broken_rule(metric, rule):
    with pytest.raises(ContractError, match=rule):
        check_metric(metric)


class HardCodedView(nn.Module):
    """Reshapes with a hard-coded channel count: after removal it no longer runs."""

    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.conv = nn.Conv1d(input_shape[0], 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(8)
        self.fc = nn.Linear(8 * input_shape[1], num_classes)
        self.prunable_layers = {"conv": PrunableLayer(conv="conv", bn="bn")}

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().view(x.shape[0], 8 * x.shape[-1]))


def test_check_model_catches_a_hard_coded_shape_and_a_wrong_path():
    with pytest.raises(ContractError, match="after torch-pruning removed filters of 'conv' the model fails"):
        check_model(HardCodedView)

    def wrong_path(input_shape, num_classes):
        model = HardCodedView(input_shape, num_classes)
        model.prunable_layers["conv"].bn = "bn2"
        return model

    with pytest.raises(ContractError, match="names the module 'bn2', which does not exist"):
        check_model(wrong_path)


def test_check_dataset_catches_bad_labels_and_unseeded_data():
    def bad_labels():
        x = torch.randn(10, 1, 8, generator=torch.Generator().manual_seed(0))
        return TensorData(x, torch.arange(10), x, torch.zeros(10, dtype=torch.long), num_classes=5)

    def unseeded():
        return TensorData(torch.randn(10, 1, 8), torch.zeros(10, dtype=torch.long), torch.randn(4, 1, 8),
                          torch.zeros(4, dtype=torch.long), num_classes=2)

    with pytest.raises(ContractError, match=r"y_train has labels outside \[0, 5\)"):
        check_dataset(bad_labels)
    with pytest.raises(ContractError, match="two builds with the same options differ"):
        check_dataset(unseeded)


# ---- fixtures ---------------------------------------------------------------------------------
def _plugin_with(scorer_factory):
    module = types.ModuleType("demo")

    @hookimpl
    def register_scorers(register):
        register("demo", scorer_factory)

    module.register_scorers = register_scorers
    return module


def test_register_plugin_is_for_one_test_only(register_plugin, tiny_model, tiny_data):
    registry = register_plugin(_plugin_with(lambda: ShapeScorer()), name="demo")
    assert plugins.get_registry() is registry
    assert registry.get("scorers", "demo:demo").plugin == "demo"
    assert tiny_model.prunable_layers and tiny_data.input_shape == (1, 40)
    with pytest.raises(ContractError, match="scorer demo:demo: score"):
        check_scorer(registry.get("scorers", "demo"), model=tiny_model, data=tiny_data)


def test_register_plugin_left_no_trace():
    assert "demo" not in plugins.get_registry().plugins


def test_register_plugin_raises_for_a_broken_plugin(register_plugin):
    module = types.ModuleType("broken")

    @hookimpl
    def register_scorers(register):
        raise RuntimeError("boom")

    module.register_scorers = register_scorers
    with pytest.raises(PluginError, match=r'plugin "broken" was left out: register_scorers raised RuntimeError: '
                                          r'boom \(at test_testing_kit.py:\d+\); fix the hook'):
        register_plugin(module)


def test_checks_take_a_residual_model_whose_summed_layers_cannot_be_removed(registry, tiny_data):
    torch.manual_seed(0)
    model = registry.get("models", "resnet1d").factory(tiny_data.input_shape, tiny_data.num_classes,
                                                       channels=(8, 16))
    check_scorer(registry.get("scorers", "l2"), model=model, data=tiny_data)
    check_effector(registry.get("effectors", "remove"), model=model, data=tiny_data)  # picks an uncoupled layer
    check_rewind(registry.get("rewinds", "reinit"), model=model, data=tiny_data)  # fresh weights of this model
