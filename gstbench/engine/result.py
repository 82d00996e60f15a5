"""The stored form of a cell's outcome that executors also build: a failed cell's record, and the environment it ran in.

Executors import this (a worker that died never reached the engine), not the trainer.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from gstbench import __version__
from gstbench.config import CellSpec


def failed_result(spec: CellSpec, error: str, trace: str = "", device: str = "", wall_s: float = 0.0) -> dict:
    """The stored form of a cell that failed (its own exception, or its worker died)."""
    return {"status": "failed", "error": error, "traceback": trace, "events": [], "hash": spec.hash,
            "seed": spec.seed, "wall_s": round(wall_s, 3), "environment": environment(device)}


def environment(device: str) -> dict[str, Any]:
    """What a result was computed on: versions, device, host and torch's thread count."""
    return {"gstbench": __version__, "torch": torch.__version__, "device": device,
            "python": platform.python_version(), "host": platform.node(),
            # CPU numbers are bitwise reproducible for the same thread count (reduction order depends on it)
            "threads": torch.get_num_threads()}
