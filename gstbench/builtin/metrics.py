"""Built-in end-of-cell metrics; the engine itself reports accuracy, stability, filters and parameters."""

from __future__ import annotations

from gstbench.plugins import hookimpl


@hookimpl
def register_metrics(register):
    """No built-in metric beyond the engine's own yet (flatness and OOD metrics register here)."""
