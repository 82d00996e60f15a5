"""Where a run sends each cell's logs: ``--log NAME[:TARGET]`` and a suite's ``[logging]`` table, parsed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gstbench.errors import SpecError


@dataclass(frozen=True)
class LogTarget:
    """One ``--log NAME[:TARGET]``: a logger and where it writes (its default when None)."""

    name: str
    target: str | None = None

    @classmethod
    def parse(cls, text: str, ids: set[str] = frozenset()) -> "LogTarget":
        """``NAME[:TARGET]``; NAME may be a full id ``plugin:name`` when it is one of ``ids``."""
        parts = text.split(":")
        if len(parts) > 1 and f"{parts[0]}:{parts[1]}" in ids:
            parts = [f"{parts[0]}:{parts[1]}", *parts[2:]]
        name, target = parts[0].strip(), ":".join(parts[1:])
        if not name:
            raise SpecError(f"'{text}' names no logger; write NAME or NAME:TARGET (e.g. tensorboard, "
                            f"mlflow:sqlite:///runs.db)", key="--log")
        return cls(name, target or None)


def merge_targets(*groups: list[LogTarget]) -> list[LogTarget]:
    """Later groups win by name (``--log mlflow:URI`` replaces a suite's ``mlflow``), order kept."""
    merged: dict[str, LogTarget] = {}
    for group in groups:
        for target in group:
            merged[target.name] = target
    return list(merged.values())


def parse_logging_table(table: Any, source: str) -> list[LogTarget]:
    """A suite's ``[logging]``: ``name = true`` (its default target) or ``name = "target"``; false leaves it out."""
    if not isinstance(table, dict):
        raise SpecError(f"{table!r} is not a table of logger = true | \"target\"", source=source, key="logging")
    out = []
    for name, value in table.items():
        if value is True:
            out.append(LogTarget(name))
        elif isinstance(value, str) and value:
            out.append(LogTarget(name, value))
        elif value is not False:
            raise SpecError(f"{value!r} must be true, false or a target string", source=source, key=f"logging.{name}")
    return out
