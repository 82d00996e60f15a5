"""gstbench-ray: a small matrix on a local Ray instance, killed and run again, stores what the sequential executor
stores."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gstbench.testing import descendants, running, stored_results
from gstbench.testing.forkserver import popen_gstbench, run_gstbench, run_script
from gstbench.testing.terminal import TerminalProcess

SUITE = """
name = "ray-tiny"
seeds = 2
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 600, train_split = 0.5 }
train = { epochs = 3, batch_size = 64 }
prune = { scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { conv3 = { fraction = 0.5 } } }
[axes]
"prune.target" = ["smallest", "largest"]
[scales.quick]
"""


def gstbench(*args: str, threads: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "ray", "RAY_ADDRESS": ""}
    if threads:
        env["OMP_NUM_THREADS"] = threads
    return run_gstbench(*args, env=env, timeout=600)


def test_ray_is_listed_by_gstbench_plugins():
    proc = gstbench("plugins", "--json")
    ray = [p for p in json.loads(proc.stdout) if p["name"] == "ray"]
    assert ray and ray[0]["status"] == "loaded" and ray[0]["provides"] == {"executors": ["ray"]}


DOUBLES = """import json, sys
import ray
from gstbench._doubles import DyingWork, EpochsWork, StubCell
from gstbench_ray import RayExecutor

# one local instance of one CPU for both maps (the executor uses an instance it finds and leaves it running)
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
seen = []
work = EpochsWork(epochs=20, every_s=0.02)
work.on_epoch = lambda cell, done, planned: seen.append((cell.name, done))
cells = [StubCell(f"cell{i}") for i in range(3)]
one_worker = [r.metrics for _, r in RayExecutor(address=None, workers=1, gpus_per_cell=None, max_retries=0).map(cells, work)]
cells = [StubCell("fine"), StubCell("dies-once"), StubCell("raises")]
executor = RayExecutor(address=None, workers=1, gpus_per_cell=None, max_retries=2)
dying = {c.name: [r.status, r.error] for c, r in executor.map(cells, DyingWork(sys.argv[1]))}
ray.shutdown()
print(json.dumps({"one_worker": one_worker, "seen": seen, "dying": dying}))
"""


@pytest.fixture(scope="module")
def doubles(tmp_path_factory) -> tuple[dict, Path]:
    """Both executor tests of doubles, in one driver process of their own (Ray's state stays out of the test
    process) on one local instance: what each map returned, and the dying cells' marker directory."""
    tmp_path = tmp_path_factory.mktemp("doubles")
    script = tmp_path / "doubles.py"
    script.write_text(DOUBLES)
    (tmp_path / "markers").mkdir()
    proc = run_script(script, str(tmp_path / "markers"), env={**os.environ, "RAY_ADDRESS": ""}, cwd=tmp_path,
                      timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), tmp_path / "markers"


def test_dead_workers_are_retried_and_a_cells_own_exception_is_not(doubles):
    out, markers = doubles
    results = out["dying"]
    assert results["fine"][0] == "ok"
    assert results["dies-once"][0] == "ok"  # retried after its worker died
    assert results["raises"][0] == "failed" and "the cell's own bug" in results["raises"][1]
    assert not (markers / "raises").exists()


def test_a_worker_takes_the_next_cell_and_no_more_cells_run_at_once_than_workers_while_epochs_reach_the_bar(doubles):
    out, _ = doubles
    results, seen = out["one_worker"], [tuple(s) for s in out["seen"]]
    # one warm process runs the cells one after another: a new worker per cell would import torch each time
    assert len({r["pid"] for r in results}) == 1, results
    spans = sorted((r["started"], r["ended"]) for r in results)
    assert all(ended <= started for (_, ended), (started, _) in zip(spans, spans[1:])), spans
    assert {name for name, _ in seen} >= {"cell0", "cell1"}, seen  # the last cell's epochs may end with the run
    for name in {name for name, _ in seen}:
        done = [d for n, d in seen if n == name]
        assert done == sorted(set(done)) and set(done) <= set(range(1, 21)), (name, done)  # forward only


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _task_workers(pids: set[int]) -> set[int]:
    """Ray's worker processes (``ray::IDLE``, ``ray::_run_cell``), not its agents."""
    return {pid for pid in pids if _cmdline(pid).startswith("ray::") and "Agent" not in _cmdline(pid)}


def _parent(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return "?"


def wait_until(condition, timeout: float, processes: set[int]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "still running: " + "; ".join(
            f"{_cmdline(p)[:200]} (pid {p}, parent {_parent(p)})" for p in running(processes))
        time.sleep(0.1)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the processes in /proc")
def test_a_sigkilled_driver_takes_its_ray_instance_with_it_and_a_ray_rerun_equals_sequential(tmp_path):
    suite = tmp_path / "suite.toml"
    # long enough that both cells are still training when the driver is killed, on a fast machine too (12 were not)
    suite.write_text(SUITE.replace("epochs = 3, batch_size = 64", "epochs = 40, batch_size = 64, checkpoint_every = 1"))
    out = tmp_path / "ray"
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "ray", "RAY_ADDRESS": ""}
    driver = popen_gstbench("run", "--suite", str(suite), "--out", str(out), "--executor", "ray", "--workers", "2",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    processes: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while len(list(out.glob("cells/*/checkpoint.pt"))) < 2:
            assert driver.poll() is None and time.monotonic() < deadline, "no two cells in flight"
            time.sleep(0.1)
        processes = descendants(driver.pid)  # Ray's own processes and its task workers
        workers = _task_workers(processes)
        assert len(workers) >= 2, [_cmdline(p) for p in processes]
        driver.kill()
        driver.wait(10)
        t0 = time.monotonic()
        # the workers that ran the cells share the driver's fate at once, and so does the rest of the instance
        wait_until(lambda: not running(workers), 15, workers)
        print(f"Ray's task workers gone {time.monotonic() - t0:.1f} s after the driver's SIGKILL")
        wait_until(lambda: not running(processes), 15, processes)  # the agents too: a watcher ends them
        print(f"all of Ray's processes gone {time.monotonic() - t0:.1f} s after the driver's SIGKILL")
        # the re-run goes on under a new local Ray instance from the killed cells' checkpoints; on a terminal, the
        # tasks' epochs reach the driver's bar while they train (a Ray queue actor)
        again = TerminalProcess("run", "--suite", str(suite), "--out", str(out), "--executor", "ray", "--workers", "2",
                                env=env)
        assert again.wait(timeout=600) == 0, again.text()[-2000:]
        assert re.search(r"[0-3]/4 cells:.*epoch \d+/40", again.text().replace("\r", "\n")), again.text()[-2000:]
        # Ray gives each task one CPU thread: a one-thread sequential run never stopped stores the same, bitwise
        seq = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "seq"), "--json", threads="1")
        assert seq.returncode == 0, seq.stderr
        assert len(stored_results(out)) == 4 and stored_results(out) == stored_results(tmp_path / "seq")
        rerun = gstbench("run", "--suite", str(suite), "--out", str(out), "--executor", "ray", "--json")
        assert json.loads(rerun.stdout)["run"]["ran"] == 0  # skip-by-hash stays in the driver
    finally:
        for pid in running(processes | descendants(driver.pid)):
            os.kill(pid, signal.SIGKILL)
