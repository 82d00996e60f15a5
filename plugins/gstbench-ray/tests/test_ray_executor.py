"""gstbench-ray: a small matrix on a local Ray instance stores what the sequential executor stores."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from gstbench._doubles import DyingWork, StubCell
from gstbench.testing import stored_results
from gstbench_ray import RayExecutor

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
    return subprocess.run([sys.executable, "-m", "gstbench", *args], capture_output=True, text=True, env=env,
                          timeout=600)


def test_ray_is_listed_by_gstbench_plugins():
    proc = gstbench("plugins", "--json")
    ray = [p for p in json.loads(proc.stdout) if p["name"] == "ray"]
    assert ray and ray[0]["status"] == "loaded" and ray[0]["provides"] == {"executors": ["ray"]}


def test_a_local_ray_instance_stores_the_same_results_as_sequential(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    # Ray gives each task one CPU thread: compare with a one-thread sequential run (bitwise equal).
    seq = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "seq"), "--json", threads="1")
    assert seq.returncode == 0, seq.stderr
    ray = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "ray"), "--executor", "ray",
                   "--workers", "2")
    assert ray.returncode == 0, ray.stderr
    # the tasks' epochs reach the driver's bar while they train (a Ray queue actor)
    assert re.search(r"0/4 cells:.*epoch [123]/3", ray.stderr.replace("\r", "\n")), ray.stderr[-2000:]
    ours, theirs = stored_results(tmp_path / "ray"), stored_results(tmp_path / "seq")
    assert len(ours) == 4 and ours == theirs
    again = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "ray"), "--executor", "ray", "--json")
    assert json.loads(again.stdout)["run"]["ran"] == 0  # skip-by-hash stays in the driver


def test_dead_workers_are_retried_and_a_cells_own_exception_is_not(tmp_path):
    cells = [StubCell("fine"), StubCell("dies-once"), StubCell("raises")]
    executor = RayExecutor(address=None, workers=2, gpus_per_cell=None, max_retries=2)
    results = {c.name: r for c, r in executor.map(cells, DyingWork(str(tmp_path)))}
    assert results["fine"].status == "ok"
    assert results["dies-once"].status == "ok"  # retried after its worker died
    assert results["raises"].status == "failed" and "the cell's own bug" in results["raises"].error
    assert not (tmp_path / "raises").exists()

