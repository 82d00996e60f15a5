"""gstbench-tensorboard: a run's cells read back with TensorBoard's own event reader match the stored results."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from gstbench.plan.config import short_hash
from gstbench.store.store import Store
from gstbench.testing import files_outside
from gstbench.testing.forkserver import run_gstbench

SUITE = """
name = "tb-tiny"
seeds = 2
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 400, train_split = 0.5 }
train = { epochs = 3, batch_size = 50 }
prune = { scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { conv3 = { fraction = 0.5 } } }
[scales.quick]
"""


def gstbench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "tensorboard"}
    return run_gstbench(*args, env=env, timeout=300)


def test_tensorboard_is_listed_by_gstbench_plugins():
    proc = gstbench("plugins", "--json")
    found = [p for p in json.loads(proc.stdout) if p["name"] == "tensorboard"]
    assert found and found[0]["status"] == "loaded" and found[0]["provides"] == {"loggers": ["tensorboard"]}


def test_every_cell_is_a_tensorboard_run_with_its_curves_events_and_final_metrics(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    proc = gstbench("run", "--suite", str(suite), "--out", str(out), "--log", "tensorboard")
    assert proc.returncode == 0, proc.stderr
    assert files_outside(tmp_path, suite, out) == []
    stored = [cell.result for cell in Store(out).iter_cells()]
    runs = sorted((out / "tensorboard" / "tb-tiny").glob("*/*"))
    assert sorted(r.name for r in runs) == sorted(short_hash(r.hash) for r in stored)
    assert len({r.parent.name for r in runs}) == 1  # both seeds in their configuration's folder
    assert runs[0].parent.name.startswith("l2_smallest_mask_1ep-")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # not at collection

    for result in stored:
        events = EventAccumulator(str(out / "tensorboard" / "tb-tiny" / runs[0].parent.name
                                      / short_hash(result.hash)))
        events.Reload()
        acc = events.Scalars("test/acc")
        assert [e.step for e in acc] == result.curves.step
        assert [e.value for e in acc] == [float(_f32(v)) for v in result.curves.test_acc]
        drops = events.Scalars("prune/instability")
        assert [e.step for e in drops] == [e.step for e in result.events]
        assert [e.value for e in drops] == [_f32(e.instability) for e in result.events]
        assert [e.value for e in events.Scalars("prune/conv3/remaining")] == [
            e.layers["conv3"].remaining for e in result.events]
        assert events.Scalars("final/best_test_acc")[0].value == _f32(result.metrics["best_test_acc"])
        text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
        assert "| train.epochs | 3 |" in text and f"seed {result.seed}" in text  # the flattened config


def _f32(value: float) -> float:
    """TensorBoard stores scalars as float32."""
    import numpy as np

    return float(np.float32(value))


def test_a_run_whose_directory_would_leave_the_log_directory_is_refused(tmp_path):
    from gstbench.errors import GstbenchError
    from gstbench.engine.tracking import LoggedRun
    from gstbench_tensorboard import TensorBoardLogger

    # load_suite refuses such a suite name; a logger checks the path it writes all the same
    run = LoggedRun("0" * 16, "0" * 64, "../../escaped", "quick", "c" * 64, "l2 smallest", 0, {}, tmp_path / "run")
    with pytest.raises(GstbenchError, match="lies outside"):
        TensorBoardLogger(str(tmp_path / "logs")).start(run)
    assert files_outside(tmp_path) == []
