"""Built-in rewinds: what happens to weights and learning rate between prune-retrain rounds.

Each round retrains from the returned step to the end of the schedule, so a rewind to
step k retrains for T - k steps with the schedule's learning rate and data order from k
(OpenLTH's convention; Renda et al. 2020 for learning-rate rewinding).
"""

from __future__ import annotations

import torch

from gstbench.components import LOADS_WEIGHTS, Resume, RewindContext
from gstbench.config import steps_to_int
from gstbench.plugins import hookimpl


def _step(at: str, steps_per_epoch: int, total: int, name: str) -> int:
    k = steps_to_int(at, steps_per_epoch, total)
    if not 0 <= k < total:
        raise ValueError(f"{name}@{at} is step {k}, not inside training (0 to {total - 1} steps)")
    return k


class NoRewind:
    def checkpoint_step(self, steps_per_epoch, total_steps):
        return None

    def rewind(self, ctx: RewindContext) -> Resume:
        return Resume(step=0, replay_lr=False)

    def resume_step(self, steps_per_epoch, total_steps):
        return 0


class WeightRewind:
    def __init__(self, at: str):
        self.at = at

    def checkpoint_step(self, steps_per_epoch, total_steps):
        return _step(self.at, steps_per_epoch, total_steps, "weights")

    @torch.no_grad()
    def rewind(self, ctx: RewindContext) -> Resume:
        ctx.model.load_state_dict(ctx.checkpoint)
        return Resume(step=self.resume_step(ctx.steps_per_epoch, ctx.total_steps))

    def resume_step(self, steps_per_epoch, total_steps):
        return self.checkpoint_step(steps_per_epoch, total_steps)


class LearningRateRewind:
    def __init__(self, at: str):
        self.at = at

    def checkpoint_step(self, steps_per_epoch, total_steps):
        _step(self.at, steps_per_epoch, total_steps, "lr")  # validates k; no weights to keep
        return None

    def rewind(self, ctx: RewindContext) -> Resume:
        return Resume(step=self.resume_step(ctx.steps_per_epoch, ctx.total_steps))

    def resume_step(self, steps_per_epoch, total_steps):
        return _step(self.at, steps_per_epoch, total_steps, "lr")


class Reinitialize:
    def checkpoint_step(self, steps_per_epoch, total_steps):
        return None

    @torch.no_grad()
    def rewind(self, ctx: RewindContext) -> Resume:
        ctx.model.load_state_dict(ctx.fresh_state())
        return Resume(step=0)

    def resume_step(self, steps_per_epoch, total_steps):
        return 0


def none():
    """Keep the pruned weights and fine-tune for a full schedule at its final learning rate."""
    return NoRewind()


def weights(at: str):
    """Reset surviving weights (and BN statistics) to their values at step k (k = 0: initialization)."""
    return WeightRewind(at)


def lr(at: str):
    """Keep the trained weights and replay the learning-rate schedule from step k (Renda et al. 2020)."""
    return LearningRateRewind(at)


def reinit():
    """Control: a fresh random initialization at the same sparsity, trained from step 0."""
    return Reinitialize()


@hookimpl
def register_rewinds(register):
    register("none", none)
    register("weights", weights, capabilities=[LOADS_WEIGHTS])
    register("lr", lr)
    register("reinit", reinit, capabilities=[LOADS_WEIGHTS])
