"""Linear mode connectivity (Frankle et al. 2020): the error along the line between two trained copies,
and the distance between them."""

from __future__ import annotations

import copy
import numpy as np
import torch
from torch import nn

from gstbench.store.cell_result import ModeConnectivity
from gstbench.engine.evaluation import evaluate


def weight_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: list[str]) -> float:
    """||a - b|| / mean(||a||, ||b||) over the (masked) weights ``keys``: 0 for equal, about 1.41 for unrelated."""
    va = torch.cat([a[k].flatten().double() for k in keys])
    vb = torch.cat([b[k].flatten().double() for k in keys])
    norm = (va.norm() + vb.norm()) / 2
    return float((va - vb).norm() / norm) if norm > 0 else 0.0


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict:
    """(1 - alpha) a + alpha b for every floating tensor (parameters and BN statistics); others from a."""
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v for k, v in a.items()}


def linear_mode_connectivity(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                             x: torch.Tensor, y: torch.Tensor, points: int = 30) -> ModeConnectivity:
    """Test error at ``points`` evenly spaced points from a to b; barrier = max error - mean of the endpoints."""
    probe = copy.deepcopy(model)
    alphas = np.linspace(0.0, 1.0, points).tolist()
    errors = []
    for alpha in alphas:
        probe.load_state_dict(interpolate_state(a, b, alpha))
        errors.append(1.0 - evaluate(probe, x, y)[0])
    return ModeConnectivity(alphas, errors, max(errors) - (errors[0] + errors[-1]) / 2, points)
