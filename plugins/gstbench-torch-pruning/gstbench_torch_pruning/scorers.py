"""What the Torch-Pruning scorers build: group importances over each filter's dependency group.

Registered in __init__.py; imported only when a cell builds one (it imports torch and Torch-Pruning).
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from gstbench.components import LayerState, PruningContext
from gstbench.pruning import dependency_graph

REDUCTIONS = ("mean", "sum", "max", "prod", "first")
NORMALIZERS = ("none", "mean", "max", "sum", "gaussian", "standarization")


def _options(group_reduction: str, normalizer: str) -> dict[str, Any]:
    if group_reduction not in REDUCTIONS:
        raise ValueError(f"group_reduction must be one of {', '.join(REDUCTIONS)}, got {group_reduction!r}")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer must be one of {', '.join(NORMALIZERS)}, got {normalizer!r}")
    return {"group_reduction": group_reduction, "normalizer": None if normalizer == "none" else normalizer}


def _tp():
    """Torch-Pruning, imported when a scorer is built (it takes seconds: `gstbench` commands start without it)."""
    import torch_pruning

    return torch_pruning


class GroupScorer:
    """Scores a layer's filters with a Torch-Pruning importance over their dependency group."""

    def __init__(self, importance: Any, needs: str | None = None):
        self.importance = importance
        self.needs = needs  # the module type the criterion reads, for a clear error when it is missing
        self._graph: tuple[tuple, Any] | None = None

    def _group(self, layer: LayerState, ctx: PruningContext):
        """The dependency group of all the layer's filters; the graph is rebuilt when shapes change."""
        shapes = tuple(tuple(p.shape) for p in ctx.model.parameters())
        if self._graph is None or self._graph[0] != shapes:
            self._graph = (shapes, dependency_graph(ctx.model, ctx.example_input))
        return self._graph[1].get_pruning_group(layer.conv, _tp().prune_conv_out_channels,
                                                idxs=list(range(layer.n_physical)))

    def units_removed(self, layer: LayerState, kept: torch.Tensor) -> None:
        self._graph = None

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        scores = self._importance(self._group(layer, ctx), layer, ctx)
        if scores is None:
            raise ValueError(f"layer '{layer.name}': its dependency group has no {self.needs or 'scored module'}")
        return scores.detach().float().cpu()

    def _importance(self, group, layer: LayerState, ctx: PruningContext) -> torch.Tensor | None:
        return self.importance(group)


@contextlib.contextmanager
def _gradients(model: nn.Module, grads: dict[nn.Parameter, torch.Tensor]) -> Iterator[None]:
    """Parameters' ``.grad`` set to ``grads`` inside, and restored after."""
    saved = {p: p.grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.grad = grads.get(p)
        yield
    finally:
        for p, g in saved.items():
            p.grad = g


def _loss_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, per_example: bool) -> dict:
    """Gradients of the mean cross-entropy (or the mean of squared per-example gradients), side-effect free.

    The forward pass runs in the model's current mode, as training would; BatchNorm running
    statistics are restored and dropout draws from a forked RNG.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    devices = [x.device] if x.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            out = model(x)
            if not per_example:
                return dict(zip(params, torch.autograd.grad(F.cross_entropy(out, y), params)))
            losses = F.cross_entropy(out, y, reduction="none")
            squares = [torch.zeros_like(p) for p in params]
            for i, loss in enumerate(losses):
                for sq, g in zip(squares, torch.autograd.grad(loss, params, retain_graph=i < len(losses) - 1)):
                    sq.add_(g.detach() ** 2)
            return {p: sq / len(losses) for p, sq in zip(params, squares)}
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])


class GradientScorer(GroupScorer):
    """A Torch-Pruning criterion that reads ``.grad``: Taylor (mean gradient) or OBD Hessian (squared gradients)."""

    def __init__(self, importance: Any, batch_size: int, per_example: bool):
        super().__init__(importance)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.per_example = batch_size, per_example
        self._cached: tuple[tuple, dict] | None = None

    def _gradients(self, ctx: PruningContext) -> dict:
        """The step's gradients, computed once for all layers scored while no parameter changes in place."""
        key = (ctx.step, tuple((id(p), p._version) for p in ctx.model.parameters()))
        if self._cached is None or self._cached[0] != key:
            x, y = ctx.training_batch(self.batch_size)
            self._cached = (key, _loss_gradients(ctx.model, x, y, self.per_example))
        return self._cached[1]

    def _importance(self, group, layer: LayerState, ctx: PruningContext) -> torch.Tensor | None:
        with _gradients(ctx.model, self._gradients(ctx)):
            return self.importance(group)
