"""A work order: what the run stage decided for one cell, the only thing the engine is told about its storage.

The run stage (run/orders.py) resolves each cell once: train it from its first step, go on
from the checkpoint a killed run left, or measure a training stored in this run directory or
a ``--reuse`` one. The engine executes the order and hands what it trained to the order's
``TrainingSink``; it never looks for stored trainings itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gstbench.plan.config import CellSpec
from gstbench.store.cell_result import CellResult, MetricValues, StoredTraining

TRAIN, RESUME, MEASURE = "train", "resume", "measure"


@dataclass(frozen=True, eq=False)  # compared and hashed as itself: an executor may key a dict by it
class WorkOrder:
    """One cell's order. ``cell_dir`` holds its checkpoint (None: no checkpoints); ``models`` is where the
    training's models go (None: kept nowhere); ``stored`` is the training a MEASURE order measures."""

    spec: CellSpec
    action: str
    cell_dir: Path | None = None
    models: Path | None = None
    stored: StoredTraining | None = None

    @property
    def hash(self) -> str:  # executors key their bookkeeping by it
        return self.spec.hash

    @property
    def seed(self) -> int:  # with ``hash``: what ``CellResult.failed`` needs of a cell whose worker died
        return self.spec.seed

    def describe(self) -> str:
        """One phrase: what the engine will do, and from where."""
        if self.action == MEASURE:
            return f"measure the training stored in {self.stored.directory}"
        if self.action == RESUME:
            return f"go on from the checkpoint in {self.cell_dir}"
        return "train from the first step"


class TrainingSink(Protocol):
    """Where a cell that trained puts its training's result, before its metrics run (run/orders.py)."""

    def store_training(self, spec: CellSpec, result: CellResult, own: MetricValues) -> None: ...
