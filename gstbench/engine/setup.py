"""Setting a cell up: device placement, precision, seeds and the optimizer (its components come from ``Registry.build``)."""

from __future__ import annotations

import random as pyrandom

import numpy as np
import torch
from torch import nn

from gstbench.plan.config import CellSpec
from gstbench.plan.seeds import CELL, INDEPENDENT_PARENT, derived_seed, derived_seeds


def fast_path(device: torch.device) -> bool:
    """On a GPU: channels-last images and models (and the cell turns on cuDNN's autotuner)."""
    return device.type == "cuda"


def place(model: nn.Module, device: torch.device) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if fast_path(device) else model


def autocast(spec: CellSpec, device: torch.device):
    """bf16 autocast of forward passes when the cell's ``train.precision`` asks for it (fp32 otherwise)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")


def seed_everything(seed: int) -> tuple[int, int]:
    """Seed python, numpy and torch; return independent seeds for data order and pruning draws."""
    pyrandom.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    data_seed, prune_seed = derived_seeds(seed, CELL, count=2)
    return data_seed, prune_seed


def independent_seed(seed: int) -> int:
    """The seed of the parent's independent twin: derived, so no suite seed collides with it by accident."""
    return derived_seed(seed, INDEPENDENT_PARENT)


def make_optimizer(spec: CellSpec, model: nn.Module) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
