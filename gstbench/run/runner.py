"""Runs a suite: skips finished cells by hash, maps the rest through an executor, stores each result.

Skip-by-hash, leases and storage stay here, in the driver, whatever the executor: an
executor only turns cells into results (in this process, a process pool, a Ray cluster),
so every executor resumes a killed run, and shares a directory with other runs, the same way.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from gstbench.components import DATA_DIR_ENV
from gstbench.store.cell_result import CellResult
from gstbench.plan.config import CellSpec
from gstbench.engine import run_cell
from gstbench.errors import GstbenchError, StorageError, closest
from gstbench.run.leases import DEFAULT_TIMEOUT_S, Leases
from gstbench.store.parents import ParentCache
from gstbench.store.store import Store, cell_path, remove_dead_temps
from gstbench.store.store import TRAININGS
from gstbench.store.trainings import Trainings, TrainingStore
from gstbench.run.orders import MEASURE, TRAINING_LEASES, StoredTrainings, WorkOrder, resolve, training_leased
from gstbench.plan.suite import Suite
from gstbench.engine.tracking import build_tracker, logged_run
from gstbench.plan.log_targets import LogTarget, merge_targets
from gstbench.plugins import Registry


@dataclass
class RunSummary:
    out: Path
    total: int
    skipped: int  # finished before this run (or by another run while it went)
    ran: int
    failed: int
    claimed_elsewhere: int = 0  # cells another live run holds the lease of (left to it)
    executor: str = ""  # what ran the cells (auto says what it chose)
    reused: int = 0  # cells to run whose training was stored: they computed their metrics only
    retrained: int = 0  # cells whose training was stored without the model(s) their metrics need


CellDone = Callable[[CellSpec, CellResult], None]


@dataclass
class CellWork:
    """How to run one cell's work order, anywhere: ``work(order, device=None) -> CellResult``.

    It pickles without the registry and the progress callback, so an executor can send it
    to another process or machine; there it loads the installed plugins (entry points), and
    the executor passes ``progress`` to send each epoch back to the driver, which calls
    ``on_epoch``. ``parents`` is the parent cache's directory and ``run_dir`` the run
    directory, whose cell directories hold the checkpoints (both shared only where workers
    see the same filesystem); ``data_dir`` the datasets' directory. ``loggers`` are built where the
    cell runs, and name its run after ``suite``, ``scale`` and the run directory ``run_dir``.
    ``threads`` is the cell's CPU thread count wherever it runs (None: leave the process's):
    numbers are bitwise equal for equal thread counts, whatever the executor.
    """

    device: str = "cpu"
    parents: str | None = None
    data_dir: str | None = None
    loggers: tuple[LogTarget, ...] = ()
    suite: str = ""
    scale: str = ""
    run_dir: str | None = None
    threads: int | None = None
    lease_run: str | None = None  # the run that leased the cells; a cluster job ends when its lease is not
    lease_timeout: float = DEFAULT_TIMEOUT_S  # this run's any more (leases.watch)
    reuse: tuple[str, ...] = ()  # other run directories whose stored trainings (and parents) cells may use
    registry: Registry = field(default=None, repr=False, compare=False)
    on_epoch: Callable[[CellSpec, int, int], None] | None = field(default=None, repr=False, compare=False)

    def cell_dir(self, cell: CellSpec | WorkOrder) -> Path | None:
        """The cell's directory, where its checkpoint goes (None without the run's cell directories)."""
        return cell_path(self.run_dir, cell.hash) if self.run_dir else None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "registry": None, "on_epoch": None}

    def __call__(self, order: WorkOrder, device: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> CellResult:
        """Execute ``order`` (run/orders.py). ``progress(epochs_done, epochs_planned)``: a worker's channel back
        to the driver's bar (the executor's); in the driver's own process ``on_epoch`` is called directly."""
        from gstbench.plugins import get_registry

        if self.data_dir:
            os.environ[DATA_DIR_ENV] = self.data_dir
        on_epoch = self.on_epoch
        if progress is None and on_epoch is not None:
            progress = lambda e, n: on_epoch(order, e, n)  # noqa: E731
        parents = (ParentCache(Path(self.parents), tuple(Path(d) / "parents" for d in self.reuse))
                   if self.parents else None)
        sink = StoredTrainings(Trainings([self.run_dir, *self.reuse])) if self.run_dir else None
        registry = self.registry or get_registry()
        tracker, logged = None, None
        if self.loggers:
            tracker = build_tracker(registry, list(self.loggers))
            logged = logged_run(order.spec, self.suite, self.scale, self.run_dir or ".")
        leased = training_leased(order, self.run_dir, self.reuse, self.lease_run, self.lease_timeout) \
            if self.run_dir else contextlib.nullcontext(order)
        with leased as order, cpu_threads(self.threads):
            result = run_cell(order, registry, device=device or self.device, progress=progress, parents=parents,
                              tracker=tracker, logged=logged, sink=sink)
        if sink is not None and result.ok:
            sink.measured(order)
        return result


