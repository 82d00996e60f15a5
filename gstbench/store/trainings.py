"""Stored trainings: what a cell's metrics need afterwards, kept under the training's own key.

A cell's training does not depend on its metrics, so it is keyed by the cell's hash without
them (``CellSpec.training_hash``): cells that differ only in their metrics share one training,
and a metric added later is computed on the stored model instead of training again. Layout
under a run directory::

    trainings/<key16>/spec.json              the training's spec (the cell's, without metrics)
    trainings/<key16>/result.json            what training gave: curves, rounds, the engine's metrics
    trainings/<key16>/events.jsonl           (the result a cell without metrics stores; written last)
    trainings/<key16>/model.safetensors      the final model with its pruning state (engine/artifacts.py)
    trainings/<key16>/round-<r>.safetensors  each round's model, with prune-retrain rounds

A directory written before trainings were kept still serves: a finished cell's result.json
holds its training's numbers too (its metrics' values taken out), and its model is there when
it ran with ``train.save_model``. Such a cell without a model serves only cells without metrics.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gstbench.errors import StoreWarning
from gstbench.plan.config import CellSpec, stored_spec
from gstbench.store.cell_result import CellResult, StoredTraining
from gstbench.store.store import (MODEL, TRAININGS, Store, link_or_copy, model_damage, round_model, set_aside,
                                  training_path)

# The engine's own metrics (engine/cell.py) in results stored before trainings were kept: what training gave,
# told by name from the values of the cell's metrics.
ENGINE_METRICS = frozenset({
    "final_test_acc", "best_test_acc", "final_test_loss", "train_acc", "train_loss", "gap", "n_events",
    "mean_instability", "stability", "iterative_rate", "params", "params_nonzero", "sparsity",
    "best_test_acc_by_round", "sparsity_by_round", "lmc_barrier", "weight_distance", "lmc_barrier_by_round"})
ENGINE_PREFIXES = ("remaining_", "targeted_")  # Pruner.unit_counts: remaining_filters, targeted_weights, ...


class TrainingStore(Store):
    """A run directory's ``trainings/``: written like its cells (result.json last), keyed by training hash.

    Its ``cell_dir`` and the other Store methods take the training's spec (``spec.training_spec``).
    """

    def cell_dir(self, spec: CellSpec) -> Path:
        return training_path(self.root, spec.hash)

    def model_dir(self, spec: CellSpec) -> Path:
        """Where the cell ``spec``'s models go while it trains: its training's directory."""
        return self.cell_dir(spec.training_spec)

    def damaged(self) -> Iterator[Damage]:
        """Each stored training whose record cannot be read or whose model file is cut short."""
        trainings = self.root / TRAININGS
        for d in sorted(trainings.iterdir()) if trainings.is_dir() else ():
            if not d.is_dir() or d.name.startswith("."):
                continue
            files = self.read_dir(d)
            if files.problem is not None:
                yield Damage(d, files.bad_files, files.problem)
            for model in sorted(d.glob("*.safetensors")):
                why = model_damage(model)
                if why is not None:
                    yield Damage(d, (model,), f"{model.name}: {why}")

    def set_aside(self, damages: list[Damage]) -> None:
        """Move the damaged trainings' unreadable files aside (``<name>.corrupt-<UTC time>``), one warning
        each: their cells then train them again (or, without a model, measure nothing new on them)."""
        for damage in damages:
            for path in damage.files:
                try:
                    target = set_aside(path)
                except FileNotFoundError:
                    continue  # never written, or another run moved it first
                warnings.warn(f"{path} could not be read ({damage.why}); moved it to {target.name}: a cell that "
                              f"needs this training will train it again", StoreWarning, stacklevel=2)


@dataclass(frozen=True)
class Damage:
    """A stored training that cannot serve: its directory, the files at fault, and why."""

    directory: Path
    files: tuple[Path, ...]
    why: str


def training_result(result: CellResult, spec: CellSpec, own: dict | None = None) -> CellResult:
    """What ``result`` (an ok result of ``spec``) says of its training alone: without the metrics' values.

    ``own`` are the training's own numbers where the caller has them apart (the engine, before
    measuring); for a cell stored before trainings were kept, the metrics' values are told from
    the engine's numbers by name.
    """
    if own is not None:
        keep = dict(own)
    elif spec.prune is not None and spec.prune.rounds:
        measured = set((result.rounds[-1].metrics or {}) if result.rounds else ())
        keep = {k: v for k, v in result.metrics.items() if k not in measured and k != "metric_wall_s"}
    else:
        keep = {k: v for k, v in result.metrics.items() if k in ENGINE_METRICS or k.startswith(ENGINE_PREFIXES)}
    rounds = [dataclasses.replace(r, metrics=None) for r in result.rounds]
    timing = {k: v for k, v in result.timing.items() if k not in ("metrics_s", "independent_parent_s")}
    if spec.prune is not None and not spec.prune.rounds:
        timing.pop("parent_s", None)  # a pruned cell's parent is trained for its metrics only
    if "metrics_s" in result.timing:
        timing["metrics_s"] = 0.0
    return dataclasses.replace(result, hash=spec.training_hash, metrics=keep, rounds=rounds, timing=timing)


class Trainings:
    """Where a run looks for stored trainings: its own directory first (where it stores the trainings it
    does), then each ``--reuse`` directory."""

    def __init__(self, dirs: list[Path | str]):
        self.dirs = [Path(d) for d in dirs]
        self.target = TrainingStore(self.dirs[0])
        self._legacy: dict[Path, dict[str, Path]] = {}

    def model_dir(self, spec: CellSpec) -> Path:
        return self.target.model_dir(spec)

    def adopt(self, stored: StoredTraining, spec: CellSpec) -> None:
        """Keep a training found elsewhere (another run, or a cell stored before trainings were kept) in this
        run's ``trainings/`` too, so that this directory alone holds what its cells were measured on."""
        d = self.target.cell_dir(spec.training_spec)
        if stored.directory.resolve() == d.resolve():
            return
        try:
            d.mkdir(parents=True, exist_ok=True)
            for source in [stored.final_model, *(stored.round_models or [])]:
                if source is not None:  # hard links where the filesystem allows
                    link_or_copy(source, d / (MODEL if source == stored.final_model else source.name))
            self.target.begin(spec.training_spec, clean=False)
            self.target.finish(spec.training_spec, stored.result)
        except OSError as exc:  # a full disk: the cell's result is stored all the same
            warnings.warn(f"could not keep the training {stored.directory} in {self.target.root / TRAININGS} "
                          f"({exc.strerror or exc}); this directory's cell {spec.short_hash} still names it",
                          StoreWarning, stacklevel=2)

    def find(self, spec: CellSpec) -> StoredTraining | None:
        """The stored training of ``spec`` that serves it, else the first found (which does not), else None."""
        found = None
        for d in self.dirs:
            for candidate in self._candidates(d, spec):
                if candidate.serves(spec):
                    return candidate
                found = found or candidate
        return found

    def _candidates(self, run_dir: Path, spec: CellSpec) -> Iterator[StoredTraining]:
        """The training's entry in ``run_dir``, then a finished cell of the same training there (read lazily:
        the cells are indexed only when the entry does not serve)."""
        result = TrainingStore(run_dir).load_result(spec.training_spec)
        if result is not None and result.ok and result.hash == spec.training_hash:
            yield self._stored(training_path(run_dir, spec.training_hash), result, spec)
        cell = self._legacy_cells(run_dir).get(spec.training_hash)
        if cell is not None:
            files = Store(run_dir).read_dir(cell)
            if files.result is not None and files.result.ok and files.spec is not None:
                yield self._stored(cell, training_result(files.result, stored_spec(files.spec["spec"])), spec)

    @staticmethod
    def _stored(d: Path, result: CellResult, spec: CellSpec) -> StoredTraining:
        """What ``d`` holds; a model file cut short counts as absent (the run's own are set aside before)."""
        final = d / MODEL if _whole(d / MODEL) else None
        rounds = None
        if spec.prune is not None and spec.prune.rounds:
            paths = [d / round_model(r) for r in range(spec.prune.rounds + 1)]
            rounds = paths if all(_whole(p) for p in paths) else None
        return StoredTraining(d, result, final, rounds)

    def _legacy_cells(self, run_dir: Path) -> dict[str, Path]:
        """training hash -> a finished cell directory of ``run_dir``, one with a model where there is one (the
        cells' spec.json files are read once per directory; results only for the cell asked for)."""
        if run_dir not in self._legacy:
            index: dict[str, Path] = {}
            cells = run_dir / "cells"
            for d in sorted(cells.iterdir()) if cells.is_dir() else ():
                if not (d / "result.json").is_file():
                    continue
                try:
                    spec = stored_spec(json.loads((d / "spec.json").read_text())["spec"])
                except (OSError, KeyError, TypeError, ValueError, AttributeError):
                    continue  # unreadable, or a spec of another gstbench's making: not reusable
                current = index.get(spec.training_hash)
                if current is None or ((d / MODEL).is_file() and not (current / MODEL).is_file()):
                    index[spec.training_hash] = d
            self._legacy[run_dir] = index
        return self._legacy[run_dir]


def _whole(model: Path) -> bool:
    if not model.is_file():
        return False
    why = model_damage(model)
    if why is not None:
        warnings.warn(f"{model} is damaged ({why}); its cells train again instead of reading it", StoreWarning,
                      stacklevel=3)
    return why is None
