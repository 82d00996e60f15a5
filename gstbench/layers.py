"""What a model declares prunable: conv layers, whose units are filters, and groups of coupled slices (heads, neurons).

A model's ``prunable_layers`` maps each name a suite prunes to one of these; gstbench.components re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class PrunableLayer:
    """A conv layer whose filters (output channels) a suite may prune.

    ``conv`` and ``bn`` are module paths inside the model; ``activation`` is the module
    whose output the activation scorer reads (default: ``bn``, else ``conv``).
    """

    conv: str
    bn: str | None = None
    activation: str | None = None


@dataclass(frozen=True)
class GroupSlice:
    """One parameter's part in a group: unit ``i`` owns its elements ``[i * width, (i + 1) * width)`` along ``dim``.

    A fused projection holds ``blocks`` such runs one after another along ``dim`` (a fused query-key-value
    weight: 3), each ``units * width`` long; the slice is run ``block`` (0 the first), so unit ``i`` owns
    ``[block * units * width + i * width, ... + width)``.
    """

    param: str  # the parameter's path inside the model, e.g. "blocks.0.attn.q.weight"
    dim: int
    width: int = 1
    block: int = 0
    blocks: int = 1

    def elements(self, units: int, which) -> "torch.Tensor":
        """The indices along ``dim`` of the units ``which`` (a tensor of unit indices) when there are ``units``."""
        import torch

        start = self.block * units * self.width
        return (start + which.cpu()[:, None] * self.width + torch.arange(self.width)).flatten()


@dataclass
class PrunableGroup:
    """A layer of units that are not conv filters: each unit a group of coupled slices of several parameters.

    An attention head owns its rows of the query, key and value projections (weights and biases) and its
    columns of the output projection; an MLP neuron its row (and bias) of the first linear layer and its
    column of the second. Zeroing a unit's slices silences it exactly (its output is zero), and cutting them
    removes it; the model must read its unit counts from its tensors' shapes (a head count from the query
    projection's rows), so that a cut model runs. ``kind`` names the units in reports ("heads", "neurons");
    ``activation`` is the module whose output's last dimension holds the units, as many features each as the
    first slice's ``width`` (a head's concatenated output before the output projection; a neuron's GELU).
    A model that keeps a unit count in attributes (timm's ``num_heads``, ``attn_dim``) names them in ``counts``
    with each one's factor; a cut sets them.
    """

    kind: str
    slices: tuple[GroupSlice, ...]
    activation: str | None = None
    # attributes that hold the unit count times a factor, set after a cut: (("blocks.0.attn.num_heads", 1),
    # ("blocks.0.attn.attn_dim", 64)) for timm's attention
    counts: tuple[tuple[str, int], ...] = ()

    def units_of(self, shape_of) -> int:
        """The physical units, from ``shape_of(param path) -> shape`` of the first slice's parameter."""
        first = self.slices[0]
        return shape_of(first.param)[first.dim] // (first.width * first.blocks)
