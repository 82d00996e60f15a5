"""Runs a suite: skips finished cells by hash, maps the rest through an executor, stores each result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from gstbench.config import CellSpec
from gstbench.engine import run_cell
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


CellDone = Callable[[CellSpec, dict[str, Any]], None]


def run_suite(suite: Suite, out: Path | str, registry: Any, executor: str = "sequential", device: str = "cpu",
              retry_failed: bool = False, on_start: Callable[[list[CellSpec]], None] | None = None,
              on_cell_done: CellDone | None = None,
              on_epoch: Callable[[CellSpec, int, int], None] | None = None) -> RunSummary:
    """Run the missing cells of ``suite`` into ``out``; finished cells (by hash) are skipped."""
    store = Store(out)
    store.write_suite(suite.summary())
    pending = []
    for spec in suite.cells:
        done = store.load_result(spec)
        if done is None or (retry_failed and done.get("status") == "failed"):
            pending.append(spec)
    for spec in pending:  # spec.json first: a report can tell missing cells from absent ones
        store.begin(spec)
    if on_start is not None:
        on_start(pending)
    runner = registry.get("executors", executor).factory()
    parents = ParentCache(store.root / "parents")

    def one(spec: CellSpec) -> dict[str, Any]:
        progress = (lambda e, n: on_epoch(spec, e, n)) if on_epoch else None
        return run_cell(spec, registry, device=device, progress=progress, parents=parents)

    failed = 0
    for spec, result in runner.map(pending, one):
        store.finish(spec, result)
        failed += result["status"] != "ok"
        if on_cell_done is not None:
            on_cell_done(spec, result)
    return RunSummary(Path(out), len(suite.cells), len(suite.cells) - len(pending), len(pending), failed)
