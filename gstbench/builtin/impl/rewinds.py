"""What the built-in rewinds build: no rewind, weight and learning-rate rewinding, reinitialization, fine-tuning.

Registered, with their options, in gstbench/builtin/rewinds.py; imported only when a cell builds one.
"""

from __future__ import annotations

from gstbench.components import Resume, RewindContext
from gstbench.plan.config import steps_to_int


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


class FineTune:
    """Keep the pruned weights and train the schedule's last ``at`` steps at its final learning rate; ``at`` = 0:
    no training at all (post-training pruning: the pruned network as it is)."""

    def __init__(self, at: str):
        self.at = at

    def checkpoint_step(self, steps_per_epoch, total_steps):
        self.resume_step(steps_per_epoch, total_steps)  # validates the length; no weights to keep
        return None

    def rewind(self, ctx: RewindContext) -> Resume:
        return Resume(step=self.resume_step(ctx.steps_per_epoch, ctx.total_steps), replay_lr=False)

    def resume_step(self, steps_per_epoch, total_steps):
        length = steps_to_int(self.at, steps_per_epoch, total_steps)
        if not 0 <= length <= total_steps:
            raise ValueError(f"finetune@{self.at} is {length} steps, not 0 to the schedule's {total_steps}")
        return total_steps - length


class WeightRewind:
    def __init__(self, at: str):
        self.at = at

    def checkpoint_step(self, steps_per_epoch, total_steps):
        return _step(self.at, steps_per_epoch, total_steps, "weights")

    def rewind(self, ctx: RewindContext) -> Resume:
        import torch  # here, not at the top: building a rewind to plan its steps loads no torch

        with torch.no_grad():
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

    def rewind(self, ctx: RewindContext) -> Resume:
        import torch

        with torch.no_grad():
            ctx.model.load_state_dict(ctx.fresh_state())
        return Resume(step=0)

    def resume_step(self, steps_per_epoch, total_steps):
        return 0
