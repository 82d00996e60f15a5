"""Experiment trackers: the loggers a run sends each cell to, and the guard that keeps a failing one harmless.

A logger plugin (``register_loggers``) gives a factory ``factory(target: str | None)``; the
object it builds gets, in the process that trains the cell (pool and Ray workers too):

    start(run: LoggedRun)            once: the cell's names and its flattened config
    log(step, values)                every epoch (curves) and every pruning event
    finish(status, metrics, error)   once: the final metrics, or the error of a failed cell

A logger that raises (a server out of reach, a bug) is dropped for the rest of that cell
after one warning naming it: logging never fails or loses a cell.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstbench.errors import GstbenchWarning
from gstbench.plan.log_targets import LogTarget
from gstbench.store.cell_result import scalars
from gstbench.plugins import Registry


class LoggerWarning(GstbenchWarning):
    """A logger failed; the cell went on without it."""


@dataclass
class LoggedRun:
    """What a tracker names and groups a cell's run by."""

    name: str  # the cell's hash (its first 16 digits, as its directory is named)
    hash: str  # the full hash
    suite: str
    scale: str
    configuration: str  # the configuration's key: every seed of one configuration shares it (a group)
    label: str  # the configuration as the leaderboard prints it, e.g. "l1 largest mask 1ep"
    seed: int
    config: dict[str, Any]  # the canonical spec flattened: "train.lr" -> 0.1 (lists as JSON text)
    directory: Path  # the run directory (``--out``): where local trackers write by default

    @property
    def group(self) -> str:
        return f"{self.label} [{self.configuration[:8]}]"


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys; lists and None as JSON text (what trackers store as parameters)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    key = prefix[:-1]
    if isinstance(data, (bool, int, float, str)):
        return {key: data}
    return {key: json.dumps(data, sort_keys=True)}


def event_values(event: Any) -> dict[str, float]:
    """A pruning event as tracker scalars: t_pre, t_post, instability and each layer's counts."""
    values = {"prune/t_pre": event.t_pre, "prune/t_post": event.t_post, "prune/instability": event.instability,
              "prune/loss_pre": event.loss_pre, "prune/loss_post": event.loss_post}
    for name, layer in event.layers.items():
        values[f"prune/{name}/removed"] = float(layer.count)
        values[f"prune/{name}/remaining"] = float(layer.remaining)
    return values


@dataclass
class CellTracker:
    """The cell's loggers, each guarded: one that raises is warned about once and dropped for this cell."""

    loggers: list[tuple[str, Any]] = field(default_factory=list)  # (component id, logger)
    seconds: float = 0.0  # spent inside the loggers (benchmarks/logging_cost.py reports it)

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def _each(self, method: str, *args: Any) -> None:
        t0 = time.perf_counter()
        try:
            self._call(method, *args)
        finally:
            self.seconds += time.perf_counter() - t0

    def _call(self, method: str, *args: Any) -> None:
        for entry in list(self.loggers):
            name, logger = entry
            try:
                getattr(logger, method)(*args)
            except Exception as exc:
                self.loggers.remove(entry)
                warnings.warn(f"logger '{name}' failed in {method}: {type(exc).__name__}: {exc}; this cell goes on "
                              f"without it (its result is stored as usual)", LoggerWarning, stacklevel=3)

    def start(self, run: LoggedRun) -> None:
        self._each("start", run)

    def log(self, step: int, values: dict[str, float]) -> None:
        if self.loggers:
            self._each("log", step, {k: float(v) for k, v in values.items() if v is not None})

    def event(self, step: int, event: Any) -> None:
        if self.loggers:
            self.log(step, event_values(event))

    def finish(self, result: Any) -> None:
        self._each("finish", result.status, scalars(result.metrics or {}), result.error)


def build_tracker(registry: Registry, targets: list[LogTarget]) -> CellTracker:
    """Build each logger; one whose factory raises is warned about and left out (the cell still runs)."""
    tracker = CellTracker()
    for target in targets:
        comp = registry.get("loggers", target.name)
        try:
            tracker.loggers.append((comp.id, comp.factory(target.target)))
        except Exception as exc:
            warnings.warn(f"logger '{comp.id}' could not start: {type(exc).__name__}: {exc}; the cell runs without "
                          f"it", LoggerWarning, stacklevel=2)
    return tracker


def logged_run(spec: Any, suite: str, scale: str, directory: Path | str) -> LoggedRun:
    from gstbench.plan.config import config_key
    from gstbench.plan.selection import config_label

    canonical = spec.canonical()
    return LoggedRun(spec.short_hash, spec.hash, suite, scale, config_key(canonical), config_label(canonical),
                     spec.seed, flatten(canonical), Path(directory))