@contextlib.contextmanager
def cpu_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op CPU threads set to ``threads`` for the block (None: unchanged), then restored."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_executor(registry: Registry, name: str, options: dict[str, Any] | None = None) -> Any:
    """The executor ``name`` built with ``options`` (e.g. workers, address); unknown options are refused."""
    comp = registry.get("executors", name)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    known = comp.option_defaults()
    for key in options:
        if known is not None and key not in known:
            flag = "--" + key.replace("_", "-") if key in RUN_FLAGS else f"--executor-option {key}=..."
            raise GstbenchError(f"executor '{comp.id}' has no option '{key}' ({flag}){closest(key, known)}; "
                                f"its options: {', '.join(known) or 'none'}")
    try:
        return comp.factory(**options)
    except (TypeError, ValueError) as exc:  # a value the factory refuses: one line naming the executor
        raise GstbenchError(f"executor '{comp.id}': {exc}") from None


RUN_FLAGS = ("workers", "address", "gpus_per_cell")  # executor options that `gstbench run` has flags for


@dataclass(frozen=True)
class RunOptions:
    """How ``run_suite`` runs: the executor (and its options), the device, each cell's CPU threads (None:
    the executor's choice), whether failed cells run again, the lease timeout, the trackers, and the
    ``--reuse`` directories whose stored trainings (and parents) cells may use."""

    executor: str = "auto"
    executor_options: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    threads: int | None = 1
    retry_failed: bool = False
    lease_timeout: float = DEFAULT_TIMEOUT_S
    loggers: tuple[LogTarget, ...] = ()
    reuse: tuple[Path | str, ...] = ()


@dataclass(frozen=True)
class RunCallbacks:
    """What the caller hears: ``on_start(pending, reused, retrained)`` once the cells are resolved,
    ``on_epoch(spec, done, planned)`` and ``on_cell_done(spec, result)``."""

    on_start: Callable[[list[CellSpec], int, int], None] | None = None
    on_epoch: Callable[[CellSpec, int, int], None] | None = None
    on_cell_done: CellDone | None = None


