"""Mid-cell checkpoints: what a killed cell needs to go on from its last saved epoch, with the same numbers.

Every ``train.checkpoint_every`` epochs a training run saves ``cells/<hash16>/checkpoint.pt``:
the trainer (model, optimizer, counters), the curves so far, every RNG state (torch, CUDA,
numpy, python), and the pruner (units, generator, components' own state) with the events
so far. It is written atomically and read with ``weights_only=True`` (tensors and plain
data only). A cell that finds one resumes there; the store removes it with the result.
On CPU, for the same torch build and thread count, the resumed result equals an
uninterrupted one bitwise.
"""

from __future__ import annotations

import random as pyrandom
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from gstbench.errors import StoreWarning
from gstbench.store.store import CHECKPOINT as NAME, atomic_torch_save, set_aside

if TYPE_CHECKING:
    from gstbench.engine.loop import Trainer
    from gstbench.engine.pruner import Pruner

FORMAT = 1


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.random.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached": float(cached)},
            "python": pyrandom.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.random.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, internal, gauss = state["python"]
    pyrandom.setstate((version, tuple(internal), gauss))


class Checkpoints:
    """One cell's checkpoint file: saved every ``every`` epochs of a training run (0: never)."""

    def __init__(self, directory: Path | str | None, cell_hash: str, every: int):
        self.path = Path(directory) / NAME if directory is not None and every > 0 else None
        self.cell_hash, self.every = cell_hash, every

    def due(self, epochs_done: int) -> bool:
        return self.path is not None and epochs_done % self.every == 0

    def save(self, phase: str, state: dict[str, Any]) -> None:
        atomic_torch_save(self.path, {"format": FORMAT, "hash": self.cell_hash, "phase": phase, "rng": rng_state(),
                                      **state})

    def load(self, phase: str, device: torch.device) -> dict[str, Any] | None:
        """The saved state of ``phase`` for this cell, or None; an unreadable file is moved aside with a warning."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
            if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("hash") != self.cell_hash:
                raise ValueError("not a checkpoint of this cell in this gstbench's format")
        except Exception as exc:  # torch.load raises many kinds on a damaged file
            target = set_aside(self.path)
            warnings.warn(f"checkpoint {self.path} could not be read ({type(exc).__name__}: {exc}); moved it to "
                          f"{target.name} and starting the cell from its first step", StoreWarning, stacklevel=2)
            return None
        return state if state["phase"] == phase else None

    def resume(self, phase: str, trainer: Trainer, pruner: Pruner | None = None,
               then: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any] | None:
        """Restore a killed run of ``phase`` from its checkpoint, or return None when there is none to go on from.

        The pruner first: it rebuilds the pruned shapes the weights are saved in. Then the
        trainer, then ``then(saved)`` for the phase's own state, and the RNGs last: anything
        rebuilt before them may draw from the RNGs the checkpoint saved.
        """
        saved = self.load(phase, trainer.data.x_train.device)
        if saved is None:
            return None
        if pruner is not None:
            pruner.load_state_dict(saved["pruner"])
        trainer.load_state_dict(saved["trainer"])
        if then is not None:
            then(saved)
        set_rng_state(saved["rng"])
        return saved
