"""gstbench's own test doubles for executors (not part of the plugin kit in gstbench.testing; may change).

The executor tests of gstbench and of its first-party executor plugins share them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
