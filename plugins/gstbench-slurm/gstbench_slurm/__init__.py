"""gstbench-slurm: an executor that runs each cell as a Slurm job (one job array per run) through submitit.

The driver (``gstbench run``) keeps skip-by-hash, leases and storage; a job only turns a
cell into a result, which submitit pickles back to the driver. A job that Slurm preempts,
or that reaches its time limit, gets SIGUSR2 first: submitit then calls the job's
``checkpoint`` (``CellJob`` is ``submitit.helpers.Checkpointable``) and requeues it, and the
requeued job goes on from the cell's last checkpoint (``train.checkpoint_every``). A job that
ends without a result (killed, a node failure) is submitted again (``retries``), and it too
goes on from the checkpoint. A cell's own exception is already a stored "failed" result.
A driver stopped by Ctrl-C or SIGTERM cancels its jobs; one that is killed cannot, so each
job watches its cell's lease (gstbench.run.leases.watch) and stops when the lease passes to
another run or goes stale: a cell is trained by one job at a time.

The job folder (submitit's pickles and each job's stdout/stderr) defaults to ``<run>/slurm``;
the driver and the jobs must see the run directory on a shared filesystem, and the jobs need
the same Python environment (gstbench and its plugins).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import gstbench
from gstbench import stopping
from gstbench.store.cell_result import CellResult
from gstbench.errors import GstbenchError
from gstbench.run.leases import watch

__version__ = "0.1.0"

POLL_S = 1.0  # how often the driver asks whether jobs ended (submitit caches sacct for Slurm)
CLUSTERS = ("slurm", "local")  # local: the same jobs as local processes (submitit's LocalExecutor)


class CellJob:
    """One cell as a job, checkpointable the way submitit asks (its ``checkpoint`` method): on preemption
    or time-out submitit resubmits it as it is, and the cell's work finds the cell's checkpoint file and
    goes on from there. (submitit is imported on use: every gstbench command loads this plugin.)"""

    def __init__(self, work: Any):
        self.work = work

    def __call__(self, cell: Any) -> CellResult:
        import atexit
        import gc
        import signal

        atexit.register(gc.freeze)  # as the CLI does: the exit's collections of torch's heap take over a second

        from gstbench.store.store import CHECKPOINT

        directory = self.work.cell_dir(cell)
        if directory is not None and (directory / CHECKPOINT).exists():
            print(f"gstbench: cell {directory.name} found its {CHECKPOINT}: going on from its checkpoint", flush=True)
        if directory is not None and self.work.lease_run:  # a killed driver cannot cancel its jobs: they watch
            watch(directory, self.work.lease_run, self.work.lease_timeout, _stop_job(directory.name))
        # submitit's SIGUSR2 handler (checkpoint, requeue, exit) raises wherever the signal lands; inside a
        # finalizer that exit is swallowed and the job trains on to its kill. It runs at the next step instead.
        handler = signal.getsignal(signal.SIGUSR2)
        if not callable(handler):  # not under submitit (a plain call): nothing to defer
            return self.work(cell)
        with stopping.deferred(signal.SIGUSR2, handler):
            return self.work(cell)

    def checkpoint(self, cell: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(CellJob(self.work), cell)


def _stop_job(cell: str):
    def stop(why: str) -> None:
        print(f"gstbench: cell {cell}: {why}; this job stops (its last checkpoint stays for the run that holds "
              f"the cell)", flush=True)
        os._exit(0)  # not a failure to requeue or retry: the cell is another run's now
    return stop


class SlurmExecutor:
    def __init__(self, partition: str | None, time_min: int, gpus_per_cell: int, cpus_per_cell: int | None,
                 mem_gb: float | None, array_parallelism: int, folder: str | None, max_requeues: int,
                 retries: int, account: str | None, qos: str | None, constraint: str | None,
                 setup: tuple[str, ...], cluster: str):
        self.partition, self.time_min, self.gpus_per_cell = partition, time_min, gpus_per_cell
        self.cpus_per_cell, self.mem_gb, self.array_parallelism = cpus_per_cell, mem_gb, array_parallelism
        self.folder, self.max_requeues, self.retries, self.cluster = folder, max_requeues, retries, cluster
        self.account, self.qos, self.constraint, self.setup = account, qos, constraint, setup

    def submitit_executor(self, work: Any) -> Any:
        import submitit

        folder = Path(self.folder) if self.folder else Path(work.run_dir or ".") / "slurm"
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster,
                                         **{f"{self.cluster}_max_num_timeout": self.max_requeues})
        gpus = self.gpus_per_cell if self.gpus_per_cell is not None else int(str(work.device).startswith("cuda"))
        params: dict[str, Any] = {"name": f"gstbench-{work.suite or 'run'}", "timeout_min": self.time_min,
                                  "cpus_per_task": self.cpus_per_cell or work.threads or 1, "gpus_per_node": gpus,
                                  "tasks_per_node": 1, "nodes": 1}
        if self.mem_gb is not None:
            params["mem_gb"] = self.mem_gb
        if self.cluster == "slurm":
            params.update({"slurm_array_parallelism": self.array_parallelism, "slurm_signal_delay_s": 120})
            for key in ("partition", "account", "qos", "constraint"):
                if getattr(self, key):
                    params[f"slurm_{key}"] = getattr(self, key)
            if self.setup:
                params["slurm_setup"] = list(self.setup)
        executor.update_parameters(**params)
        return executor

    def map(self, cells: Iterable, work: Any) -> Iterator[tuple]:
        todo = list(cells)  # the runner leased every one of them: they are this run's
        if not todo:
            return
        if str(work.device).startswith("cuda:"):
            work = dataclasses.replace(work, device="cuda")  # Slurm picks the GPU; in the job it is cuda:0
        executor = self.submitit_executor(work)
        jobs = executor.map_array(CellJob(work), todo)
        pending = {job.job_id: (cell, job, 0) for cell, job in zip(todo, jobs)}
        try:
            while pending:
                stopping.check()  # a Ctrl-C that a finalizer swallowed stops here
                ended = [job_id for job_id, (_, job, _) in pending.items() if job.done()]
                if not ended:
                    time.sleep(POLL_S)
                    continue
                for job_id in ended:
                    cell, job, retried = pending.pop(job_id)
                    result, why = self._result(cell, job)
                    if why is not None and retried < self.retries:  # it died: again, from its checkpoint
                        again = executor.submit(CellJob(work), cell)
                        pending[again.job_id] = (cell, again, retried + 1)
                        continue
                    if why is not None:
                        result = CellResult.failed(cell, f"{why}; gave up after {retried + 1} jobs")
                    yield cell, result
        except BaseException:  # interrupted, or the driver stopped: no job outlives it
            for _, job, _ in pending.values():
                job.cancel(check=False)
            raise

    def _result(self, cell: Any, job: Any) -> tuple[CellResult | None, str | None]:
        """The job's result, or why it has none (it died, was cancelled, or timed out too often).

        A local job (cluster=local) writes its result before its process ends, on this machine's disk: one that
        ended without the file has none, and is not waited for as submitit waits (15 s) for a cluster's shared
        filesystem to show it."""
        if self.cluster == "local" and not job.paths.result_pickle.exists():
            return None, f"slurm job {job.job_id} ended without a result (its log: {job.paths.stderr})"
        try:
            result = job.result()
        except Exception as exc:
            message = str(exc).strip().splitlines()
            return None, (f"slurm job {job.job_id} ended without a result: "
                          f"{message[0] if message else type(exc).__name__} (its log: {job.paths.stderr})")
        if not isinstance(result, CellResult):
            return CellResult.failed(cell, f"slurm job {job.job_id} returned {type(result).__name__}, "
                                           f"not a result"), None
        return result, None


def slurm(partition: str | None = None, time_min: int = 240, gpus_per_cell: int | None = None,
          cpus_per_cell: int | None = None, mem_gb: float | None = None, array_parallelism: int = 64,
          folder: str | None = None, max_requeues: int = 3, retries: int = 2, account: str | None = None,
          qos: str | None = None, constraint: str | None = None, setup: list[str] | None = None,
          cluster: str = "slurm"):
    """Each cell a Slurm job (submitit, one job array per run); preempted or timed-out jobs requeue from the checkpoint.

    Options: partition, account, qos, constraint, time_min, gpus_per_cell, cpus_per_cell, mem_gb,
    array_parallelism, folder (job logs), max_requeues (time-outs), retries (jobs that died), setup (shell
    lines), cluster (slurm or local)."""
    if cluster not in CLUSTERS:
        raise GstbenchError(f"executor slurm: cluster must be one of {', '.join(CLUSTERS)}, not {cluster!r}")
    missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None] if cluster == "slurm" else []
    if missing:
        raise GstbenchError(f"executor slurm: no {' or '.join(missing)} on PATH; run gstbench on a Slurm login node, "
                            f"or try the same jobs as local processes with --executor-option cluster=local")
    if gpus_per_cell is not None and (isinstance(gpus_per_cell, bool) or gpus_per_cell != int(gpus_per_cell)
                                      or gpus_per_cell < 0):
        raise GstbenchError(f"executor slurm: gpus_per_cell must be a whole number of GPUs, not {gpus_per_cell}")
    for name, value, low in (("time_min", time_min, 1), ("array_parallelism", array_parallelism, 1),
                             ("max_requeues", max_requeues, 0), ("retries", retries, 0),
                             ("cpus_per_cell", cpus_per_cell or 1, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise GstbenchError(f"executor slurm: {name} must be a whole number >= {low}, not {value!r}")
    return SlurmExecutor(partition, time_min, None if gpus_per_cell is None else int(gpus_per_cell), cpus_per_cell,
                         mem_gb, array_parallelism, folder, max_requeues, retries, account, qos, constraint,
                         tuple(setup or ()), cluster)


@gstbench.hookimpl
def register_executors(register):
    register("slurm", slurm)
