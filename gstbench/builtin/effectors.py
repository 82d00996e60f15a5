"""Built-in effectors: permanent masking, physical removal, soft filter pruning, and temporary zeroing or noise.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/effectors.py.
"""

from __future__ import annotations

from gstbench.components import GROUPS, REMOVES_UNITS, SOFT, TEMPORARY, WEIGHTS
from gstbench.plugins import hookimpl


def mask():
    """Permanent mask: filter, next BatchNorm's gamma/beta and consumers' inputs zeroed (or single weights)."""
    from gstbench.builtin.impl.effectors import MaskEffector

    return MaskEffector()


def remove():
    """Physical removal through torch-pruning's DependencyGraph, optimizer state rebuilt."""
    from gstbench.builtin.impl.effectors import RemoveEffector

    return RemoveEffector()


def soft():
    """Soft filter pruning (He et al. 2018): zero the filters, keep training them; the last event's stay pruned."""
    from gstbench.builtin.impl.effectors import SoftEffector

    return SoftEffector()


def zero(steps: int = 100, restore: bool = False):
    """Temporary zeroing (filter, BN gamma/beta) for N training steps; re-entry at zero or restore."""
    from gstbench.builtin.impl.effectors import ZeroEffector

    return ZeroEffector(steps, restore)


def noise(steps: int = 100, variance: str | float = "untargeted"):
    """Fresh Gaussian noise on the filters for N training steps; variance of the untargeted filters."""
    from gstbench.builtin.impl.effectors import NoiseEffector

    return NoiseEffector(steps, variance)


def sparsegpt(examples: int = 128, damp: float = 0.01):
    """SparseGPT (Frantar & Alistarh 2023): zero the picked weights of a linear layer, OBS-update the kept ones."""
    from gstbench.builtin.impl.sparsegpt import SparseGPTEffector

    return SparseGPTEffector(int(examples), float(damp))


@hookimpl
def register_effectors(register):
    register("mask", mask, capabilities=[WEIGHTS, GROUPS])
    register("remove", remove, capabilities=[REMOVES_UNITS, GROUPS])
    register("soft", soft, capabilities=[SOFT, GROUPS])
    register("zero", zero, capabilities=[TEMPORARY, GROUPS])
    register("noise", noise, capabilities=[TEMPORARY, GROUPS])
    register("sparsegpt", sparsegpt, capabilities=[WEIGHTS])
