"""Mid-cell checkpoints: what a killed cell needs to go on from its last saved epoch, with the same numbers.

One payload, whatever the phase: each phase of a cell (``parent``: an unpruned cell's own
training; ``schedule``: pruning during training; ``rounds``: prune-retrain rounds) registers
its stateful parts, each anything with ``state_dict()`` and ``load_state_dict(state)`` (the
pruner, the trainer, the phase's own progress), and ``Checkpoints`` saves them under their
names with every RNG state (torch, CUDA, numpy, python), knowing nothing of their classes.
Every ``train.checkpoint_every`` epochs (or round) it writes ``cells/<hash16>/checkpoint.pt``
atomically; it is read with ``weights_only=True`` (tensors and plain data only). Resuming
loads the parts in the order they were registered, the RNGs last (anything rebuilt before
them may draw from the RNGs the checkpoint saved). A checkpoint of another cell, another
phase or an older format is moved aside in one line and the cell starts from its first step;
the store removes the checkpoint with the result. On CPU, for the same torch build and
thread count, the resumed result equals an uninterrupted one bitwise.
"""

from __future__ import annotations

import random as pyrandom
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gstbench.errors import StoreWarning
from gstbench.store.store import CHECKPOINT as NAME, atomic_torch_save, set_aside

FORMAT = 2  # 1: one dictionary per phase, before parts were registered (refused: the cell starts over)


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


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class Checkpoints:
    """One cell's checkpoint file: saved every ``every`` epochs of a training run (0: never)."""

    def __init__(self, directory: Path | str | None, cell_hash: str, every: int):
        self.path = Path(directory) / NAME if directory is not None and every > 0 else None
        self.cell_hash, self.every = cell_hash, every

    def due(self, epochs_done: int) -> bool:
        return self.path is not None and epochs_done % self.every == 0

    def phase(self, name: str, device: torch.device, **parts: Stateful) -> "Phase":
        """The phase ``name`` with its stateful ``parts`` registered in restore order, resumed from the checkpoint
        when one of this phase is there (``Phase.resumed``)."""
        phase = Phase(self, name, parts)
        saved = self._load(name, device, set(parts))
        if saved is not None:
            for key, part in parts.items():
                part.load_state_dict(saved["parts"][key])
            set_rng_state(saved["rng"])
            phase.resumed = True
        return phase

    def _load(self, phase: str, device: torch.device, parts: set[str]) -> dict[str, Any] | None:
        """The saved state of ``phase`` for this cell, or None; an unreadable file is moved aside with a warning."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location=device, weights_only=True)
            if not isinstance(state, dict) or state.get("hash") != self.cell_hash:
                raise ValueError("not a checkpoint of this cell")
            if state.get("format") != FORMAT:
                raise ValueError(f"written in checkpoint format {state.get('format')}, this gstbench reads {FORMAT}")
            if state["phase"] == phase and set(state["parts"]) != parts:
                raise ValueError(f"its parts are {sorted(state['parts'])}, the {phase} phase has {sorted(parts)}")
        except Exception as exc:  # torch.load raises many kinds on a damaged file
            target = set_aside(self.path)
            warnings.warn(f"checkpoint {self.path} could not be used ({type(exc).__name__}: {exc}); moved it to "
                          f"{target.name} and starting the cell from its first step", StoreWarning, stacklevel=3)
            return None
        return state if state["phase"] == phase else None


class Phase:
    """A phase's registered parts: ``save`` writes them all, with the RNGs, as the cell's one checkpoint."""

    def __init__(self, checkpoints: Checkpoints, name: str, parts: dict[str, Stateful]):
        self.checkpoints, self.name, self.parts = checkpoints, name, parts
        self.resumed = False

    @property
    def saving(self) -> bool:
        return self.checkpoints.path is not None

    def save(self) -> None:
        atomic_torch_save(self.checkpoints.path, {
            "format": FORMAT, "hash": self.checkpoints.cell_hash, "phase": self.name,
            "parts": {key: part.state_dict() for key, part in self.parts.items()}, "rng": rng_state()})
