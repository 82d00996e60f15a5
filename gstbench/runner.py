"""Runs a suite: skips finished cells by hash, maps the rest through an executor, stores each result.

Skip-by-hash and storage stay here, in the driver, whatever the executor: an executor only
turns cells into results (in this process, a process pool, a Ray cluster), so every
executor resumes a killed run the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gstbench.components import DATA_DIR_ENV
from gstbench.cell_result import CellResult
from gstbench.config import CellSpec
from gstbench.engine import run_cell
from gstbench.errors import GstbenchError, closest
from gstbench.parents import ParentCache
from gstbench.store import Store
from gstbench.suite import Suite


@dataclass
class RunSummary:
    out: Path
    total: int
    skipped: int
    ran: int
    failed: int


CellDone = Callable[[CellSpec, CellResult], None]


@dataclass
class CellWork:
    """How to run one cell, anywhere: ``work(spec, device=None) -> CellResult``.

    It pickles without the registry and the progress callback, so an executor can send it
    to another process or machine; there it loads the installed plugins (entry points) and
    reports no per-epoch progress. ``parents`` is the parent cache's directory (shared only
    where workers see the same filesystem); ``data_dir`` the datasets' directory.
    """

    device: str = "cpu"
    parents: str | None = None
    data_dir: str | None = None
    registry: Any = field(default=None, repr=False, compare=False)
    on_epoch: Callable[[CellSpec, int, int], None] | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "registry": None, "on_epoch": None}

    def __call__(self, spec: CellSpec, device: str | None = None) -> CellResult:
        from gstbench.plugins import get_registry

        if self.data_dir:
            os.environ[DATA_DIR_ENV] = self.data_dir
        on_epoch = self.on_epoch
        progress = (lambda e, n: on_epoch(spec, e, n)) if on_epoch else None
        parents = ParentCache(Path(self.parents)) if self.parents else None
        return run_cell(spec, self.registry or get_registry(), device=device or self.device, progress=progress,
                        parents=parents)


def build_executor(registry: Any, name: str, options: dict[str, Any] | None = None) -> Any:
    """The executor ``name`` built with ``options`` (e.g. workers, address); unknown options are refused."""
    comp = registry.get("executors", name)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    known = comp.option_defaults()
    for key in options:
        if known is not None and key not in known:
            flag = "--" + key.replace("_", "-")
            raise GstbenchError(f"executor '{comp.id}' has no option '{key}' ({flag}){closest(key, known)}; "
                                f"its options: {', '.join(known) or 'none'}")
    return comp.factory(**options)


def run_suite(suite: Suite, out: Path | str, registry: Any, executor: str = "sequential", device: str = "cpu",
              retry_failed: bool = False, on_start: Callable[[list[CellSpec]], None] | None = None,
              on_cell_done: CellDone | None = None,
              on_epoch: Callable[[CellSpec, int, int], None] | None = None,
              executor_options: dict[str, Any] | None = None) -> RunSummary:
    """Run the missing cells of ``suite`` into ``out``; finished cells (by hash) are skipped."""
    runner = build_executor(registry, executor, executor_options)
    store = Store(out)
    store.write_suite(suite.summary())
    pending = []
    for spec in suite.cells:
        done = store.load_result(spec)
        if done is None or (retry_failed and done.status == "failed"):
            pending.append(spec)
    for spec in pending:  # spec.json first: a report can tell missing cells from absent ones
        store.begin(spec)
    if on_start is not None:
        on_start(pending)
    work = CellWork(device, str((store.root / "parents").resolve()), os.environ.get(DATA_DIR_ENV), registry, on_epoch)
    failed = 0
    for spec, result in runner.map(pending, work):
        store.finish(spec, result)
        failed += not result.ok
        if on_cell_done is not None:
            on_cell_done(spec, result)
    return RunSummary(Path(out), len(suite.cells), len(suite.cells) - len(pending), len(pending), failed)
