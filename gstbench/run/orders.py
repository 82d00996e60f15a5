"""Resolving cells into work orders: train, resume, or measure a stored training; and the sink that stores one.

``gstbench run`` (runner.py), its counts and ``gstbench measure`` (measure.py) all decide
through ``resolve``: a cell whose training is stored, here or in a ``--reuse`` directory,
with the models its metrics need, is measured; one whose cell directory holds a killed
run's checkpoint goes on from it; any other trains from its first step. Damaged trainings
are moved aside before anything resolves (``TrainingStore.damaged``, ``set_aside``), so a cut
model or record is never measured.

A cell about to train takes its training's lease first (``training_leased``), so runs that share a
training, into one directory or through ``--reuse``, and cells of one run that share one, train it once:
the others wait, then measure what it stored (or train it, if its holder died).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gstbench.engine.order import MEASURE, RESUME, TRAIN, WorkOrder
from gstbench.errors import StoreWarning
from gstbench.plan.config import CellSpec, short_hash
from gstbench.run.leases import Leases
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


TRAINING_LEASES = "training-leases"  # <run dir>/training-leases/<key16>/lease.json while a run trains it
WAIT_POLL_S = 1.0  # how often a cell waiting for another's training looks again


def training_lease_dir(run_dir: Path | str, spec: CellSpec) -> Path:
    return Path(run_dir) / TRAINING_LEASES / short_hash(spec.training_hash)


@contextlib.contextmanager
def training_leased(order: WorkOrder, run_dir: Path | str, reuse: tuple[Path | str, ...], run_id: str | None,
                    timeout_s: float, poll_s: float = WAIT_POLL_S) -> Iterator[WorkOrder]:
    """The order to execute, its training leased while it runs: a MEASURE order as it is; a cell that would
    train waits while another process holds its training's live lease (in this run directory or a reuse one),
    then measures the training stored meanwhile, or takes the lease and trains. A holder that died frees the
    lease at once on this host, after ``timeout_s`` without heartbeat elsewhere (run/leases.py)."""
    if order.action == MEASURE:
        yield order
        return
    spec, dirs = order.spec, [Path(run_dir), *map(Path, reuse)]
    leases = Leases(timeout_s)
    if run_id:
        leases.me["run"] = run_id
    def stored() -> WorkOrder | None:
        again = resolve(spec, Path(run_dir), Trainings(dirs)).order
        return again if again.action == MEASURE else None

    try:
        while True:
            if (measured := stored()) is not None:
                break
            if not any(leases.holder(training_lease_dir(d, spec)) for d in dirs[1:]):
                taken = leases.take(training_lease_dir(run_dir, spec), lambda: stored() is not None)
                if taken == "taken":
                    measured = None
                    break
                if taken == "finished":
                    continue
            time.sleep(poll_s)
    except BaseException:
        leases.drop_all()
        raise
    try:
        yield order if measured is None else measured
    finally:
        leases.drop_all()


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


__all__ = ["MEASURE", "RESUME", "TRAIN", "Resolved", "StoredTrainings", "WorkOrder", "resolve", "training_leased"]
