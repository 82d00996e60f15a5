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

    def load_result(self, spec: CellSpec) -> dict[str, Any] | None:
        path = self.result_path(spec)
        if not path.exists():
            return None
        return self._read(path)

    def begin(self, spec: CellSpec) -> None:
        d = self.cell_dir(spec)
        d.mkdir(parents=True, exist_ok=True)
        for stale in d.glob(".*.tmp"):  # left by a run killed mid-write
            stale.unlink(missing_ok=True)
        atomic_write_json(d / "spec.json", {"hash": spec.hash, "spec": spec.canonical()})

    def finish(self, spec: CellSpec, result: dict[str, Any]) -> None:
        d = self.cell_dir(spec)
        events = result.get("events", [])  # one line each in events.jsonl, not in result.json
        atomic_write_text(d / "events.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in events))
        atomic_write_json(d / "result.json", {k: v for k, v in result.items() if k != "events"})

    def write_suite(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.root / "suite.json", data)

    def read_suite(self) -> dict[str, Any]:
        path = self.root / "suite.json"
        if not path.exists():
            raise GstbenchError(f"{self.root} holds no gstbench run (no suite.json); "
                                f"pass the directory given to `gstbench run --out`")
        return self._read(path)

    def iter_cells(self) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """(spec.json, result.json or None) for every cell directory, rebuilt from disk."""
        for d in sorted((self.root / "cells").glob("*")):
            if not (d / "spec.json").exists():
                continue
            spec = self._read(d / "spec.json")
            result = self._read(d / "result.json") if (d / "result.json").exists() else None
            if result is not None and (d / "events.jsonl").exists():
                result["events"] = [json.loads(line) for line in (d / "events.jsonl").read_text().splitlines()
                                    if line.strip()]
            yield spec, result

    @staticmethod
    def _read(path: Path) -> Any:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GstbenchError(f"cannot read {path}: {exc}; delete that file to recompute its cell") from None
