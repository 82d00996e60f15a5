"""The built-in transformer classifier: patch tokens, pre-norm blocks, attention heads and MLP neurons as groups.

Registered, with its options, in gstbench/builtin/models.py; imported only when a cell builds one. Each block
declares two prunable layers (components.PrunableGroup): ``blockN.heads`` and ``blockN.neurons``. The modules
read their head and neuron counts from their weights' shapes, so a network with units cut away runs as it is.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from gstbench.components import GroupSlice, PrunableGroup

_PATCH = {1: nn.Conv1d, 2: nn.Conv2d}


class Attention(nn.Module):
    """Multi-head self-attention with separate query, key, value and output projections.

    ``heads_out`` is the concatenated heads' output before the output projection (the heads' activations).
    """

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.head_dim = head_dim
        self.q, self.k, self.v = (nn.Linear(dim, heads * head_dim) for _ in range(3))
        self.out = nn.Linear(heads * head_dim, dim)
        self.heads_out = nn.Identity()

    @property
    def heads(self) -> int:
        return self.q.weight.shape[0] // self.head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        h, d = self.heads, self.head_dim
        q, k, v = (proj(x).reshape(b, t, h, d).transpose(1, 2) for proj in (self.q, self.k, self.v))
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, h * d)
        return self.out(self.heads_out(y))

    def group(self, prefix: str) -> PrunableGroup:
        """A head: its rows of q, k, v (weights and biases) and its columns of the output projection.

        A zeroed head's queries and keys are zero (uniform attention) and its values zero: it adds exactly
        nothing, as when it is cut away."""
        d = self.head_dim
        rows = [GroupSlice(f"{prefix}.{p}.{t}", 0, d) for p in ("q", "k", "v") for t in ("weight", "bias")]
        return PrunableGroup("heads", (*rows, GroupSlice(f"{prefix}.out.weight", 1, d)), f"{prefix}.heads_out")


class MLP(nn.Module):
    """Linear, GELU, linear: a neuron is a row (and bias) of the first and a column of the second."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))

    def group(self, prefix: str) -> PrunableGroup:
        """GELU(0) = 0: a neuron with its row and bias zeroed outputs nothing, as when it is cut away."""
        return PrunableGroup("neurons", (GroupSlice(f"{prefix}.fc1.weight", 0), GroupSlice(f"{prefix}.fc1.bias", 0),
                                         GroupSlice(f"{prefix}.fc2.weight", 1)), f"{prefix}.act")


class Block(nn.Module):
    """Pre-norm transformer block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, head_dim)
        self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def per_block(value: int | Sequence[int], depth: int, name: str) -> list[int]:
    """One count per block: an int for every block, or a list of ``depth`` (a pruned network's own widths)."""
    counts = [int(value)] * depth if isinstance(value, int) else [int(v) for v in value]
    if len(counts) != depth or min(counts) < 1:
        raise ValueError(f"{name} = {value!r}: give one count of at least 1, or one per block ({depth})")
    return counts


class Transformer(nn.Module):
    """A ViT-style classifier for 1-D signals or images: non-overlapping patches as tokens with a learned
    position embedding, ``depth`` pre-norm blocks, a final LayerNorm, the tokens' mean, one linear layer.
    ``heads`` and ``hidden`` are one count for every block or a list with one per block."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, dim: int, depth: int,
                 heads: int | Sequence[int], head_dim: int, hidden: int | Sequence[int], patch: int):
        super().__init__()
        spatial = list(input_shape[1:])
        if len(spatial) not in _PATCH:
            raise ValueError(f"inputs of shape {tuple(input_shape)}: need (channels, length) or (channels, height, "
                             f"width)")
        if any(s % patch for s in spatial):
            raise ValueError(f"inputs of shape {tuple(input_shape)} do not split into patches of {patch}")
        tokens = math.prod(s // patch for s in spatial)
        self.patches = _PATCH[len(spatial)](input_shape[0], dim, patch, stride=patch)
        self.position = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        heads, hidden = per_block(heads, depth, "heads"), per_block(hidden, depth, "hidden")
        self.blocks = nn.Sequential(*(Block(dim, h, head_dim, n) for h, n in zip(heads, hidden)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.prunable_layers: dict[str, PrunableGroup] = {}
        for i, block in enumerate(self.blocks, start=1):
            self.prunable_layers[f"block{i}.heads"] = block.attn.group(f"blocks.{i - 1}.attn")
            self.prunable_layers[f"block{i}.neurons"] = block.mlp.group(f"blocks.{i - 1}.mlp")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.norm(self.blocks(tokens)).mean(dim=1))
