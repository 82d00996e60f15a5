"""A test plugin: random 1-D data without shifted test sets (distribution-shift metrics cannot apply to it)."""

import torch

from gstbench import hookimpl
from gstbench.components import TensorData


def flat():
    """Random 1-D data without shifted test sets."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 40, generator=g)
    y = torch.randint(0, 2, (64,), generator=g)
    return TensorData(x, y, x, y, 2)


@hookimpl
def register_datasets(register):
    register("flat", flat)
