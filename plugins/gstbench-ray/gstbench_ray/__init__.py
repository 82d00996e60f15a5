"""gstbench-ray: an executor that runs cells as Ray tasks, on a cluster or a local Ray instance.

The driver (``gstbench run``) keeps skip-by-hash and storage; Ray only turns cells into
results. A task whose worker process or node dies is retried by Ray (``max_retries``);
a cell's own exception is already a stored "failed" result and is not retried.
A killed driver takes its tasks with it: a local Ray instance shares its driver's fate
(its raylet, GCS and task workers exit at once, and a watcher ends the rest of it, such as
its two agents, which Ray would leave for a minute), and a cluster ends the tasks of a driver that disconnected.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Iterable, Iterator

import gstbench
from gstbench import stopping
from gstbench.store.cell_result import CellResult

__version__ = "0.1.0"


POLL_S = 0.25  # how often the driver passes the tasks' epochs to the progress bar while it waits


def _run_cell(work: Callable, cell: Any, progress: Any = None) -> dict:
    if progress is None:
        return work(cell)
    from gstbench.builtin.executors import progress_sender

    # An epoch goes to the queue actor without waiting for it: a task waiting in ray.get lends its CPU back, and
    # Ray starts another worker for the next cell, so more cells ran at once than --workers, each in a cold process
    return work(cell, progress=progress_sender(progress.actor.put_nowait.remote, cell))


def _drain(progress: Any, work: Any, cells: dict[str, Any], shown: dict[str, int]) -> None:
    """Pass the epochs the tasks sent (a Ray queue actor) to the driver's progress bar, each cell's forward only:
    the actor may take a task's epochs out of order (``shown``: the last epoch passed on, by cell)."""
    try:
        items = progress.get_nowait_batch(progress.qsize())
    except Exception:  # the queue actor is gone: the bar stops moving, the cells do not
        return
    for cell_hash, done, planned in items:
        if cell_hash in cells and done > shown.get(cell_hash, 0):
            shown[cell_hash] = done
            work.on_epoch(cells[cell_hash], done, planned)


# A small watcher process: while the driver lives it notes the driver's descendants (the local instance's GCS,
# raylet, dashboard, log monitor, agents and task workers, by pid and start time); when the driver exits it kills
# those still there, then any process of the instance's session (named in its command line: a worker the raylet
# started after the last look, orphaned as it still imports). Ray ends its raylet, GCS and workers with the driver,
# but its agents first spend a minute telling the dead GCS that the raylet died, and its other processes notice
# the driver's death on their own clocks, which on a loaded machine can be many seconds.
REAPER = """
import os, select, signal, sys, time
driver, session, me = sys.argv[1], sys.argv[2].encode(), str(os.getpid())

def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return fields[1], fields[19]  # parent, start time

def driver_exited(timeout):
    if exited is not None:
        return bool(select.select([exited], [], [], timeout)[0])
    time.sleep(timeout)
    try:
        os.kill(int(driver), 0)
    except ProcessLookupError:
        return True
    return False

try:
    exited = os.pidfd_open(int(driver))
except (AttributeError, OSError):
    exited = None
noted = {}
while not driver_exited(0.5):
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            table[pid] = stat(pid)
        except (OSError, IndexError):
            continue
    for pid, (parent, started) in table.items():
        for _ in range(64):  # up the parents to the driver, or to a process outside it
            if parent == driver:
                if pid != me:
                    noted[pid] = started
                break
            if parent not in table:
                break
            parent = table[parent][0]
for pid, started in noted.items():
    try:
        if stat(pid)[1] == started:
            os.kill(int(pid), signal.SIGKILL)
    except (OSError, IndexError):
        pass
for _ in range(4):  # the session's stragglers, a few times over two seconds
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if session and session in f.read() and pid != me:
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.5)
"""
_REAPERS: list = []


