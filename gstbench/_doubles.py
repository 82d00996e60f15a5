"""gstbench's own test doubles for executors (not part of the plugin kit in gstbench.testing; may change).

The executor tests of gstbench and of its first-party executor plugins share them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gstbench.store.cell_result import CellResult, Environment


@dataclass(frozen=True)
class StubCell:
    """A stand-in for a CellSpec in executor tests: what an executor and ``CellResult.failed`` read of a cell."""

    name: str
    seed: int = 0

    @property
    def hash(self) -> str:
        return self.name


@dataclass
class DyingWork:
    """Work for executor tests: cells named ``dies-once`` kill their worker process once (a marker file in
    ``marker_dir`` remembers), ``dies-always`` every time, ``raises`` raise; the others return an "ok" result with the worker's pid."""

    marker_dir: str
    device: str = "cpu"

    def __call__(self, cell: StubCell, device: str | None = None) -> CellResult:
        marker = Path(self.marker_dir) / cell.name
        if cell.name == "dies-always" or (cell.name == "dies-once" and not marker.exists()):
            marker.touch()
            os._exit(3)  # as a lost node, an out-of-memory kill or a segfault would
        if cell.name == "raises":
            raise ValueError("the cell's own bug")
        return CellResult("ok", cell.hash, cell.seed, 0.0, Environment.here(device or self.device),
                          metrics={"pid": os.getpid()})


@dataclass
class EpochsWork:
    """Work for executor tests: a cell sends ``epochs`` epochs to the driver's bar, one every ``every_s`` seconds,
    and returns the worker's pid and when the cell started and ended (wall clock)."""

    epochs: int = 20
    every_s: float = 0.02
    device: str = "cpu"
    on_epoch: Callable[[Any, int, int], None] | None = field(default=None, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "on_epoch": None}  # the bar stays in the driver

    def __call__(self, cell: StubCell, device: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> CellResult:
        started = time.time()
        for epoch in range(1, self.epochs + 1):
            time.sleep(self.every_s)
            if progress is not None:
                progress(epoch, self.epochs)
        return CellResult("ok", cell.hash, cell.seed, 0.0, Environment.here(device or self.device),
                          metrics={"pid": os.getpid(), "started": started, "ended": time.time()})
