"""Result store: one directory per cell, written so that a killed run loses nothing.

Layout under the run directory::

    suite.json                the suite as resolved for this run
    cells/<hash16>/spec.json  canonical spec (written before training)
    cells/<hash16>/events.jsonl  one line per pruning event
    cells/<hash16>/result.json   written last and atomically: its presence means "done"

A cell counts as finished when result.json exists (status "ok" or "failed").
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from gstbench.cell_result import CellResult, ResultFormatError
from gstbench.config import CellSpec
from gstbench.errors import GstbenchError

HASH_DIGITS = 16


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, fsync, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def cell_dir(self, spec: CellSpec) -> Path:
        return self.root / "cells" / spec.hash[:HASH_DIGITS]

    def result_path(self, spec: CellSpec) -> Path:
        return self.cell_dir(spec) / "result.json"

    def load_result(self, spec: CellSpec) -> CellResult | None:
        return self._result(self.cell_dir(spec))

    def begin(self, spec: CellSpec) -> None:
        d = self.cell_dir(spec)
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        atomic_write_json(d / "spec.json", {"hash": spec.hash, "spec": spec.canonical()})

    def finish(self, spec: CellSpec, result: CellResult) -> None:
        d = self.cell_dir(spec)
        atomic_write_text(d / "events.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n"
                                                      for e in result.events_json()))
        atomic_write_json(d / "result.json", result.to_json())

    def write_suite(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.root / "suite.json", data)

    def read_suite(self) -> dict[str, Any]:
        path = self.root / "suite.json"
        if not path.exists():
            raise GstbenchError(f"{self.root} holds no gstbench run (no suite.json); "
                                f"pass the directory given to `gstbench run --out`")
        return self._read(path)

    def iter_cells(self) -> Iterator[tuple[dict[str, Any], CellResult | None]]:
        """(spec.json, its result or None) for every cell directory, rebuilt from disk."""
        for d in sorted((self.root / "cells").glob("*")):
            if not (d / "spec.json").exists():
                continue
            yield self._read(d / "spec.json"), self._result(d)

    def _result(self, d: Path) -> CellResult | None:
        """The cell directory's result.json with its events.jsonl; None while the cell is not finished."""
        path = d / "result.json"
        if not path.exists():
            return None
        data = self._read(path)
        events_path = d / "events.jsonl"
        try:
            lines = events_path.read_text().splitlines() if events_path.exists() else []
            events = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:
            raise GstbenchError(f"cannot read {events_path}: {exc}; delete that file's cell directory to recompute "
                                f"it") from None
        try:
            return CellResult.from_json(data, events)
        except ResultFormatError as exc:
            raise GstbenchError(f"{path} is not a gstbench result: {exc}; delete that file to recompute its "
                                f"cell") from None

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GstbenchError(f"cannot read {path}: {exc}; delete that file to recompute its cell") from None
