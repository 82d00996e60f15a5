"""Built-in scorers: filter L2 and L1 norms, activation L1 (moving average), BatchNorm |gamma|, random."""

from __future__ import annotations

import torch

from gstbench.components import NEEDS_ACTIVATIONS, WEIGHTS, LayerState, PruningContext
from gstbench.plugins import hookimpl
from gstbench.pruning import get_module


class NormScorer:
    def __init__(self, p: int):
        self.p = p

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        w = layer.conv.weight.detach()
        if layer.granularity == "weights":
            return w.abs().cpu()  # a single weight's L1 and L2 norm are both its magnitude
        return w.flatten(1).norm(p=self.p, dim=1).cpu()


def l2():
    """L2 norm of each filter's weights (the paper's VGG11 scorer); |w| for single weights."""
    return NormScorer(2)


def l1():
    """L1 norm of each filter's weights; |w| for single weights (magnitude pruning)."""
    return NormScorer(1)


class BatchNormScaleScorer:
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        if layer.bn is None or layer.bn.weight is None:
            raise ValueError(f"bn-gamma needs a BatchNorm with affine weights after layer '{layer.name}'")
        return layer.bn.weight.detach().abs().cpu()


def bn_gamma():
    """|gamma| of the BatchNorm after each filter (network slimming, Liu et al. 2017)."""
    return BatchNormScaleScorer()


class RandomScorer:
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        return torch.rand(layer.alive.shape, generator=ctx.generator)


def random():
    """Uniform random scores from the cell's seeded generator."""
    return RandomScorer()


class ActivationL1Scorer:
    """Moving average of each channel's mean |activation|, updated every ``every``-th training batch.

    Reads the output of the layer's BatchNorm (before the ReLU), or of the module the
    model names as the layer's ``activation`` (e.g. the post-shortcut sum of a ResNet
    block, as in the paper's ResNet18 code). Averages over batch and positions.
    """

    def __init__(self, momentum: float, every: int):
        if not 0 < momentum <= 1 or every < 1:
            raise ValueError("activation-l1 needs 0 < momentum <= 1 and every >= 1")
        self.momentum, self.every = momentum, every
        self.averages: dict[str, torch.Tensor] = {}
        self.handles: list = []
        self.batches = 0
        self.active = False

    def attach(self, ctx: PruningContext, layers: dict[str, LayerState]) -> None:
        for name, layer in layers.items():
            path = layer.spec.activation or layer.spec.bn or layer.spec.conv
            self.averages[name] = torch.zeros(layer.n_physical)
            self.handles.append(get_module(ctx.model, path).register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if self.active and module.training:
                dims = [d for d in range(output.dim()) if d != 1]
                new = output.detach().abs().mean(dim=dims).float().cpu()
                self.averages[name] = self.momentum * new + (1 - self.momentum) * self.averages[name]
        return hook

    def before_train_batch(self, step: int) -> None:
        self.batches += 1
        self.active = self.batches % self.every == 0

    def units_removed(self, layer: LayerState, kept: torch.Tensor) -> None:
        self.averages[layer.name] = self.averages[layer.name][kept]

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        return self.averages[layer.name].clone()

    def state_dict(self) -> dict:
        return {"averages": {k: v.clone() for k, v in self.averages.items()}, "batches": self.batches,
                "active": self.active}

    def load_state_dict(self, state: dict, ctx: PruningContext, layers: dict[str, LayerState]) -> None:
        self.averages = {k: v.clone() for k, v in state["averages"].items()}
        self.batches, self.active = state["batches"], state["active"]

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


def activation_l1(momentum: float = 0.1, every: int = 10):
    """L1 norm of each channel's activations, moving average 0.1*new + 0.9*old every 10th batch."""
    return ActivationL1Scorer(momentum, every)


@hookimpl
def register_scorers(register):
    register("l2", l2, capabilities=[WEIGHTS])
    register("l1", l1, capabilities=[WEIGHTS])
    register("activation-l1", activation_l1, capabilities=[NEEDS_ACTIVATIONS])
    register("bn-gamma", bn_gamma)
    register("random", random, capabilities=[WEIGHTS])
