"""Executors: the process pool stores the same results as sequential runs, retries dead workers, and resumes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gstbench.builtin.executors import PoolExecutor, visible_devices
from gstbench._doubles import DyingWork, StubCell
from gstbench.testing import stored_results
from gstbench.testing.forkserver import run_gstbench

from conftest import run_cli

TINY = str(Path(__file__).parent / "data" / "tiny.toml")
# CPU numbers are bitwise equal for equal thread counts: pool workers get one thread each here.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def sequential_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    proc = run_cli("run", "--suite", TINY, "--out", str(out), "--json", env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.mark.slow
def test_the_default_runs_a_pool_with_one_thread_per_cell_and_stores_what_sequential_does(sequential_run, tmp_path):
    out = tmp_path / "auto"
    default_env = {k: v for k, v in os.environ.items() if k not in ("GSTBENCH_EXECUTOR", "OMP_NUM_THREADS")}
    proc = run_gstbench("run", "--suite", TINY, "--out", str(out), "--json",
                        env={**default_env, "GSTBENCH_LOAD_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    cores = len(os.sched_getaffinity(0))
    chosen = json.loads(proc.stdout)["run"]["executor"]
    assert chosen == (f"auto: pool of {cores} workers" if cores > 1 else "auto: sequential (in this process)")
    ours, theirs = stored_results(out), stored_results(sequential_run)
    assert len(ours) == 6 and ours.keys() == theirs.keys()
    for h in ours:
        assert ours[h] == theirs[h], f"cell {h[:12]} differs between pool and sequential"
    threads = {json.loads(p.read_text())["environment"]["threads"] for p in out.glob("cells/*/result.json")}
    assert threads == {1}
    again = run_cli("run", "--suite", TINY, "--out", str(out), "--executor", "pool", "--workers", "2", "--json")
    assert json.loads(again.stdout)["run"]["ran"] == 0


@pytest.mark.skipif(not shutil.which("taskset"), reason="needs taskset")
def test_the_default_on_one_core_or_with_one_cell_pending_runs_in_process(sequential_run, tmp_path):
    out = tmp_path / "one"
    shutil.copytree(sequential_run, out)
    victim = next(out.glob("cells/*/result.json"))
    victim.unlink()
    env = {k: v for k, v in os.environ.items() if k != "GSTBENCH_EXECUTOR"}
    proc = run_gstbench("run", "--suite", TINY, "--out", str(out), "--json", env={**env, "GSTBENCH_LOAD_PLUGINS": ""})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run"]["executor"] == "auto: sequential (in this process)"
    assert stored_results(out) == stored_results(sequential_run)
    for victim in list(out.glob("cells/*/result.json"))[:2]:  # one core for this process: no pool for two cells
        victim.unlink()
    proc = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "gstbench", "run", "--suite", TINY, "--out",
                           str(out), "--json"], capture_output=True, text=True,
                          env={**env, "GSTBENCH_LOAD_PLUGINS": ""}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run"]["executor"] == "auto: sequential (in this process)"


def test_an_option_the_executor_lacks_is_refused_by_name():
    proc = run_cli("run", "--suite", TINY, "--executor", "sequential", "--workers", "2")
    assert proc.returncode == 2
    assert "executor 'gstbench:sequential' has no option 'workers' (--workers)" in proc.stderr


def test_cuda_means_every_visible_gpu_round_robin():
    assert visible_devices("cpu") == ["cpu"]
    assert visible_devices("cuda:1") == ["cuda:1"]


def test_pool_retries_a_cell_whose_worker_died_and_records_one_that_keeps_dying(tmp_path):
    cells = [StubCell("a"), StubCell("dies-once"), StubCell("b"), StubCell("dies-always")]
    results = dict((c.name, r) for c, r in PoolExecutor(workers=2, retries=1).map(cells, DyingWork(str(tmp_path))))
    assert results.keys() == {"a", "b", "dies-once", "dies-always"}
    assert results["dies-once"].status == "ok"
    assert results["a"].status == results["b"].status == "ok"
    assert results["dies-always"].status == "failed"
    assert "worker process died 2 times" in results["dies-always"].error
    assert results["a"].environment.device == "cpu"
