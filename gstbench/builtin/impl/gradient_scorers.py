"""What the first-order scorers of the transformer-pruning papers build: Michel et al.'s head importance, Taylor.

Registered, with their options, in gstbench/builtin/scorers.py; imported only when a cell builds one. Both work
on conv filters and on groups (attention heads, MLP neurons), from labelled training examples, in eval mode.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from gstbench.components import LayerState, PruningContext
from gstbench.pruning import get_module, group_parameters, unit_rows


def unit_activation(layer: LayerState) -> tuple[str, int, int]:
    """(module path, unit dimension, features per unit) of the output that carries a layer's units: a group's
    declared activation (last dimension), or a conv layer's BatchNorm output (channels, dimension 1)."""
    if layer.is_group:
        if layer.spec.activation is None:
            raise ValueError(f"layer '{layer.name}' declares no activation module for its {layer.spec.kind}; "
                             f"give its PrunableGroup an activation")
        return layer.spec.activation, -1, layer.spec.slices[0].width
    return layer.spec.activation or layer.spec.bn or layer.spec.conv, 1, 1


class HeadImportanceScorer:
    """Michel, Levy & Neubig 2019: I_h = E_x |dL(x)/d xi_h|, with xi_h a gate multiplying unit h's output (xi = 1),
    normalised by its L2 norm over the layer's units, as the paper does before comparing layers.

    Each example's own derivative is exact from one backward pass: with the loss summed over examples and no
    layer mixing examples (the model in eval mode), dL(x_i)/d xi_h = sum over unit h's features of the summed
    loss's gradient times the activation, at example i."""

    def __init__(self, examples: int):
        if examples < 1:
            raise ValueError(f"head-importance needs examples >= 1, got {examples!r}")
        self.examples = examples

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        from gstbench.engine.evaluation import eval_mode

        path, dim, width = unit_activation(layer)
        x, y = ctx.training_batch(self.examples)
        seen: list[torch.Tensor] = []
        handle = get_module(ctx.model, path).register_forward_hook(lambda m, i, out: seen.append(out))
        try:
            with eval_mode(ctx.model), torch.enable_grad():
                loss = F.cross_entropy(ctx.model(x), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, seen[0])
        finally:
            handle.remove()
        gated = (grad * seen[0]).detach().double()  # d loss / d xi per feature, before summing a unit's features
        if dim == -1:
            per_example = gated.reshape(gated.shape[0], -1, gated.shape[-1] // width, width).sum(dim=(1, 3))
        else:
            per_example = gated.flatten(2).sum(2)
        importance = per_example.abs().mean(0)
        norm = importance.norm()
        return (importance / norm if norm > 0 else importance).float().cpu()


class TaylorScorer:
    """First-order Taylor importance (LLM-Pruner's element-wise first order, Ma et al. 2023): |w * dL/dw| of
    every weight a unit owns, summed over the unit (a group: all its slices; a filter: its conv weights), with
    the mean loss over ``examples`` training examples."""

    def __init__(self, examples: int):
        if examples < 1:
            raise ValueError(f"taylor needs examples >= 1, got {examples!r}")
        self.examples = examples

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        from gstbench.engine.evaluation import eval_mode

        params = group_parameters(ctx.model, layer.spec) if layer.is_group else [layer.conv.weight]
        x, y = ctx.training_batch(self.examples)
        with eval_mode(ctx.model), torch.enable_grad():
            grads = torch.autograd.grad(F.cross_entropy(ctx.model(x), y), params)
        saliency = [(p.detach() * g).abs() for p, g in zip(params, grads)]
        if layer.is_group:
            return unit_rows(layer.spec, saliency).sum(1).cpu()
        return saliency[0].flatten(1).sum(1).cpu()
