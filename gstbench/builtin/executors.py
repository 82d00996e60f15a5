"""Built-in executors: cells one after another in this process, or in a local pool of spawned processes."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from gstbench.cell_result import CellResult
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


def _init_worker(counter: Any, devices: list[str], threads: int) -> None:
    """Give this worker its device (round-robin over ``devices``, in start order) and its CPU threads."""
    global _WORKER_DEVICE
    import torch

    # The driver stops its workers (on Ctrl-C, SIGTERM or a storage error) with SIGTERM: a worker
    # exits at once and quietly; its cell's last checkpoint stays, and temp files are not results.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_now)
    install_warning_format()
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _WORKER_DEVICE = devices[index % len(devices)]
    if _WORKER_DEVICE.startswith("cuda"):
        torch.cuda.set_device(torch.device(_WORKER_DEVICE))
    torch.set_num_threads(threads)


def _exit_now(signum, frame) -> None:
    os._exit(128 + signum)


def _run_in_worker(work: Callable, cell: Any) -> Any:
    return work(cell, device=_WORKER_DEVICE)


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

    def _executor(self, workers: int, devices: list[str], threads: int) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # fork would copy CUDA state and torch's threads
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                   initargs=(context.Value("i", 0), devices, threads))

    def _pooled(self, queue: Iterator, work: Callable, devices: list[str], threads: int):
        """Run ``queue`` (consumed as cells start), ``workers`` at a time; on a death, return the cells in flight."""
        with self._executor(self.workers, devices, threads) as pool:
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
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
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
            with self._executor(1, devices, threads) as pool:
                try:
                    return cell, pool.submit(_run_in_worker, work, cell).result()
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


def pool(workers: int = os.cpu_count() or 1, retries: int = 2):
    """A local process pool (spawn), ``--workers N``; on GPUs, workers round-robin over the visible devices."""
    return PoolExecutor(int(workers), int(retries))


@hookimpl
def register_executors(register):
    register("sequential", sequential)
    register("pool", pool)
