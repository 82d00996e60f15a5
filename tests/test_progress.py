"""Live progress: pool workers' epochs reach the bar while their cells train, the ETA counts epochs, Ctrl-C stops."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time

from gstbench.builtin.executors import PoolExecutor
from gstbench.plugins import get_registry
from gstbench.run.progress import RunProgress
from gstbench.run.orders import TRAIN, WorkOrder
from gstbench.run.runner import CellWork
from gstbench.plan.suite import load_suite

from gstbench.testing.forkserver import popen_gstbench
from gstbench.testing.terminal import TerminalProcess

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
    term = TerminalProcess("run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--executor", "pool",
                           "--workers", "2", sigint_default=True,
                           env={**os.environ, "GSTBENCH_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1"})
    both = re.compile(r"0/2 cells:.*epoch (\d+)/200, .* epoch (\d+)/200")
    deadline, frame = time.time() + 120, None
    while frame is None and time.time() < deadline and term.proc.poll() is None:
        time.sleep(0.2)
        frames = term.text().replace("\r", "\n").splitlines()
        frame = next((f for f in frames if (m := both.search(f)) and min(map(int, m.groups())) >= 2), None)
    assert frame is not None, term.text()[-2000:]
    assert re.search(r"\d+/400 \[", frame)  # the bar counts the epochs of both cells
    started = time.time()
    term.proc.send_signal(signal.SIGINT)
    code = term.wait(timeout=30)
    assert time.time() - started < 10, "Ctrl-C took more than 10 s"
    text = term.text()
    assert code == 130 and "interrupted" in text and "Traceback" not in text


def test_a_run_into_a_file_writes_a_progress_line_at_most_every_30_s_and_a_last_one(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("EPOCHS", "4"))
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        proc = popen_gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "run"), stdout=subprocess.DEVNULL,
                              stderr=stderr, env={**os.environ, "GSTBENCH_LOAD_PLUGINS": ""})
        assert proc.wait(timeout=300) == 0
    text = log.read_text()
    progress = [line for line in text.splitlines() if re.match(r"\d+/2 cells, \d+/\d+ epochs", line)]
    assert progress == [progress[-1]] and progress[-1].startswith("2/2 cells, 8/8 epochs (100%)"), text
    assert "\r" not in text  # no redraws in a file


def test_lines_in_a_file_come_at_least_30_s_and_5_percent_apart():
    """A planted run of 10,000 epochs, one a second, on a clock the test moves: a line every 5% (500 s)."""
    now = [0.0]
    cells = [type("Spec", (), {"hash": f"h{i}", "seed": 0, "short_hash": f"h{i}", "planned_epochs": 1000})()
             for i in range(10)]
    stream = io.StringIO()
    bar = RunProgress(cells, lambda spec: "cell", disable=False, stream=stream, clock=lambda: now[0])
    for cell in cells:
        for e in range(1, 1001):
            now[0] += 1.0
            bar.epoch(cell, e, 1000)
        bar.cell_done(cell, type("Ok", (), {"ok": True})())
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 21 and lines[-1].startswith("10/10 cells, 10000/10000 epochs (100%)")
    done = [int(re.search(r"cells, (\d+)/", line).group(1)) for line in lines[:-1]]
    assert all(b - a >= 500 for a, b in zip(done, done[1:]))  # 5% of the epochs between two lines


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
    bar = RunProgress([a, b], lambda spec: "cell", disable=False, stream=io.StringIO())
    assert bar.total == 20
    bar.epoch(a, 6, 10)  # resumed from a checkpoint at epoch 6: not trained here
    assert bar.total == 14 and bar.done == 0
    bar.epoch(a, 7, 10)
    bar.epoch(b, 1, 10)
    assert bar.done == 2
    failed = type("Failed", (), {"ok": False, "error": "boom"})()
    bar.cell_done(b, failed)  # its 9 untrained epochs leave the total
    assert bar.total == 5 and bar.finished == 1
    bar.close()

