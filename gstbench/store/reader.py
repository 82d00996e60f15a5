"""The one results reader: a run directory loaded once, its cells grouped by configuration.

Report, claims, compare, export and plots all read a run through ``load_results``. Each
cell's spec comes back as the ``CellSpec`` the run wrote (its canonical form the stored one);
a configuration is identified by ``CellSpec.config_hash`` (the canonical spec without its
seed), the same key the run used.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstbench.store.cell_result import CellResult
from gstbench.plan.config import CellSpec, stored_spec
from gstbench.plan.selection import distinguishing_keys
from gstbench.errors import StoreWarning
from gstbench.store.store import CellFiles, Store, cell_path


@dataclass
class StoredCell:
    """One cell directory: its canonical spec, its hash, and its result (None while missing or corrupt)."""

    spec: CellSpec
    hash: str
    result: CellResult | None
    problem: str | None = None  # why it is corrupt: which file, and what is wrong with it

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def status(self) -> str:
        """``ok``, ``failed``, ``corrupt`` or ``missing``."""
        if self.problem is not None:
            return "corrupt"
        return "missing" if self.result is None else self.result.status


@dataclass
class Configuration:
    """The cells of one configuration (every seed), in the store's order."""

    key: str
    spec: CellSpec  # the spec of its last cell read (the seed aside, all are equal)
    cells: list[StoredCell] = field(default_factory=list)

    def with_status(self, status: str) -> list[StoredCell]:
        return [c for c in self.cells if c.status == status]


def keys_named_after(name: str, metrics: list[dict[str, Any]]) -> list[str]:
    """The numeric keys of ``metrics`` (each a run's) named after the metric component ``name``
    (``hessian-trace``: ``hessian_trace``, ``hessian_trace_by_round``), its standard errors left out."""
    stem = name.replace("-", "_")
    return sorted({key for values in metrics for key, value in values.items() if key.startswith(stem)
                   and isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith("_se")})


@dataclass
class RunResults:
    """A run directory as read once: its suite record, every cell, and the cells grouped by configuration."""

    directory: Path
    suite: dict[str, Any]
    cells: list[StoredCell]
    configurations: list[Configuration]
    unplaced: list[CellFiles] = field(default_factory=list)  # corrupt cells whose spec.json cannot be read

    @property
    def finished(self) -> list[tuple[CellSpec, CellResult]]:
        """(spec, result) of every cell that finished ok."""
        return [(c.spec, c.result) for c in self.cells if c.status == "ok"]

    @property
    def axes(self) -> list[str]:
        return list(self.suite.get("axes", {}))

    @functools.cached_property
    def distinguish(self) -> list[str]:
        """Keys no axis shows that tell configurations with the same label apart (plan/selection.py)."""
        return distinguishing_keys([c.spec for c in self.configurations], self.axes)

    @property
    def corrupt(self) -> list[tuple[str, str]]:
        """(cell directory, problem) of every corrupt cell, placed or not."""
        placed = [(str(cell_path(self.directory, c.hash)), c.problem) for c in self.cells
                  if c.problem is not None]
        return placed + [(str(c.directory), c.problem) for c in self.unplaced]

    def metric_keys(self, name: str) -> list[str]:
        """What ``--metric NAME`` means here: NAME itself where a finished run has that key, else every key of the
        metric component NAME (or its label, ``name(k=v)``): as ``gstbench measure`` recorded them, or, for a
        metric a run had from the start, its numeric keys named after it (``hessian-trace``: ``hessian_trace*``).
        A name that is neither comes back as it is (the caller refuses it, naming the keys there are)."""
        finished = self.finished
        if any(name in result.metrics for _, result in finished):
            return [name]
        keys = [key for _, result in finished for label, recorded in result.measured_later.items()
                if label == name or label.startswith(name + "(") for key in recorded if not key.endswith("_se")]
        if not keys and any(ref.label == name or ref.label.startswith(name + "(")
                            for spec, _ in finished for ref in spec.metrics):
            keys = keys_named_after(name, [result.metrics for _, result in finished])
        return list(dict.fromkeys(keys)) or [name]

    def warn_corrupt(self) -> None:
        """One warning per corrupt cell (reading commands count them and go on)."""
        for directory, problem in self.corrupt:
            warnings.warn(f"{directory}: {problem}; counted as corrupt (`gstbench run` moves the file aside and "
                          f"recomputes the cell)", StoreWarning, stacklevel=2)


def load_results(directory: Path | str, warn: bool = True) -> RunResults:
    """Read ``directory`` (a ``gstbench run --out``) once; raises GstbenchError naming it when it holds no run.

    Corrupt cells are counted, not fatal; ``warn`` names each on stderr.
    """
    store = Store(directory)
    suite = store.read_suite()
    cells: list[StoredCell] = []
    unplaced: list[CellFiles] = []
    by_key: dict[str, Configuration] = {}
    for files in store.iter_cells():
        if files.spec is None:
            if files.problem is not None:
                unplaced.append(files)
            continue  # a directory whose spec.json is not written yet
        try:
            spec = stored_spec(files.spec["spec"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a spec of another gstbench's making
            files.problem = files.problem or f"spec.json: not a cell spec this gstbench reads ({type(exc).__name__}: {exc})"
            unplaced.append(files)
            continue
        cell = StoredCell(spec, files.spec["hash"], files.result, files.problem)
        cells.append(cell)
        key = spec.config_hash
        config = by_key.setdefault(key, Configuration(key, cell.spec))
        config.spec = cell.spec
        config.cells.append(cell)
    results = RunResults(Path(directory), suite, cells, list(by_key.values()), unplaced)
    if warn:
        results.warn_corrupt()
    return results
