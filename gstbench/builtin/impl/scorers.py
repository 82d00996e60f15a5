"""What the built-in scorers build: filter norms, BatchNorm |gamma|, random and moving-average activation scores.

Registered, with their options, in gstbench/builtin/scorers.py; imported only when a cell builds one.
"""

from __future__ import annotations

import torch

from gstbench.components import LayerState, PruningContext
from gstbench.pruning import get_module


class NormScorer:
    def __init__(self, p: int):
        self.p = p

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        w = layer.conv.weight.detach()
        if layer.granularity == "weights":
            return w.abs().cpu()  # a single weight's L1 and L2 norm are both its magnitude
        return w.flatten(1).norm(p=self.p, dim=1).cpu()


class BatchNormScaleScorer:
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        if layer.bn is None or layer.bn.weight is None:
            raise ValueError(f"bn-gamma needs a BatchNorm with affine weights after layer '{layer.name}'")
        return layer.bn.weight.detach().abs().cpu()


class RandomScorer:
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        return torch.rand(layer.alive.shape, generator=ctx.generator)


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
