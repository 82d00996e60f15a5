"""Built-in rewinds: what happens to weights and learning rate between prune-retrain rounds.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/rewinds.py.
"""

from __future__ import annotations

from gstbench.components import LOADS_WEIGHTS
from gstbench.plugins import hookimpl


def none():
    """Keep the pruned weights and fine-tune for a full schedule at its final learning rate."""
    from gstbench.builtin.impl.rewinds import NoRewind

    return NoRewind()


def weights(at: str):
    """Reset surviving weights (and BN statistics) to their values at step k (k = 0: initialization)."""
    from gstbench.builtin.impl.rewinds import WeightRewind

    return WeightRewind(at)


def lr(at: str):
    """Keep the trained weights and replay the learning-rate schedule from step k (Renda et al. 2020)."""
    from gstbench.builtin.impl.rewinds import LearningRateRewind

    return LearningRateRewind(at)


def finetune(at: str):
    """Keep the pruned weights and fine-tune for the length ``at`` at the schedule's final learning rate
    (finetune@0: none, post-training pruning)."""
    from gstbench.builtin.impl.rewinds import FineTune

    return FineTune(at)


def reinit():
    """Control: a fresh random initialization at the same sparsity, trained from step 0."""
    from gstbench.builtin.impl.rewinds import Reinitialize

    return Reinitialize()


@hookimpl
def register_rewinds(register):
    register("none", none)
    register("weights", weights, capabilities=[LOADS_WEIGHTS])
    register("lr", lr)
    register("finetune", finetune)
    register("reinit", reinit, capabilities=[LOADS_WEIGHTS])
