"""Errors a user can act on; the CLI prints their message without a traceback."""

from __future__ import annotations

import difflib
from typing import Iterable


class GstbenchError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class PluginError(GstbenchError):
    """A plugin failed to import or misbehaved inside a hook (raised in strict mode)."""


class UnknownComponent(GstbenchError):
    """A name that no loaded plugin registered."""


class SpecError(GstbenchError):
    """A bad suite file or cell config: names the file, the key and the value at fault."""

    def __init__(self, message: str, *, source: str | None = None, key: str | None = None):
        self.message = message
        self.source = source
        self.key = key
        where = ", ".join(p for p in (source and f"in {source}", key and f"at key '{key}'") if p)
        super().__init__(f"{where}: {message}" if where else message)


class CellFailed(GstbenchError):
    """A cell stopped on purpose (e.g. a non-finite loss)."""


def closest(name: str, known: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""
