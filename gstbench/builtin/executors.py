"""Built-in executors: cells one after another in this process, a local pool of spawned processes, or auto
(the default: a pool with one worker per core when more than one cell is pending, else in-process)."""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from gstbench import stopping
from gstbench.store.cell_result import CellResult
from gstbench.store.store import exit_fd, pid_alive
from gstbench.errors import install_warning_format
from gstbench.plugins import hookimpl


class SequentialExecutor:
    def map(self, cells: Iterable, work: Callable) -> Iterator[tuple]:
        for cell in cells:
            yield cell, work(cell)


def sequential():
    """In-process, one cell after another (results stream to the store as each cell ends)."""
    return SequentialExecutor()


_WORKER_DEVICE: str | None = None
_PROGRESS: Any = None  # the queue this worker sends (cell hash, epochs done, epochs planned) to the driver
PROGRESS_POLL_S = 0.25  # how often the driver looks for workers' epochs while it waits for cells


# Workers start from a fork server that imported torch, torch-pruning, mnist1d and the engine once (seconds of
# CPU less per worker than a fresh interpreter); fork would copy the driver's CUDA state and torch's threads.
# Spawn where there is no fork server.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
WORKER_PRELOAD = ["torch", "torch._dynamo", "torch_pruning", "mnist1d.data", "gstbench.engine.cell"]
PARENT_POLL_S = 1.0  # how often a worker checks that its driver is still there (where it has no pidfd)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _init_worker(counter: Any, devices: list[str], threads: int, progress: Any = None,
                 driver: int | None = None) -> None:
    """Give this worker its device (round-robin over ``devices``, in start order), its CPU threads and
    the queue its cells' epochs go back to the driver by; tie its life to the ``driver`` process."""
    global _WORKER_DEVICE, _PROGRESS
    import atexit
    import gc

    import torch

    atexit.register(gc.freeze)  # as the CLI does: the exit's collections of torch's heap take over a second

    # The driver stops its workers (on Ctrl-C, SIGTERM or a storage error) with SIGTERM: a worker
    # exits at once and quietly; its cell's last checkpoint stays, and temp files are not results.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_now)
    if driver is not None:
        die_with(driver)
    install_warning_format()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _PROGRESS = progress
    _WORKER_DEVICE = devices[index % len(devices)]
    if _WORKER_DEVICE.startswith("cuda"):
        torch.cuda.set_device(torch.device(_WORKER_DEVICE))
    torch.set_num_threads(threads)


def _exit_now(signum, frame) -> None:
    os._exit(128 + signum)


def die_with(driver: int) -> None:
    """Exit when the ``driver`` process ends, however it ends (SIGKILL, the OOM killer, a closed session): a
    worker it left would wait on its pipes forever, holding its memory, and keep the pool's fork server alive.
    A thread waits for the driver's exit (a Linux pidfd: at once; elsewhere it looks every second); where the
    driver is the parent (spawn), the kernel also sends SIGTERM at its death (a parent-death signal)."""
    if sys.platform.startswith("linux") and os.getppid() == driver:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl (an unusual libc): the thread below suffices
            pass
    exited = exit_fd(driver)
    if not pid_alive(driver):  # the driver died before the watch began
        os._exit(128 + signal.SIGTERM)

    def watch() -> None:
        if exited is not None:
            select.select([exited], [], [])
        else:
            while pid_alive(driver):
                time.sleep(PARENT_POLL_S)
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="gstbench-driver-watch", daemon=True).start()


def _run_in_worker(work: Callable, cell: Any) -> Any:
    if _PROGRESS is None:
        return work(cell, device=_WORKER_DEVICE)
    return work(cell, device=_WORKER_DEVICE, progress=progress_sender(_PROGRESS.put, cell))


def progress_sender(put: Callable[[tuple], None], cell: Any) -> Callable[[int, int], None]:
    """``progress(done, planned)`` that sends (cell hash, done, planned) by ``put`` and never fails the cell."""
    def send(done: int, planned: int) -> None:
        try:
            put((cell.hash, done, planned))
        except Exception:  # the bar misses an epoch; the cell goes on
            pass
    return send


def drain_progress(queue: Any, work: Callable, cells: dict[str, Any]) -> None:
    """Pass each epoch the workers sent to the driver's ``work.on_epoch`` (the progress bar)."""
    import queue as queues

    on_epoch = getattr(work, "on_epoch", None)
    while True:
        try:
            cell_hash, done, planned = queue.get_nowait()
        except queues.Empty:
            return
        except Exception:  # a queue whose writer died mid-message: drop what is left of it
            return
        if on_epoch is not None and cell_hash in cells:
            on_epoch(cells[cell_hash], done, planned)


def visible_devices(device: str) -> list[str]:
    """``cuda`` means every visible GPU (``cuda:0`` .. ``cuda:N-1``); any other device is used as given."""
    if device == "cuda":
        import torch

        return [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]
    return [device]


