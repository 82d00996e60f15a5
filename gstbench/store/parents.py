"""Parent cache: the unpruned model trained once per (model, data, training, seed, device) and reused.

A parent is what round 0 of a prune-retrain cell trains, what an unpruned cell trains,
and what metrics that compare with the parent (excess error, functional distance) need.
All of them train it the same way (same seed, same data order), so the first to finish
stores it under ``<run dir>/parents/<key16>/`` and the others load it. Written
atomically; a killed run leaves no half entry. An entry also holds the training states
at the steps a rewind or a second copy asked for; a cell that needs another step trains
the parent again (same numbers) and adds it.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gstbench.store.cell_result import Curves
from gstbench.plan.config import CellSpec, digest, short_hash
from gstbench.errors import StoreWarning
from gstbench.store.store import atomic_torch_save, atomic_write_json, set_aside
from gstbench.names import inside

if TYPE_CHECKING:
    import torch

FORMAT = 1


def parent_key(spec: CellSpec, device: torch.device | str) -> str:
    """What identifies a cell's parent: its model, data, training and seed, on a kind of device (cpu, cuda)."""
    c = spec.canonical()
    ident = {k: c[k] for k in ("model", "dataset", "train", "seed")}
    ident.update(device=device if isinstance(device, str) else device.type, format=FORMAT)
    return digest(ident)


class ParentCache:
    """``root`` is where parents are stored; ``also`` are other runs' caches read when ``root`` has no entry
    (``gstbench run --reuse DIR``: a reused training's metrics compare with the parent stored with it)."""

    def __init__(self, root: Path | str, also: tuple[Path | str, ...] = ()):
        self.root = Path(root)
        self.also = tuple(Path(a) for a in also)

    def _dir(self, spec: CellSpec, device: torch.device, root: Path | None = None) -> Path:
        return (root or self.root) / short_hash(parent_key(spec, device))

    def load(self, spec: CellSpec, device: torch.device, steps: set[int]) -> dict[str, Any] | None:
        """The stored parent if it holds every state in ``steps``; None otherwise (or if unreadable)."""
        for root in (self.root, *self.also):
            entry = self._load(self._dir(spec, device, root), spec, device, steps)
            if entry is not None:
                return entry
        return None

    def _load(self, d: Path, spec: CellSpec, device: torch.device, steps: set[int]) -> dict[str, Any] | None:
        if not (d / "parent.json").exists() or not (d / "states.pt").exists():
            return None
        try:
            meta = json.loads((d / "parent.json").read_text())
            if meta["key"] != parent_key(spec, device) or not steps <= set(meta["steps"]):
                return None
            curves = Curves.from_json(meta["curves"])  # a ResultFormatError is a ValueError
            import torch  # here: planning (the cost estimate) keys parents without torch

            states = torch.load(d / "states.pt", map_location=device, weights_only=True)
            kept = {int(k): v for k, v in states["kept"].items()}
            final = states["final"]
        except FileNotFoundError:
            return None  # another process is replacing the entry
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError, EOFError,
                pickle.UnpicklingError) as exc:
            if d.parent == self.root:  # another run's cache (--reuse) is read, never changed
                self._set_aside(d, exc)
            return None
        if not steps <= set(kept):  # another process replaced the entry in between
            return None
        return {"curves": curves, "final": final, "kept": kept}

    @staticmethod
    def _set_aside(d: Path, exc: Exception) -> None:
        """An unreadable entry is moved aside (never deleted) and the parent trained again."""
        for name in ("parent.json", "states.pt"):
            try:
                target = set_aside(d / name)
            except FileNotFoundError:
                continue
            warnings.warn(f"parent cache entry {d / name} could not be read ({type(exc).__name__}: {exc}); moved it "
                          f"to {target.name} and training the parent again", StoreWarning, stacklevel=3)

    def save(self, spec: CellSpec, device: torch.device, curves: Curves, final: dict[str, torch.Tensor],
             kept: dict[int, dict]) -> None:
        d = inside(self.root, self._dir(spec, device), "the run directory's parent cache")
        atomic_torch_save(d / "states.pt", {"final": final, "kept": {str(k): v for k, v in kept.items()}})
        atomic_write_json(d / "parent.json", {"key": parent_key(spec, device), "steps": sorted(kept),
                                              "curves": curves.to_json(), "spec": {k: spec.canonical()[k] for k in
                                                                         ("model", "dataset", "train", "seed")}})
