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
        text = f"{where}: {message}" if where else message
        # one line whatever a suite file's keys or values hold (a key with a newline in it, written back)
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))


class StorageError(GstbenchError):
    """A result could not be written (a full disk, a directory gone read-only): the run stops, nothing is lost."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (Slurm's and Kubernetes' first word) stops a run the way Ctrl-C does."""


class GstbenchWarning(UserWarning):
    """A problem gstbench worked around (a plugin left out, a file moved aside); printed as one line."""


class StoreWarning(GstbenchWarning):
    """A stored file that could not be read and was counted, or moved aside, instead of stopping everything."""


class CellFailed(GstbenchError):
    """A cell stopped on purpose (e.g. a non-finite loss)."""


def closest(name: str, known: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(matches)}?)" if matches else ""


def install_warning_format() -> None:
    """gstbench's own warnings print as one line, ``warning: ...``, without Python's file and line."""
    import warnings

    default = warnings.formatwarning
    if getattr(default, "gstbench", False):
        return

    def one_line(message, category, filename, lineno, line=None):
        if issubclass(category, GstbenchWarning):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    one_line.gstbench = True
    warnings.formatwarning = one_line
