"""What the built-in regularizers build: the L1 penalty on BatchNorm gamma and the filter-wise group lasso.

Registered, with their options, in gstbench/builtin/regularizers.py; imported only when a cell builds one.
"""

from __future__ import annotations

import torch
from torch import nn


def _strength(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} needs strength >= 0, got {value!r}")
    return float(value)


class BatchNormL1:
    """strength * sum |gamma| over the affine weights of every BatchNorm (its subgradient: strength * sign(gamma))."""

    def __init__(self, strength: float):
        self.strength = _strength("l1-bn-gamma", strength)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        gammas = [m.weight for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                  and m.weight is not None]
        if not gammas:
            raise ValueError("l1-bn-gamma: the model has no BatchNorm with affine weights to penalize")
        return self.strength * sum(g.abs().sum() for g in gammas)


class FilterGroupLasso:
    """strength * sum over conv filters of ||W_f||_2 (its gradient: strength * W_f / ||W_f||, 0 at W_f = 0)."""

    def __init__(self, strength: float):
        self.strength = _strength("group-lasso", strength)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        weights = [m.weight for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
        if not weights:
            raise ValueError("group-lasso: the model has no convolution whose filters it could penalize")
        return self.strength * sum(_safe_norm(w.flatten(1)).sum() for w in weights)


def _safe_norm(rows: torch.Tensor) -> torch.Tensor:
    """Each row's L2 norm, with gradient 0 (not NaN) at a zero row: a pruned filter stays put."""
    squared = (rows * rows).sum(1)
    zero = squared == 0
    safe = torch.where(zero, torch.ones_like(squared), squared)  # sqrt's gradient at 0 is inf: never taken there
    return torch.where(zero, torch.zeros_like(squared), torch.sqrt(safe))
