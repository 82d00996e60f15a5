"""What the sparsegpt effector builds: SparseGPT's layer-wise OBS reconstruction of a linear layer's kept weights.

Registered, with its options, in gstbench/builtin/effectors.py; imported only when a cell builds one.
"""

from __future__ import annotations

import torch
from torch import nn

from gstbench.builtin.impl.calibrated_scorers import input_rows
from gstbench.builtin.impl.effectors import MaskEffector
from gstbench.components import LayerState, PruningContext


def layer_hessian(model: nn.Module, path: str, x: torch.Tensor) -> torch.Tensor:
    """H = X^T X / rows of a linear module's inputs on ``x`` (every token a row), in float64, eval mode."""
    rows = input_rows(model, [path], x)[path]
    return rows.T @ rows / rows.shape[0]


@torch.no_grad()
def sparsegpt_update(weight: torch.Tensor, pruned: torch.Tensor, hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """SparseGPT's reconstruction for a fixed mask (Frantar & Alistarh 2023, Algorithm 1): the columns are taken
    in order; each pruned weight is zeroed and its error spread over the row's later columns by the OBS update
    with the inverse Hessian of the columns not yet taken (the rows of the upper Cholesky factor of H^-1).
    ``pruned`` is a bool mask of ``weight``'s shape; H is damped by ``damp`` times its mean diagonal. Returns the
    new weight (float64); a column no input reaches (zero diagonal) is zeroed, as the paper's code does."""
    w = weight.detach().double().clone()
    upper, dead = inverse_hessian_factor(hessian, damp)
    w[:, dead] = 0
    for i in range(w.shape[1]):
        column = w[:, i]
        error = torch.where(pruned[:, i], column, torch.zeros_like(column)) / upper[i, i]
        w[:, i:] -= error[:, None] * upper[i, i:][None, :]
        w[pruned[:, i], i] = 0
    return w


def inverse_hessian_factor(hessian: torch.Tensor, damp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(the upper Cholesky factor of the damped H^-1, the columns no input reaches), as SparseGPT prepares them."""
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    return torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True), dead


class OBSScorer:
    """SparseGPT's saliency w^2 / [U]_jj^2 of each weight of a linear layer (U the upper Cholesky factor of the
    damped inverse Hessian: [U]_jj^2 is column j's inverse-Hessian entry among the columns from j on), from
    ``examples`` calibration examples; compared over the whole layer, as SparseGPT compares a block of columns
    over all its rows (a layer of at most 128 inputs is one block)."""

    def __init__(self, examples: int, damp: float):
        if examples < 1 or not damp > 0:
            raise ValueError(f"obs needs examples >= 1 and damp > 0, got {examples!r} and {damp!r}")
        self.examples, self.damp = examples, damp

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        module = layer.conv
        if layer.granularity != "weights" or not isinstance(module, nn.Linear):
            raise ValueError(f"obs scores single weights of linear layers; layer '{layer.name}' is not one")
        x, _ = ctx.training_batch(self.examples)
        upper, _ = inverse_hessian_factor(layer_hessian(ctx.model, layer.spec.conv, x), self.damp)
        return (module.weight.detach().double() ** 2 / torch.diag(upper)[None, :] ** 2).float().cpu()


class SparseGPTEffector:
    """Zero the picked single weights of a linear layer and update the layer's kept weights as SparseGPT does,
    from ``examples`` calibration examples; then keep every pruned weight zero after each optimizer step, as
    ``mask`` does. The scorer and target pick the weights (SparseGPT's own saliency: the ``obs`` scorer)."""

    def __init__(self, examples: int, damp: float):
        if examples < 1 or not damp > 0:
            raise ValueError(f"sparsegpt needs examples >= 1 and damp > 0, got {examples!r} and {damp!r}")
        self.examples, self.damp = examples, damp
        self.mask = MaskEffector()

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        module = layer.conv
        if layer.granularity != "weights" or not isinstance(module, nn.Linear):
            raise ValueError(f"sparsegpt reconstructs linear layers pruned by single weights; layer '{layer.name}' "
                             f"is {'a ' + type(module).__name__ if layer.granularity == 'weights' else 'pruned by units'}")
        x, _ = ctx.training_batch(self.examples)
        hessian = layer_hessian(ctx.model, layer.spec.conv, x)
        pruned = ~layer.alive.to(module.weight.device)
        module.weight.data.copy_(sparsegpt_update(module.weight, pruned, hessian, self.damp).to(module.weight.dtype))
        return self.mask.apply(layer, indices, ctx)

    def after_step(self) -> None:
        self.mask.after_step()
