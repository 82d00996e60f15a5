"""Built-in executors: cells one after another in this process, or in a local pool of spawned processes."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from gstbench.engine import failed_result
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

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    _WORKER_DEVICE = devices[index % len(devices)]
    if _WORKER_DEVICE.startswith("cuda"):
        torch.cuda.set_device(torch.device(_WORKER_DEVICE))
    torch.set_num_threads(threads)


def _run_in_worker(work: Callable, cell: Any) -> dict:
    return work(cell, device=_WORKER_DEVICE)


def visible_devices(device: str) -> list[str]:
    """``cuda`` means every visible GPU (``cuda:0`` .. ``cuda:N-1``); any other device is used as given."""
    if device == "cuda":
        import torch

        return [f"cuda:{i}" for i in range(max(1, torch.cuda.device_count()))]
    return [device]


class PoolExecutor:
    """A local pool of spawned worker processes; a cell whose worker dies is run again (``retries`` times)."""

    def __init__(self, workers: int, retries: int):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self.workers, self.retries = workers, retries

    def map(self, cells: Iterable, work: Callable) -> Iterator[tuple]:
        import torch

        todo = list(cells)
        devices = visible_devices(work.device)
        # CPU workers share the cores; GPU workers need one thread each to feed their device.
        threads = max(1, torch.get_num_threads() // self.workers) if devices == ["cpu"] else 1
        deaths = {id(c): 0 for c in todo}
        context = multiprocessing.get_context("spawn")  # fork would copy CUDA state and torch's threads
        while todo:
            counter = context.Value("i", 0)
            with ProcessPoolExecutor(min(self.workers, len(todo)), mp_context=context, initializer=_init_worker,
                                     initargs=(counter, devices, threads)) as pool:
                futures = {pool.submit(_run_in_worker, work, cell): cell for cell in todo}
                todo = []
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        cell = futures[future]
                        try:
                            yield cell, future.result()
                        except BrokenProcessPool as exc:  # the worker died (killed, out of memory, segfault)
                            deaths[id(cell)] += 1
                            if deaths[id(cell)] > self.retries:
                                yield cell, failed_result(cell, f"worker process died {deaths[id(cell)]} times "
                                                                f"({exc or 'no message'})")
                            else:
                                todo.append(cell)


def pool(workers: int = os.cpu_count() or 1, retries: int = 2):
    """A local process pool (spawn), ``--workers N``; on GPUs, workers round-robin over the visible devices."""
    return PoolExecutor(int(workers), int(retries))


@hookimpl
def register_executors(register):
    register("sequential", sequential)
    register("pool", pool)
