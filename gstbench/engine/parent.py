"""The unpruned parent of a cell: trained from step 0 or loaded from the run directory's cache,
and its independent twin."""

from __future__ import annotations

import dataclasses
import random as pyrandom
import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from gstbench.cell_result import Curves
from gstbench.components import Evaluated, TensorData
from gstbench.config import CellSpec
from gstbench.engine.checkpoint import Checkpoints, set_rng_state
from gstbench.engine.loop import Hooks, Trainer, clone_state
from gstbench.engine.setup import build_model, independent_seed, place, seed_everything
from gstbench.parents import ParentCache

if TYPE_CHECKING:
    from gstbench.engine.pruner import Pruner


def train_parent(spec: CellSpec, trainer: Trainer, data_seed: int, parents: ParentCache | None,
                 keep: set[int], pruner: "Pruner | None" = None,
                 checkpoints: "Checkpoints | None" = None) -> tuple[Curves, dict[int, dict], bool]:
    """Plain training from step 0 (an unpruned run, round 0): from the parent cache when stored there.

    Returns the curves, the states kept at ``keep`` and whether they came from the cache. A
    scorer that watches training (activation statistics) needs the real run, so it skips the cache.
    ``checkpoints`` (an unpruned cell's) saves and resumes the training on its way.
    """
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
    start, curves = 0, None
    if checkpoints is not None and pruner is None and not keep:
        saved = checkpoints.load("parent", trainer.data.x_train.device)
        if saved is not None:
            trainer.load_state_dict(saved["trainer"])
            start, curves = saved["step"], Curves.from_json(saved["curves"])
            set_rng_state(saved["rng"])

        def after_epoch(step: int, curves: Curves) -> None:
            if checkpoints.due(step // trainer.steps_per_epoch):
                checkpoints.save("parent", {"step": step, "trainer": trainer.state_dict(), "curves": curves.to_json()})

        hooks.after_epoch = after_epoch
    curves, kept = trainer.train(start, data_seed, hooks=hooks, keep=keep, curves=curves)
    if cacheable:
        parents.save(spec, device, curves, clone_state(trainer.model.state_dict()), kept)
    return curves, kept, False


def parent_model(spec: CellSpec, registry: Any, data: TensorData, parents: ParentCache | None,
                 timing: dict[str, float]) -> nn.Module:
    """The unpruned parent of a cell that pruned during training: loaded from the cache, or trained now."""
    t0 = time.perf_counter()
    data_seed, _ = seed_everything(spec.seed)
    torch.manual_seed(spec.seed)
    model = place(build_model(registry, spec, data), data.x_train.device)
    model.train()
    trainer = Trainer(spec, data, model, {"train_s": 0.0, "eval_s": 0.0}, None, spec.train.epochs)
    train_parent(spec, trainer, data_seed, parents, set())
    timing["parent_s"] = time.perf_counter() - t0
    return model


def independent_parent(spec: CellSpec, registry: Any, data: TensorData, parents: ParentCache | None,
                       timing: dict[str, float]) -> Callable[[], Evaluated]:
    """Builds, on first call, the unpruned network trained like the parent from ``independent_seed``.

    It comes from the parent cache when stored there (shared by every cell of the seed), and is
    trained with the RNG state saved and restored, so the cell's own numbers do not depend on it.
    """
    built: list[Evaluated] = []

    def get() -> Evaluated:
        if not built:
            twin = dataclasses.replace(spec, seed=independent_seed(spec.seed))
            states = pyrandom.getstate(), np.random.get_state()
            own: dict[str, float] = {}
            device = data.x_train.device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                built.append(Evaluated(parent_model(twin, registry, data, parents, own)))
            pyrandom.setstate(states[0])
            np.random.set_state(states[1])
            timing["independent_parent_s"] = own.get("parent_s", 0.0)
        return built[0]

    return get
