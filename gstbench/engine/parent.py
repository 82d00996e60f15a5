"""The unpruned parent of a cell: trained from step 0 or loaded from the run directory's cache,
and its independent twin."""

from __future__ import annotations

import dataclasses
import random as pyrandom
import time
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from gstbench.store.cell_result import Curves
from gstbench.components import Evaluated
from gstbench.engine.loop import Hooks, Trainer, TrainingProgress, clone_state
from gstbench.engine.setup import independent_seed, place, seed_everything
from gstbench.engine.state import Cell, Timing

if TYPE_CHECKING:
    from gstbench.engine.pruner import Pruner


def train_parent(cell: Cell, trainer: Trainer, data_seed: int, keep: set[int], pruner: "Pruner | None" = None,
                 resumable: bool = False) -> tuple[Curves, dict[int, dict], bool]:
    """Plain training from step 0 (an unpruned run, round 0): from the parent cache when stored there.

    Returns the curves, the states kept at ``keep`` and whether they came from the cache. A
    scorer that watches training (activation statistics) needs the real run, so it skips the cache.
    ``resumable`` (an unpruned cell's own training) saves and resumes it with the cell's checkpoints.
    """
    spec, parents = cell.spec, cell.parents
    device = trainer.data.x_train.device
    cacheable = parents is not None and (pruner is None or not pruner.observes_training)
    if cacheable:
        entry = parents.load(spec, device, keep)
        if entry is not None:
            trainer.model.load_state_dict(entry["final"])
            trainer.forget_evaluation()
            trainer.skip(spec.train.epochs)
            return entry["curves"], entry["kept"], True
    torch.random.set_rng_state(trainer.start_rng)
    hooks = pruner.hooks() if pruner else Hooks()
    progress = TrainingProgress()
    if resumable and pruner is None and not keep:
        checkpoints = cell.checkpoints
        phase = checkpoints.phase("parent", device, trainer=trainer, progress=progress)

        def after_epoch(step: int, curves: Curves) -> None:
            if checkpoints.due(step // trainer.steps_per_epoch):
                progress.step, progress.curves = step, curves
                phase.save()

        hooks.after_epoch = after_epoch
    curves, kept = trainer.train(progress.step, data_seed, hooks=hooks, keep=keep, curves=progress.curves)
    if cacheable:
        parents.save(spec, device, curves, clone_state(trainer.model.state_dict()), kept)
    return curves, kept, False


def parent_model(cell: Cell, seed: int | None = None) -> nn.Module:
    """The unpruned parent of a cell that pruned during training (or, with ``seed``, its twin from that seed):
    loaded from the cache, or trained now; its time goes into the cell's ``parent_s``."""
    t0 = time.perf_counter()
    own = cell.for_parent(seed)
    data_seed, _ = seed_everything(own.spec.seed)
    torch.manual_seed(own.spec.seed)
    model = place(own.registry.build_model(own.spec.model, own.data), own.data.x_train.device)
    model.train()
    train_parent(own, Trainer(own, model), data_seed, set())
    cell.timing.seconds["parent_s"] = time.perf_counter() - t0
    return model


def independent_parent(cell: Cell) -> Callable[[], Evaluated]:
    """Builds, on first call, the unpruned network trained like the parent from ``independent_seed``.

    It comes from the parent cache when stored there (shared by every cell of the seed), and is
    trained with the RNG state saved and restored, so the cell's own numbers do not depend on it.
    """
    built: list[Evaluated] = []

    def get() -> Evaluated:
        if not built:
            states = pyrandom.getstate(), np.random.get_state()
            own = dataclasses.replace(cell, timing=Timing())  # its seconds are the cell's independent_parent_s
            device = cell.data.x_train.device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                built.append(Evaluated(parent_model(own, independent_seed(cell.spec.seed))))
            pyrandom.setstate(states[0])
            np.random.set_state(states[1])
            cell.timing.seconds["independent_parent_s"] = own.timing.seconds.get("parent_s", 0.0)
        return built[0]

    return get
