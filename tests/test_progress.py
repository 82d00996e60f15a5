"""Live progress: pool workers' epochs reach the bar while their cells train, the ETA counts epochs, Ctrl-C stops."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

from gstbench.builtin.executors import PoolExecutor
from gstbench.plugins import get_registry
from gstbench.run.progress import RunProgress
from gstbench.run.orders import TRAIN, WorkOrder
from gstbench.run.runner import CellWork
from gstbench.plan.suite import load_suite

from gstbench.testing.forkserver import popen_gstbench

SUITE = """
name = "progress"
seeds = 2
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 800, train_split = 0.5 }
train = { epochs = EPOCHS, batch_size = 25 }
prune = { scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "3ep", period = "1ep", layers = { conv3 = { fraction = 0.5 } } }
[scales.quick]
"""


def test_the_bar_shows_every_cell_in_flight_epoch_by_epoch_and_ctrl_c_stops_in_seconds(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("EPOCHS", "200"))  # cells far longer than the test waits
    proc = popen_gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--executor", "pool",
                          "--workers", "2", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, sigint_default=True,
                          env={**os.environ, "GSTBENCH_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"})
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: [chunks.append(c) for c in iter(lambda: os.read(
        proc.stderr.fileno(), 4096), b"")], daemon=True)
    reader.start()
    both = re.compile(r"0/2 cells:.*epoch (\d+)/200, .* epoch (\d+)/200")
    deadline, frame = time.time() + 120, None
    while frame is None and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        frames = b"".join(chunks).decode(errors="replace").replace("\r", "\n").splitlines()
        frame = next((f for f in frames if (m := both.search(f)) and min(map(int, m.groups())) >= 2), None)
    assert frame is not None, b"".join(chunks).decode(errors="replace")[-2000:]
    assert re.search(r"\d+/400 \[", frame)  # the bar counts the epochs of both cells
    started = time.time()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    reader.join(timeout=5)
    assert time.time() - started < 10, "Ctrl-C took more than 10 s"
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 130 and "interrupted" in text and "Traceback" not in text


def test_pool_workers_send_their_epochs_while_their_cells_train(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("EPOCHS", "8"))
    registry = get_registry()
    cells = load_suite(registry, str(suite)).cells
    seen: list[tuple] = []
    work = CellWork(registry=registry, on_epoch=lambda cell, done, planned: seen.append((cell.hash, done, planned)))
    order = []
    for cell, result in PoolExecutor(workers=2, retries=0).map(iter([WorkOrder(c, TRAIN) for c in cells]), work):
        assert result.ok, result.error
        order.append((cell.hash, len(seen)))
    first_done, seen_then = order[0]
    before = seen[:seen_then]
    assert {h for h, _, _ in before} == {c.hash for c in cells}  # both trained at once, both reported
    for cell in cells:
        epochs = [done for h, done, planned in seen if h == cell.hash]
        assert epochs == sorted(epochs) and epochs[-1] <= 8 and len(epochs) >= 4
        assert all(planned == 8 for h, _, planned in seen if h == cell.hash)


def test_epochs_not_trained_here_leave_the_total_instead_of_counting_as_speed(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("EPOCHS", "10"))
    a, b = load_suite(get_registry(), str(suite)).cells
    bar = RunProgress([a, b], lambda spec: "cell", disable=False)  # a disabled tqdm counts nothing
    assert bar.bar.total == 20
    bar.epoch(a, 6, 10)  # resumed from a checkpoint at epoch 6: not trained here
    assert bar.bar.total == 14 and bar.bar.n == 0
    bar.epoch(a, 7, 10)
    bar.epoch(b, 1, 10)
    assert bar.bar.n == 2
    failed = type("Failed", (), {"ok": False, "error": "boom"})()
    bar.cell_done(b, failed)  # its 9 untrained epochs leave the total
    assert bar.bar.total == 5 and bar.finished == 1
    bar.close()