def _reap_with_driver() -> None:
    """Start the watcher that ends the local instance's processes with this driver, once it has started a raylet
    (Linux: it reads /proc)."""
    import subprocess
    import sys

    if not os.path.isdir("/proc"):
        return
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as stat, open(f"/proc/{pid}/cmdline", "rb") as cmd:
                command = cmd.read()
                if stat.read().rsplit(")", 1)[1].split()[1] == me and b"/raylet/raylet" in command:
                    session = re.search(rb"session_[0-9][^/\s\x00]*", command)  # the instance's session name
                    _REAPERS.append(subprocess.Popen([sys.executable, "-c", REAPER, me,
                                                      session.group().decode() if session else ""],
                                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    return
        except (OSError, IndexError):
            continue


class RayExecutor:
    def __init__(self, address: str | None, workers: int | None, gpus_per_cell: float | None, max_retries: int):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers, self.gpus_per_cell, self.max_retries = workers, gpus_per_cell, max_retries

    def _init(self) -> bool:
        """Connect to the cluster (or start a local instance); True when this call started Ray."""
        import ray

        if ray.is_initialized():
            return False
        env = {k: v for k, v in os.environ.items() if k.startswith("GSTBENCH_")}
        runtime_env = {"env_vars": env} if env else None
        if self.address:
            ray.init(address=self.address, runtime_env=runtime_env, log_to_driver=False)
        else:  # a local instance: as many CPUs as --workers asks for
            ray.init(num_cpus=self.workers, runtime_env=runtime_env, log_to_driver=False, include_dashboard=False)
            _reap_with_driver()
        return True

    def map(self, cells: Iterable, work: Any) -> Iterator[tuple]:
        import ray
        from ray.exceptions import RayError, RayTaskError

        todo = list(cells)
        if not todo:
            return
        started = self._init()
        gpus = self.gpus_per_cell
        if gpus is None:
            gpus = 1.0 if str(work.device).startswith("cuda") else 0.0
        if gpus and str(work.device).startswith("cuda:"):
            work = dataclasses.replace(work, device="cuda")  # Ray picks the GPU; inside the task it is cuda:0
        task = ray.remote(_run_cell).options(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries,
                                             retry_exceptions=False)
        pending: list = []
        progress = None
        if getattr(work, "on_epoch", None) is not None:
            from ray.util.queue import Queue

            progress = Queue()
        by_hash = {cell.hash: cell for cell in todo}
        shown: dict[str, int] = {}
        try:
            refs = {task.remote(work, cell, progress): cell for cell in todo}
            pending = list(refs)  # the runner leased every cell in ``todo``: they are this run's
            while pending:
                stopping.check()  # a Ctrl-C that a finalizer swallowed stops here
                done, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
                if progress is not None:
                    _drain(progress, work, by_hash, shown)
                if not done:
                    continue
                cell = refs[done[0]]
                try:
                    result = ray.get(done[0])
                except RayTaskError as exc:  # raised outside the cell's own guard (e.g. unpickling): not retried
                    result = CellResult.failed(cell, f"ray task raised {exc.cause!r}")
                except RayError as exc:  # retries used up: the worker or its node kept dying
                    result = CellResult.failed(cell, f"ray worker died; gave up after {self.max_retries} retries: "
                                                     f"{type(exc).__name__}: {exc}")
                yield cell, result
        except BaseException:  # interrupted, or the driver stopped (a full disk): no task outlives it
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if progress is not None:
                progress.shutdown()  # the queue actor would outlive the run on a cluster
            if started:
                ray.shutdown()


def ray(address: str | None = None, workers: int | None = None, gpus_per_cell: float | None = None,
        max_retries: int = 3):
    """Cells as Ray tasks: a cluster (--address, or $RAY_ADDRESS), else a local instance; dead workers retried."""
    if gpus_per_cell is not None and gpus_per_cell < 0:
        raise ValueError("gpus_per_cell must be >= 0")
    return RayExecutor(address, workers, gpus_per_cell, int(max_retries))


@gstbench.hookimpl
def register_executors(register):
    register("ray", ray)
