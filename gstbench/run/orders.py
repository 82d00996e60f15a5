"""Resolving cells into work orders: train, resume, or measure a stored training; and the sink that stores one.

``gstbench run`` (runner.py), its counts and ``gstbench measure`` (measure.py) all decide
through ``resolve``: a cell whose training is stored, here or in a ``--reuse`` directory,
with the models its metrics need, is measured; one whose cell directory holds a killed
run's checkpoint goes on from it; any other trains from its first step. Damaged trainings
are moved aside before anything resolves (``TrainingStore.damaged``, ``set_aside``), so a cut
model or record is never measured.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from gstbench.engine.order import MEASURE, RESUME, TRAIN, WorkOrder
from gstbench.errors import StoreWarning
from gstbench.plan.config import CellSpec
from gstbench.store.cell_result import CellResult, MetricValues
from gstbench.store.store import CHECKPOINT, cell_path
from gstbench.store.trainings import Trainings, training_result


@dataclass(frozen=True)
class Resolved:
    """An order and what the counts need: whether a training was stored but lacks the models (it retrains)."""

    order: WorkOrder
    retrains: bool = False


def resolve(spec: CellSpec, run_dir: Path | None, trainings: Trainings | None) -> Resolved:
    """The work order for ``spec`` in the run directory ``run_dir`` (None: no cell directories, so no
    checkpoints), looking for stored trainings in ``trainings`` (None: none are kept or read)."""
    stored = trainings.find(spec) if trainings is not None else None
    if stored is not None and stored.serves(spec):
        return Resolved(WorkOrder(spec, MEASURE, stored=stored))
    cell_dir = cell_path(run_dir, spec.hash) if run_dir is not None else None
    models = trainings.model_dir(spec) if trainings is not None and spec.train.save_model else None
    resuming = cell_dir is not None and spec.train.checkpoint_every > 0 and (cell_dir / CHECKPOINT).is_file()
    return Resolved(WorkOrder(spec, RESUME if resuming else TRAIN, cell_dir, models), retrains=stored is not None)


class StoredTrainings:
    """The sink a run gives the engine: a cell's training goes to the run directory's ``trainings/``, and a
    training measured from elsewhere is kept there too (``adopt``)."""

    def __init__(self, trainings: Trainings):
        self.trainings = trainings

    def store_training(self, spec: CellSpec, result: CellResult, own: MetricValues) -> None:
        """Write the training's result beside its models (result.json last: then it serves other cells). A
        write that fails (a full disk) costs only the reuse: the cell goes on, and its result is stored as ever."""
        store = self.trainings.target
        try:
            store.begin(spec.training_spec, clean=False)  # cells sharing a training may write it at once
            store.finish(spec.training_spec, training_result(result, spec, own=own))
        except OSError as exc:
            warnings.warn(f"could not store the training of cell {spec.short_hash} in "
                          f"{store.cell_dir(spec.training_spec)} ({exc.strerror or exc}); a metric added to it "
                          f"later trains it again", StoreWarning, stacklevel=2)

    def measured(self, order: WorkOrder) -> None:
        """After a MEASURE order: this run directory keeps the training it measured (another run's, or a cell's
        stored before trainings were kept)."""
        if order.action == MEASURE:
            self.trainings.adopt(order.stored, order.spec)


__all__ = ["MEASURE", "RESUME", "TRAIN", "Resolved", "StoredTrainings", "WorkOrder", "resolve"]
