"""Built-in effectors: permanent masking and physical removal of filters."""

from __future__ import annotations

import torch
from torch import nn

from gstbench.components import REMOVES_UNITS, LayerState, PrunableLayer, PruningContext
from gstbench.plugins import hookimpl
from gstbench.pruning import coupled_outputs, dependency_graph, remove_filters, removal_slices, zero_slices


class MaskEffector:
    """Zero what removal would cut, and keep it zero after every optimizer step.

    That is the filters and the next BatchNorm's gamma and beta (the paper's mask), plus
    the input slices of the layers that consume the channel: they only ever see zeros, so
    the function is the paper's, and the consumers' norm scores match physical removal.
    """

    def __init__(self):
        self.graph = None
        self.slices: dict[str, list] = {}

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        if self.graph is None:  # masking never changes shapes: one graph serves the whole cell
            self.graph = dependency_graph(ctx.model, ctx.example_input)
        dead = (~layer.alive).nonzero().flatten()
        self.slices[layer.name] = removal_slices(self.graph, layer, dead)
        zero_slices(self.slices[layer.name])
        return None

    def after_step(self) -> None:
        for slices in self.slices.values():
            zero_slices(slices)


class RemoveEffector:
    """Remove the filters physically with torch-pruning; the optimizer state is sliced to match."""

    def check_layer(self, model: nn.Module, layer_name: str, layer: PrunableLayer,
                    example_input: torch.Tensor) -> str | None:
        others = coupled_outputs(model, layer, example_input)
        if others:
            return (f"removing filters of '{layer_name}' would also cut the coupled output channels of "
                    f"{', '.join(others)} (a residual sum); `mask` keeps the shortcut's contribution instead")
        return None

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        return remove_filters(ctx.model, layer, indices, ctx.optimizer, ctx.example_input)


def mask():
    """Permanent mask: filter, next BatchNorm's gamma/beta and consumers' inputs zeroed, kept at zero."""
    return MaskEffector()


def remove():
    """Physical removal through torch-pruning's DependencyGraph, optimizer state rebuilt."""
    return RemoveEffector()


@hookimpl
def register_effectors(register):
    register("mask", mask)
    register("remove", remove, capabilities=[REMOVES_UNITS])
