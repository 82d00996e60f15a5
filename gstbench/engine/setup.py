"""Setting a cell up: its components from the registry, data and model, device, precision and seeds.

Suite validation and the cost estimate import this module only; training lives in loop.py.
"""

from __future__ import annotations

import random as pyrandom
from typing import Any

import numpy as np
import torch
from torch import nn

from gstbench.components import TensorData
from gstbench.config import CellSpec, ComponentRef


def component(registry: Any, kind: str, ref: ComponentRef) -> Any:
    """The registered component a cell's ref names (its id without the ``@revision``)."""
    return registry.get(kind, ref.id.split("@")[0])


def build(registry: Any, kind: str, ref: ComponentRef, *args: Any) -> Any:
    return component(registry, kind, ref).factory(*args, **ref.kwargs)


def load_data(registry: Any, spec: CellSpec, placeholder: bool = False) -> TensorData:
    """The cell's dataset; ``placeholder`` takes the dataset's stand-in, if it offers one, instead of its files."""
    factory = component(registry, "datasets", spec.dataset).factory
    if placeholder and hasattr(factory, "placeholder"):
        return factory.placeholder()
    return build(registry, "datasets", spec.dataset)


def build_model(registry: Any, spec: CellSpec, data: TensorData) -> nn.Module:
    model = build(registry, "models", spec.model, data.input_shape, data.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec.model.id} returned {type(model).__name__}, not an nn.Module")
    return model


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
    data_seed, prune_seed = np.random.SeedSequence(seed).generate_state(2)
    return int(data_seed), int(prune_seed)


def independent_seed(seed: int) -> int:
    """The seed of the parent's independent twin: derived, so no suite seed collides with it by accident."""
    return int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])


def make_optimizer(spec: CellSpec, model: nn.Module) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
