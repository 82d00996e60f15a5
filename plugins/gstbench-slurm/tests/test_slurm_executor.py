"""gstbench-slurm through submitit's local executor (real job processes): same results as sequential, and a
job preempted mid-cell is requeued and goes on from the cell's checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gstbench.testing import files_outside, stored_results
from gstbench.testing.forkserver import popen_gstbench, run_gstbench

SUITE = """
name = "slurm-tiny"
seeds = 1
[base]
model = {{ name = "cnn1d", channels = [8, 16, 16, 16] }}
dataset = {{ name = "mnist1d", num_samples = {samples}, train_split = 0.5 }}
train = {{ epochs = {epochs}, batch_size = 32, checkpoint_every = 1 }}
prune = {{ scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = {{ conv3 = {{ fraction = 0.5 }} }} }}
[axes]
"prune.target" = {targets}
[scales.quick]
"""
LOCAL = ("--executor", "slurm", "--executor-option", "cluster=local", "--executor-option", "time_min=10")


def env() -> dict[str, str]:
    return {**os.environ, "GSTBENCH_LOAD_PLUGINS": "slurm", "OMP_NUM_THREADS": "1"}


def gstbench(*args: str) -> subprocess.CompletedProcess:
    return run_gstbench(*args, env=env(), timeout=600)


def suite(tmp_path: Path, samples: int = 600, epochs: int = 3, targets: str = '["smallest", "largest"]') -> str:
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.format(samples=samples, epochs=epochs, targets=targets))
    return str(path)


def test_slurm_is_listed_by_gstbench_plugins():
    proc = gstbench("plugins", "--json")
    slurm = [p for p in json.loads(proc.stdout) if p["name"] == "slurm"]
    assert slurm and slurm[0]["status"] == "loaded" and slurm[0]["provides"] == {"executors": ["slurm"]}


def job_processes(run_dir: Path) -> list[int]:
    """The pids of the job tasks running under ``run_dir``'s job folder (submitit's ``_submit`` processes)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "submitit.core._submit" in cmdline and str(run_dir) in cmdline:
            pids.append(int(proc.name))
    return pids


