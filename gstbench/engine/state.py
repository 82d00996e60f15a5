"""One cell's state while the engine runs it: what every stage reads (spec, registry, data, device,
parent cache, checkpoints, trackers) and the wall time each part took, owned in one place.

``run_cell`` makes one ``Cell``; the schedule, the rounds, the parent and the metrics all take
it instead of threading each piece by hand.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from gstbench.engine.checkpoint import Checkpoints
from gstbench.engine.tracking import CellTracker
from gstbench.plan.config import CellSpec
from gstbench.plugins import Registry

if TYPE_CHECKING:
    import torch

    from gstbench.components import TensorData
    from gstbench.store.parents import ParentCache

CELL_PARTS = ("train_s", "eval_s", "prune_s", "metrics_s")  # every cell's timing has these, in this order


class Timing:
    """Wall seconds per part of a cell (``train_s``, ``eval_s``, ``parent_s``, ...), as its result stores them."""

    def __init__(self, *parts: str):
        self.seconds: dict[str, float] = {part: 0.0 for part in parts}

    def add(self, part: str, seconds: float) -> None:
        self.seconds[part] = self.seconds.get(part, 0.0) + seconds

    @contextmanager
    def measure(self, part: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(part, time.perf_counter() - t0)

    def state_dict(self) -> dict[str, float]:
        return dict(self.seconds)

    def load_state_dict(self, seconds: dict[str, float]) -> None:
        self.seconds.update(seconds)

    def as_json(self) -> dict[str, float]:
        return {part: round(s, 4) for part, s in self.seconds.items()}


@dataclass
class Cell:
    """A cell being run. ``for_parent`` gives the same cell's unpruned parent (another seed for the twin)."""

    spec: CellSpec
    registry: Registry
    data: TensorData
    device: torch.device
    parents: ParentCache | None = None
    checkpoints: Checkpoints = field(default_factory=lambda: Checkpoints(None, "", 0))
    tracker: CellTracker = field(default_factory=CellTracker)
    timing: Timing = field(default_factory=lambda: Timing(*CELL_PARTS))
    models: Path | None = None  # where its training's models go (trainings/<key16>), None: kept nowhere

    def for_parent(self, seed: int | None = None) -> Cell:
        """The unpruned parent's own cell: its own timing and no trackers or checkpoints of this cell."""
        spec = self.spec if seed is None else dataclasses.replace(self.spec, seed=seed)
        return Cell(spec, self.registry, self.data, self.device, self.parents, timing=Timing("train_s", "eval_s"))
