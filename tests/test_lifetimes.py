"""What a run leaves when its driver dies: no worker process, no half-written file, and a re-run equal to an
uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, run_cli
from gstbench.testing import descendants, running, stored_results
from gstbench.testing.forkserver import popen_gstbench

pytestmark = pytest.mark.slow


def slower_tiny(tmp_path: Path) -> str:
    """The tiny suite with cells long enough to be caught in flight, checkpointed every epoch."""
    suite = tmp_path / "tiny.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace("epochs = 3", "epochs = 8\ncheckpoint_every = 1", 1))
    return str(suite)


def start_run(suite: str, out: Path, *args: str) -> subprocess.Popen:
    return popen_gstbench("run", "--suite", suite, "--out", str(out), *args, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "GSTBENCH_LOAD_PLUGINS": ""})


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_sigkilled_driver_takes_its_workers_with_it_and_a_rerun_equals_an_uninterrupted_run(tmp_path):
    suite, reference, out = slower_tiny(tmp_path), tmp_path / "reference", tmp_path / "out"
    assert run_cli("run", "--suite", suite, "--out", str(reference), "--executor", "sequential").returncode == 0
    driver = start_run(suite, out, "--executor", "auto", "--workers", "2")  # the default: a pool
    workers: set[int] = set()
    try:
        def two_training() -> bool:  # each of two workers has checkpointed its cell's first epoch
            return len(list(out.glob("cells/*/checkpoint.pt"))) >= 2 or driver.poll() is not None

        wait_for(two_training, 240, "two cells in flight")
        assert driver.poll() is None, driver.stderr.read()
        workers = descendants(driver.pid)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        t0 = time.time()
        wait_for(lambda: not running(workers), 10, f"the workers {running(workers)} to exit")
        print(f"workers gone {time.time() - t0:.2f} s after the driver's SIGKILL")
    finally:
        for pid in running(descendants(driver.pid) | workers):
            os.kill(pid, signal.SIGKILL)  # never leave one behind, whatever failed above
    assert len(list(out.glob("cells/*/lease.json"))) >= 2  # the dead driver's leases, free for the next run
    assert len(stored_results(out)) < 6, "the run should have been killed midway"
    again = run_cli("run", "--suite", suite, "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert stored_results(out) == stored_results(reference)
    assert not list(out.rglob("*.tmp")) and not list(out.glob("cells/*/lease.json"))


@pytest.mark.parametrize("platform", ["linux", "darwin"])  # darwin: no parent-death signal, the watching thread
def test_a_worker_exits_when_its_parent_is_killed(tmp_path, platform):
    worker = ("import os, sys, time\n"
              "from gstbench.builtin.executors import die_with\n"
              "real, sys.platform = sys.platform, {platform!r}\n"
              "die_with(os.getppid()); sys.platform = real; print('ready', flush=True); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', {worker.format(platform=platform)!r}], stdout=sys.stdout)\n"
        "print(child.pid, flush=True); time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "ready"
    parent.send_signal(signal.SIGKILL)
    parent.wait(10)
    t0 = time.time()
    try:
        wait_for(lambda: not running({child}), 5, f"the worker of a killed parent to exit ({platform})")
    finally:
        if running({child}):
            os.kill(child, signal.SIGKILL)
    assert time.time() - t0 < (0.5 if platform == "linux" else 3)
