"""Pruning schedules: which layer loses how many filters at which training step.

Per layer: total fraction, start, end and period (steps or epochs). Events fall at
``range(start, end + 1, period)``. After event i of N, ``final + ceil((n - final) *
(N - i) / N)`` filters remain, with ``final = ceil((1 - fraction) * n)``: the formula of
the paper's code, so every event removes the same count up to one, and exactly
``final`` remain after the last. Events of several layers at the same step form one
pruning event (one t_pre, one t_post). Events that would remove nothing are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gstbench.plan.config import PruneConfig, steps_to_int
from gstbench.errors import SpecError


@dataclass(frozen=True)
class LayerCut:
    layer: str
    count: int
    index: int  # 1-based event number within this layer's schedule
    of: int  # number of events of this layer


def kept_after(n: int, fraction: float, i: int, n_events: int) -> int:
    final = math.ceil(round((1 - fraction) * n, 9))
    return final + -(-(n - final) * (n_events - i) // n_events)


def build_schedule(prune: PruneConfig, n_filters: dict[str, int], steps_per_epoch: int,
                   total_steps: int) -> dict[int, list[LayerCut]]:
    """Map training step -> the cuts made just before that step."""
    events: dict[int, list[LayerCut]] = {}
    for name, sched in prune.layers:
        start, end, period = (steps_to_int(s, steps_per_epoch, total_steps)
                              for s in (sched.start, sched.end, sched.period))
        steps = list(range(start, end + 1, period))
        if not steps:
            raise SpecError(f"start {sched.start} is after end {sched.end}: no pruning event",
                            key=f"prune.layers.{name}")
        if steps[-1] >= total_steps:
            raise SpecError(f"an event at step {steps[-1]} ({sched.end}) is not before the end of training "
                            f"({total_steps} steps); end the schedule earlier or train longer",
                            key=f"prune.layers.{name}.end")
        n = n_filters[name]
        for i, step in enumerate(steps, start=1):
            count = kept_after(n, sched.fraction, i - 1, len(steps)) - kept_after(n, sched.fraction, i, len(steps))
            if count > 0:
                events.setdefault(step, []).append(LayerCut(name, count, i, len(steps)))
    return dict(sorted(events.items()))


def iterative_rate(prune: PruneConfig, steps_per_epoch: int, total_steps: int) -> float:
    """The suite's 'rate': total fraction / number of events, for the most-pruned layer."""
    best = 0.0
    for _, sched in prune.layers:
        start, end, period = (steps_to_int(s, steps_per_epoch, total_steps)
                              for s in (sched.start, sched.end, sched.period))
        n_events = max(1, len(range(start, end + 1, period)))
        best = max(best, sched.fraction / n_events)
    return best
