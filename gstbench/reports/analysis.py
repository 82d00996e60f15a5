"""A run directory as pandas DataFrames for notebooks: ``gstbench.results(DIR)`` with .cells, .events, .curves.

Built on the one results reader (store/reader.py). Frames are built on first use and kept:

- ``cells``: one row per cell: ``hash``, ``directory`` (what ``load_model`` takes), ``configuration`` (its
  key), ``label``, ``status``,
  one column per axis of the suite and per other setting that differs between the cells (a
  component or an option, by its dotted key; as the leaderboard labels it), ``seed``, every numeric
  final metric (tables flattened as ``metric/key``), ``wall_s`` and ``error``;
- ``events``: one row per pruning event: the cell's ``hash``, ``configuration``, ``label``,
  axes and ``seed``, then ``index``, ``step``, ``epoch``, ``round``, ``t_pre``, ``t_post``,
  ``loss_pre``, ``loss_post``, ``instability`` and ``removed`` (units removed, all layers);
- ``curves``: long format, one row per cell, round, epoch and quantity: the cell's keys,
  ``round`` (None outside prune-retrain rounds), ``epoch``, ``step``, ``quantity`` (lr,
  train_loss, train_acc_running, test_acc, test_loss) and ``value``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from gstbench.errors import GstbenchError
from gstbench.store.reader import RunResults, load_results
from gstbench.plan.config import short_hash
from gstbench.plan.selection import config_label, label_at
from gstbench.store.cell_result import scalars

QUANTITIES = ("lr", "train_loss", "train_acc_running", "test_acc", "test_loss")


def _pandas():
    try:
        import pandas
    except ImportError:
        raise GstbenchError("gstbench.results needs pandas, which is an optional extra: "
                            "pip install 'gstbench[analysis]'") from None
    return pandas


class Results:
    """One run directory's cells, events and curves as DataFrames (``reader`` holds the typed results)."""

    def __init__(self, directory: Path | str):
        self._pd = _pandas()
        self.reader: RunResults = load_results(directory)
        self.directory = Path(directory)
        self._frames: dict[str, Any] = {}

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self._statuses().items())
        return f"<gstbench results of {self.directory}: {len(self.reader.cells)} cells ({counts})>"

    def _statuses(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for cell in self.reader.cells:
            out[cell.status] = out.get(cell.status, 0) + 1
        return out

    def _keys(self, cell) -> dict[str, Any]:
        """The columns that identify a cell in every frame: its axes, and every other setting that differs
        between the run's cells (a scorer that no axis names, the unpruned baseline's "-")."""
        return {"hash": cell.hash, "directory": str(self.directory / "cells" / short_hash(cell.hash)),
                "configuration": cell.spec.config_hash, "label": config_label(cell.spec),
                **{path: label_at(cell.spec, path) for path in self._differing}, "seed": cell.seed}

    @functools.cached_property
    def _differing(self) -> list[str]:
        return differing_settings([c.spec.canonical() for c in self.reader.cells], self.reader.axes)

    @property
    def cells(self):
        if "cells" not in self._frames:
            rows = []
            for cell in self.reader.cells:
                result = cell.result
                rows.append({**self._keys(cell), "status": cell.status,
                             **(scalars(result.metrics) if result is not None else {}),
                             "wall_s": result.wall_s if result is not None else None,
                             "error": (result.error if result is not None else cell.problem)})
            self._frames["cells"] = self._pd.DataFrame(rows)
        return self._frames["cells"]

    @property
    def events(self):
        if "events" not in self._frames:
            rows = []
            for cell in self.reader.cells:
                if cell.status != "ok":
                    continue
                for i, e in enumerate(cell.result.events):
                    rows.append({**self._keys(cell), "index": i, "step": e.step, "epoch": e.epoch, "round": e.round,
                                 "t_pre": e.t_pre, "t_post": e.t_post, "loss_pre": e.loss_pre,
                                 "loss_post": e.loss_post, "instability": e.instability,
                                 "removed": sum(layer.count for layer in e.layers.values())})
            self._frames["events"] = self._pd.DataFrame(rows, columns=None if rows else [
                "hash", "configuration", "label", "seed", "index", "step", "epoch", "round", "t_pre", "t_post",
                "loss_pre", "loss_post", "instability", "removed"])
        return self._frames["events"]

    @property
    def curves(self):
        if "curves" not in self._frames:
            rows = []
            for cell in self.reader.cells:
                if cell.status != "ok":
                    continue
                keys = self._keys(cell)
                runs = [(r.round, r.curves) for r in cell.result.rounds] or [(None, cell.result.curves)]
                for round_, curves in runs:
                    for i, (epoch, step) in enumerate(zip(curves.epoch, curves.step)):
                        for quantity in QUANTITIES:
                            value = getattr(curves, quantity)[i]
                            if value is not None:
                                rows.append({**keys, "round": round_, "epoch": epoch, "step": step,
                                             "quantity": quantity, "value": value})
            self._frames["curves"] = self._pd.DataFrame(rows)
        return self._frames["curves"]


def differing_settings(configs: list[dict[str, Any]], axes: list[str]) -> list[str]:
    """The axes, then every dotted setting (a component, or one of its options) whose value differs between the
    configurations, the seed aside."""
    unique = {repr(c): c for c in ({k: v for k, v in c.items() if k != "seed"} for c in configs)}.values()
    settings = [dict(_settings(c, "")) for c in unique]
    paths = list(dict.fromkeys(p for s in settings for p in s))
    tables = {q for p in paths for q in _prefixes(p)}  # a setting that holds others: its leaves are the columns
    differ = [p for p in paths if p not in tables and len({s.get(p) for s in settings}) > 1]
    return [*axes, *(p for p in differ if p not in axes and not any(p.startswith(a + ".") for a in axes))]


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _settings(node: Any, path: str) -> list[tuple[str, str]]:
    """(dotted path, value as text) of every setting under ``node``: a component as its id, then its options."""
    if isinstance(node, dict) and "id" in node:
        return [(path, node["id"]), *_settings(node.get("options", {}), path)]
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _settings(v, f"{path}.{k}" if path else k)]
    return [(path, repr(node))]


def results(directory: Path | str) -> Results:
    """The run directory ``directory`` (a ``gstbench run --out``) as DataFrames: ``.cells``, ``.events``, ``.curves``."""
    return Results(directory)
