"""The one results reader: a run directory loaded once, its cells grouped by configuration.

Report, claims, compare, export and plots all read a run through ``load_results``; a
configuration is identified by ``config.config_key`` (the canonical spec without its seed),
the same key ``CellSpec.config_hash`` gives before the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstbench.cell_result import CellResult
from gstbench.config import config_key
from gstbench.store import Store


@dataclass
class StoredCell:
    """One cell directory: its canonical spec, its hash, and its result (None while missing)."""

    spec: dict[str, Any]
    hash: str
    result: CellResult | None

    @property
    def seed(self) -> int:
        return self.spec["seed"]

    @property
    def status(self) -> str:
        """``ok``, ``failed`` or ``missing``."""
        return "missing" if self.result is None else self.result.status


@dataclass
class Configuration:
    """The cells of one configuration (every seed), in the store's order."""

    key: str
    spec: dict[str, Any]  # the canonical spec of its last cell read (the seed aside, all are equal)
    cells: list[StoredCell] = field(default_factory=list)

    def with_status(self, status: str) -> list[StoredCell]:
        return [c for c in self.cells if c.status == status]


@dataclass
class RunResults:
    """A run directory as read once: its suite record, every cell, and the cells grouped by configuration."""

    directory: Path
    suite: dict[str, Any]
    cells: list[StoredCell]
    configurations: list[Configuration]

    @property
    def finished(self) -> list[tuple[dict[str, Any], CellResult]]:
        """(spec, result) of every cell that finished ok."""
        return [(c.spec, c.result) for c in self.cells if c.status == "ok"]

    @property
    def axes(self) -> list[str]:
        return list(self.suite.get("axes", {}))


def load_results(directory: Path | str) -> RunResults:
    """Read ``directory`` (a ``gstbench run --out``) once; raises GstbenchError naming it when it holds no run."""
    store = Store(directory)
    suite = store.read_suite()
    cells: list[StoredCell] = []
    by_key: dict[str, Configuration] = {}
    for stored, result in store.iter_cells():
        cell = StoredCell(stored["spec"], stored["hash"], result)
        cells.append(cell)
        key = config_key(cell.spec)
        config = by_key.setdefault(key, Configuration(key, cell.spec))
        config.spec = cell.spec
        config.cells.append(cell)
    return RunResults(Path(directory), suite, cells, list(by_key.values()))