def wait_for(condition, what: str, driver: subprocess.Popen, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's process in /proc")
def test_a_preempted_job_and_a_killed_one_both_go_on_from_the_cells_checkpoint(tmp_path):
    path = suite(tmp_path, samples=2000, epochs=16, targets='["smallest"]')
    seq = gstbench("run", "--suite", path, "--out", str(tmp_path / "seq"), "--executor", "sequential", "--json")
    assert seq.returncode == 0, seq.stderr
    out = tmp_path / "jobs"
    driver = popen_gstbench("run", "--suite", path, "--out", str(out), *LOCAL, "--json", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    try:
        wait_for(lambda: list(out.glob("cells/*/checkpoint.pt")), "the cell's first checkpoint", driver)
        first, = job_processes(out)
        os.kill(first, signal.SIGUSR2)  # what Slurm sends before a preemption or the time limit: requeued
        checkpoint, = out.glob("cells/*/checkpoint.pt")
        wait_for(lambda: job_processes(out) not in ([], [first]), "a requeued job", driver)
        written = checkpoint.stat().st_mtime_ns
        wait_for(lambda: checkpoint.exists() and checkpoint.stat().st_mtime_ns != written,
                 "a checkpoint of the requeued job", driver)
        second, = job_processes(out)
        os.kill(second, signal.SIGKILL)  # a node failure: no signal first, no result; submitted again
        stdout, stderr = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr
    assert json.loads(stdout)["run"]["ran"] == 1
    folders = sorted({log.parent for log in (out / "slurm").glob("*/*_log.*")})
    assert len(folders) == 2  # the array's job (started twice) and the one submitted after the kill
    logs = {f.name: "".join(p.read_text() for p in f.glob("*_log.*")) for f in folders}
    requeued = next(log for log in logs.values() if "Requeued" in log)
    assert requeued.count("going on from its checkpoint") == 1, requeued[-3000:]
    resubmitted = next(log for log in logs.values() if "Requeued" not in log)
    assert "going on from its checkpoint" in resubmitted, resubmitted[-3000:]
    # both went on from the checkpoint: the same numbers as a run never stopped
    assert stored_results(out) == stored_results(tmp_path / "seq")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's process in /proc")
def test_jobs_of_a_sigkilled_driver_stop_and_a_rerun_equals_sequential_and_the_next_submits_nothing(tmp_path):
    from gstbench.run.leases import WATCH_S

    path = suite(tmp_path, samples=2000, epochs=32)  # long enough that no job ends before it sees its driver gone
    seq = gstbench("run", "--suite", path, "--out", str(tmp_path / "seq"), "--executor", "sequential", "--json")
    assert seq.returncode == 0, seq.stderr
    out = tmp_path / "jobs"
    driver = popen_gstbench("run", "--suite", path, "--out", str(out), *LOCAL, "--json", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env())
    jobs: list[int] = []
    try:
        wait_for(lambda: len(list(out.glob("cells/*/checkpoint.pt"))) == 2, "both cells' first checkpoints", driver)
        jobs = job_processes(out)
        assert len(jobs) == 2
        driver.kill()  # SIGKILL: no handler runs, no job is cancelled by the driver
        driver.wait(10)
        deadline = time.monotonic() + WATCH_S + 10
        while set(jobs) & set(job_processes(out)):  # each job sees its driver gone and stops
            assert time.monotonic() < deadline, f"jobs still running: {job_processes(out)}"
            time.sleep(0.1)
    finally:
        for pid in job_processes(out):
            os.kill(pid, signal.SIGKILL)
    assert not stored_results(out)
    again = gstbench("run", "--suite", path, "--out", str(out), *LOCAL, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["run"]["ran"] == 2
    assert stored_results(out) == stored_results(tmp_path / "seq")
    logs = sorted((out / "slurm").glob("*/*_log.out"))
    assert len(logs) == 4  # one folder per job (two killed, two re-run): its stdout and stderr, where submitit puts them
    assert "".join(p.read_text() for p in logs).count("its driver is gone") == 2
    rerun = gstbench("run", "--suite", path, "--out", str(out), *LOCAL, "--json")
    assert json.loads(rerun.stdout)["run"]["ran"] == 0  # skip-by-hash stays in the driver
    assert len(list((out / "slurm").glob("*/*_log.out"))) == 4
    assert files_outside(tmp_path, path, tmp_path / "seq", out) == []  # the job folder is in the run's


def test_bad_options_are_refused_in_one_line(tmp_path):
    path = suite(tmp_path)
    proc = gstbench("run", "--suite", path, "--executor", "slurm", "--executor-option", "partitoin=gpu")
    assert proc.returncode == 2
    assert "has no option 'partitoin' (--executor-option partitoin=...) (did you mean: partition?)" in proc.stderr
    proc = gstbench("run", "--suite", path, "--executor", "slurm", "--executor-option", "cluster=local",
                    "--gpus-per-cell", "0.5")
    assert proc.returncode == 2 and "whole number of GPUs" in proc.stderr
    if not shutil.which("sbatch"):
        proc = gstbench("run", "--suite", path, "--executor", "slurm")
        assert proc.returncode == 2 and "no sbatch" in proc.stderr and "on PATH" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_the_options_become_the_sbatch_script_slurm_runs(tmp_path, monkeypatch):
    """Without a cluster: Slurm's own tools on PATH stand in (the edge of the system), and submitit
    writes the job script it would submit."""
    from gstbench.run.runner import CellWork
    from gstbench_slurm import slurm

    for tool in ("sbatch", "srun"):
        (tmp_path / tool).write_text("#!/bin/sh\nexit 0\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    executor = slurm(partition="gpu", time_min=120, gpus_per_cell=1, mem_gb=32, array_parallelism=16,
                     account="lab", constraint="a100", setup=["module load cuda/12.4"])
    work = CellWork(device="cuda", suite="tradeoff", threads=8, run_dir=str(tmp_path / "run"))
    submitit_executor = executor.submitit_executor(work)
    script = submitit_executor._executor._make_submission_file_text("python -m job", "uid")
    for line in ("--partition=gpu", "--time=120", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=32GB",
                 "--account=lab", "--constraint=a100", "--job-name=gstbench-tradeoff", "--signal=USR2@120",
                 f"--output={tmp_path / 'run' / 'slurm'}"):
        assert f"#SBATCH {line}" in script, line
    assert "module load cuda/12.4" in script
    assert submitit_executor._executor.parameters["array_parallelism"] == 16