def run_suite(suite: Suite, out: Path | str, registry: Registry, options: RunOptions = RunOptions(),
              callbacks: RunCallbacks = RunCallbacks()) -> RunSummary:
    """Run the missing cells of ``suite`` into ``out``; finished cells (by hash) and cells that another
    run holds the lease of are skipped. Writes nothing when nothing is missing (read-only storage works).
    ``options.loggers`` (with the suite's ``[logging]``) receive every cell that runs (engine/tracking.py).
    Each cell trains on ``options.threads`` CPU threads, so that by default every executor, and every
    machine's core count, gives the same numbers. Each cell is resolved once into a work order
    (run/orders.py): one whose training is stored, in ``out`` or in a reuse directory, computes only its
    metrics."""
    reuse = [Path(d).resolve() for d in options.reuse]
    for d in reuse:
        check_reusable(d, Path(out))
    runner = build_executor(registry, options.executor, options.executor_options)
    loggers = merge_targets(suite.logging, list(options.loggers))
    for target in loggers:  # an unknown logger fails before any training
        registry.get("loggers", target.name)
    store = Store(out)

    def to_run(result: CellResult | None) -> bool:
        return result is None or (options.retry_failed and not result.ok)

    pending = _pending(suite, store, to_run)
    trainings = Trainings([store.root, *reuse])
    resolved = {spec.hash: resolve(spec, store.root, trainings) for spec in pending}
    reused = sum(r.order.action == MEASURE for r in resolved.values())
    retrained = sum(r.retrains for r in resolved.values())
    if callbacks.on_start is not None:
        callbacks.on_start(pending, reused, retrained)

    leases = Leases(options.lease_timeout)
    counts = {"elsewhere": 0, "meanwhile": 0, "ran": 0, "failed": 0}

    def leased() -> Iterator[WorkOrder]:  # lazily, as the executor asks for the next cell to start
        for spec in pending:
            taken = leases.take(store.cell_dir(spec), lambda spec=spec: not to_run(store.load_result(spec)))
            if taken == "taken":
                with _storing(store.root):
                    store.begin(spec)
                yield resolved[spec.hash].order
            else:
                counts["elsewhere" if taken == "elsewhere" else "meanwhile"] += 1

    on_epoch = callbacks.on_epoch
    work = CellWork(device=options.device, parents=str((store.root / "parents").resolve()),
                    data_dir=os.environ.get(DATA_DIR_ENV), loggers=tuple(loggers), suite=suite.name,
                    scale=suite.scale, run_dir=str(store.root.resolve()), threads=options.threads,
                    lease_run=leases.me["run"], lease_timeout=options.lease_timeout,
                    reuse=tuple(map(str, reuse)), registry=registry,
                    on_epoch=None if on_epoch is None else lambda order, e, n: on_epoch(order.spec, e, n))
    results = runner.map(leased(), work)
    try:
        for order, result in results:
            spec = order.spec
            with _storing(store.cell_dir(spec)):
                store.finish(spec, result)
            leases.drop(store.cell_dir(spec))
            counts["ran"] += 1
            counts["failed"] += not result.ok
            if callbacks.on_cell_done is not None:
                callbacks.on_cell_done(spec, result)
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()  # stops the executor's workers now, not after their cells
        leases.drop_all()
    if pending:  # a killed run's writer may still have been dying when the sweep at the start looked
        _sweep_dead_temps(store.root)
    return RunSummary(Path(out), len(suite.cells), len(suite.cells) - len(pending) + counts["meanwhile"],
                      counts["ran"], counts["failed"], counts["elsewhere"], getattr(runner, "chosen", options.executor),
                      reused, retrained)


def _pending(suite: Suite, store: Store, to_run: Callable[[CellResult | None], bool]) -> list[CellSpec]:
    """The cells to run, with the directory made ready for them: corrupt cells and damaged trainings set aside,
    what a killed process of this host half-wrote removed, suite.json and each pending cell's spec.json written.
    Nothing is written when nothing is missing (read-only storage works)."""
    summary = suite.summary()
    pending, corrupt = [], []
    for spec in suite.cells:
        files = store.read_cell(spec)
        if files.problem is not None:
            corrupt.append(files)
        if to_run(files.result):
            pending.append(spec)
    # even where every cell has finished since (its training, parent or training lease was being written when it died)
    _sweep_dead_temps(store.root)
    trainings_here = TrainingStore(store.root)
    damaged = list(trainings_here.damaged())
    if pending or not store.suite_is(summary) or damaged:
        store.check_writable()  # before any training: one line naming the directory
        with _storing(store.root):
            trainings_here.set_aside(damaged)
            for files in corrupt:
                store.set_aside(files)
            store.write_suite(summary)
            for spec in pending:  # spec.json first: a report can tell missing cells from absent ones
                store.begin(spec, clean=False)
    return pending


def _sweep_dead_temps(root: Path) -> None:
    """Remove the temp files that processes of this host, now gone, left in the shared stores."""
    for entry in [*(root / "parents").glob("*"), *(root / TRAININGS).glob("*"), *(root / TRAINING_LEASES).glob("*")]:
        remove_dead_temps(entry)


def check_reusable(directory: Path, out: Path) -> None:
    """A ``--reuse`` directory must be another run directory: one line naming it and the fix otherwise."""
    if not (directory / "suite.json").is_file():
        raise GstbenchError(f"--reuse {directory}: not a gstbench run directory (no suite.json); pass a directory "
                            f"given to `gstbench run --out`")
    if directory == out.resolve():
        raise GstbenchError(f"--reuse {directory} is the run directory itself (--out), whose trainings every run "
                            f"uses already; drop --reuse or pass another run's directory")


@contextlib.contextmanager
def _storing(where: Path) -> Iterator[None]:
    """An OSError while storing (a full disk, storage gone read-only) stops the run in one line."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"cannot write to {where}: {exc.strerror or exc}; free space or make it writable, then "
                           f"run the same command again (every stored result is kept)") from None