class PoolExecutor:
    """A local pool of spawned worker processes.

    A worker that dies (killed, out of memory, segfault) breaks the whole pool, and the
    cells in flight cannot tell whose death it was. So those cells run again one at a time,
    each alone in a fresh process: there a death is the cell's own, and a cell that dies
    ``retries + 1`` times alone is stored as failed. The other cells go on in a new pool.
    """

    def __init__(self, workers: int, retries: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.workers, self.retries = workers, retries

    def map(self, cells: Iterable, work: Callable) -> Iterator[tuple]:
        """Cells are taken from ``cells`` as workers free up (the runner leases each one then)."""
        import torch

        queue = iter(cells)
        devices = visible_devices(work.device)
        # CPU workers share the cores; GPU workers need one thread each to feed their device.
        threads = max(1, torch.get_num_threads() // self.workers) if devices == ["cpu"] else 1
        suspects: list = []
        first = next(queue, None)
        while first is not None or suspects:
            if suspects:
                yield self._alone(suspects.pop(0), work, devices, threads)
            else:
                suspects = yield from self._pooled(itertools.chain([first], queue), work, devices, threads)
                first = next(queue, None)

    @contextlib.contextmanager
    def _executor(self, workers: int, devices: list[str], threads: int, work: Callable):
        """A pool and, when the driver shows progress, the queue its workers send their epochs by.

        Each pool has its own queue: a worker killed while writing to one leaves it unusable."""
        context = multiprocessing.get_context(START_METHOD)
        if START_METHOD == "forkserver":
            context.set_forkserver_preload(WORKER_PRELOAD)
        progress = context.Queue() if getattr(work, "on_epoch", None) is not None else None
        try:
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                     initargs=(context.Value("i", 0), devices, threads, progress,
                                               os.getpid())) as pool:
                yield pool, progress
        finally:
            if progress is not None:
                progress.close()
                progress.cancel_join_thread()  # epochs nobody reads any more must not hold up the exit

    @staticmethod
    def _wait(futures: Any, progress: Any, work: Callable, cells: dict[str, Any]) -> set:
        """The futures done, passing the workers' epochs to the progress bar while none is."""
        while True:
            stopping.check()  # a Ctrl-C that a finalizer swallowed stops here
            done, _ = wait(futures, timeout=PROGRESS_POLL_S, return_when=FIRST_COMPLETED)
            if progress is not None:
                drain_progress(progress, work, cells)
            if done:
                return done

    def _pooled(self, queue: Iterator, work: Callable, devices: list[str], threads: int):
        """Run ``queue`` (consumed as cells start), ``workers`` at a time; on a death, return the cells in flight."""
        with self._executor(self.workers, devices, threads, work) as (pool, progress):
            in_flight: dict = {}
            try:
                while True:
                    while len(in_flight) < self.workers:
                        cell = next(queue, None)
                        if cell is None:
                            break
                        in_flight[pool.submit(_run_in_worker, work, cell)] = cell
                    if not in_flight:
                        return []
                    done = self._wait(in_flight, progress, work, {c.hash: c for c in in_flight.values()})
                    for future in done:
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            return list(in_flight.values())
                        yield in_flight.pop(future), result
            except BaseException:  # interrupted, or the driver stopped (closed this generator): stop the workers
                _stop_workers(pool)
                raise

    def _alone(self, cell: Any, work: Callable, devices: list[str], threads: int) -> tuple:
        for _ in range(self.retries + 1):
            with self._executor(1, devices, threads, work) as (pool, progress):
                try:
                    future = pool.submit(_run_in_worker, work, cell)
                    self._wait([future], progress, work, {cell.hash: cell})
                    return cell, future.result()
                except BrokenProcessPool as exc:
                    error = exc
                except BaseException:
                    _stop_workers(pool)
                    raise
        return cell, CellResult.failed(cell, f"worker process died {self.retries + 1} times running this cell alone "
                                             f"({error or 'no message'})")


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM every worker (each stops like Ctrl-C) so that leaving the pool does not wait for their cells."""
    processes = list((pool._processes or {}).values())  # the pool has no public handle on its processes
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()


def usable_cores() -> int:
    """The CPU cores this process may run on (a Slurm allocation or taskset, not the whole machine)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def pool(workers: int = usable_cores(), retries: int = 2):
    """A local process pool (spawn), ``--workers N``; on GPUs, workers round-robin over the visible devices."""
    return PoolExecutor(int(workers), int(retries))


class AutoExecutor:
    """A pool when it pays, else in-process: it takes two cells before it decides, so a run with one
    pending (or leasable) cell starts no processes. Workers: ``workers``, else one per usable core
    divided by the cell's CPU threads (``work.threads``), or one per visible GPU on ``--device cuda``."""

    def __init__(self, workers: int | None, retries: int):
        self.workers, self.retries = workers, retries
        self.chosen = "auto: nothing to run"  # what map decided, for the run's summary

    def workers_for(self, work: Callable) -> int:
        if self.workers is not None:
            return self.workers
        device = str(getattr(work, "device", "cpu"))
        if device.startswith("cuda"):
            return len(visible_devices(device))
        return max(1, usable_cores() // max(1, getattr(work, "threads", None) or 1))

    def map(self, cells: Iterable, work: Callable) -> Iterator[tuple]:
        queue = iter(cells)
        first = next(queue, None)
        if first is None:
            return
        workers = self.workers_for(work)
        second = next(queue, None) if workers > 1 else None
        if second is None:
            self.chosen = "auto: sequential (in this process)"
            yield from SequentialExecutor().map(itertools.chain([first], queue), work)
        else:
            self.chosen = f"auto: pool of {workers} workers"
            yield from PoolExecutor(workers, self.retries).map(itertools.chain([first, second], queue), work)


def auto(workers: int | None = None, retries: int = 2):
    """The default: with more than one core (or GPU) and more than one pending cell, a pool; else sequential."""
    return AutoExecutor(None if workers is None else int(workers), int(retries))


@hookimpl
def register_executors(register):
    register("auto", auto)
    register("sequential", sequential)
    register("pool", pool)
