"""Mid-cell checkpoints: a cell stopped mid-way goes on from its last checkpoint and stores the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from conftest import DATA, changed, run_cli
from gstbench.plan.parse import cell_from_config
from gstbench.engine import run_cell
from gstbench.engine.order import RESUME, TRAIN, WorkOrder
from gstbench.testing import stored_results
from gstbench.testing.forkserver import popen_gstbench

CELL = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 400, "train_split": 0.5},
    "train": {"epochs": 6, "batch_size": 64, "milestones": ["4ep"], "checkpoint_every": 1},
    "prune": {"scorer": "l2", "target": "smallest", "effector": "mask", "start": "1ep", "end": "5ep",
              "period": "1ep", "layers": {"conv2": {"fraction": 0.5}, "conv3": {"fraction": 0.5}}},
}
VARIANTS = {
    "mask": {},
    "remove": {"prune__effector": "remove"},
    "activation-l1, random target": {"prune__scorer": "activation-l1", "prune__target": "random"},
    "zero for 5 steps": {"prune__effector": {"name": "zero", "steps": 5}},
    "noise for 5 steps": {"prune__effector": {"name": "noise", "steps": 5}},
    "soft filter pruning, synflow": {"prune__effector": "soft", "prune__scorer": "synflow"},
    "slimming's penalty, grasp": {"train__regularizer": {"name": "l1-bn-gamma", "strength": 1e-3},
                                  "prune__scorer": {"name": "grasp", "batch_size": 32}},
    "single weights": {"prune__granularity": "weights", "prune__layers": {"conv2": {"fraction": 0.5}}},
    "unpruned": {"prune": False},
}


class Stop(KeyboardInterrupt):
    """What Ctrl-C or SIGTERM raises in a training process."""


def _stop_after(epochs: int):
    def progress(done: int, planned: int) -> None:
        if done == epochs:
            raise Stop()
    return progress


def _computed(result) -> dict:
    metrics = {k: v for k, v in result.metrics.items() if k != "metric_wall_s"}
    return {"status": result.status, "metrics": metrics, "curves": result.curves, "events": result.events}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_cell_stopped_mid_way_resumes_to_the_same_numbers(registry, tmp_path, variant):
    config = changed(CELL, **VARIANTS[variant])
    spec = cell_from_config(config, 0, registry)
    torch.set_num_threads(1)  # bitwise equal for equal thread counts
    straight = run_cell(spec, registry)
    assert straight.status == "ok", straight.traceback
    with pytest.raises(Stop):  # stopped in epoch 4: the checkpoint of epoch 3 is there
        run_cell(WorkOrder(spec, TRAIN, cell_dir=tmp_path), registry, progress=_stop_after(4))
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["parts"]
    assert set(saved) == ({"trainer", "progress"} if variant == "unpruned" else {"pruner", "trainer", "progress"})
    progress = saved["progress"]
    assert progress["step"] == 3 * straight.steps_per_epoch and len(progress["curves"]["epoch"]) == 3
    torch.manual_seed(12345)  # the resumed run must not depend on the state it finds
    seen: list[int] = []
    resumed = run_cell(WorkOrder(spec, RESUME, cell_dir=tmp_path), registry, progress=lambda done, planned: seen.append(done))
    assert seen[0] == 3  # it went on from the checkpoint, not from the first step
    assert resumed.status == "ok", resumed.traceback
    assert _computed(resumed) == _computed(straight)


ROUNDS = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 400, "train_split": 0.5},
    "train": {"epochs": 3, "batch_size": 64, "milestones": ["2ep"], "checkpoint_every": 1},
    "prune": {"scorer": "l1", "target": "smallest", "effector": "mask", "granularity": "weights",
              "scope": "global", "rounds": 3, "fraction": 0.5, "layers": ["conv2", "conv3"],
              "data_order_stability": True, "lmc_points": 3},
    "rewind": "weights@1ep",
    "metrics": [{"name": "excess-error", "severities": [1]}],
}


# Round 0 trains 3 epochs and its second copy 2 (from the rewind point, 1ep); later rounds 2 + 2.
@pytest.mark.parametrize("stop_at, rounds_done, epochs_done", [(7, 1, 5), (12, 2, 9)])
def test_a_rounds_cell_stopped_mid_way_goes_on_with_the_next_round_to_the_same_numbers(registry, tmp_path,
                                                                                       stop_at, rounds_done,
                                                                                       epochs_done):
    spec = cell_from_config(ROUNDS, 0, registry)
    torch.set_num_threads(1)
    straight = run_cell(spec, registry)
    assert straight.status == "ok", straight.traceback
    with pytest.raises(Stop):
        run_cell(WorkOrder(spec, TRAIN, cell_dir=tmp_path), registry, progress=_stop_after(stop_at))
    assert len(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["parts"]["rounds"]["rounds"]) == rounds_done
    seen: list[int] = []
    resumed = run_cell(WorkOrder(spec, RESUME, cell_dir=tmp_path), registry, progress=lambda d, n: seen.append(d))
    assert resumed.status == "ok", resumed.traceback
    assert seen[0] == epochs_done  # it went on from the checkpoint
    assert _computed(resumed) == _computed(straight)
    assert [_no_wall(r.to_json()) for r in resumed.rounds] == [_no_wall(r.to_json()) for r in straight.rounds]


def _no_wall(round_json: dict) -> dict:
    if "metrics" in round_json:
        round_json["metrics"] = {k: v for k, v in round_json["metrics"].items() if k != "metric_wall_s"}
    return round_json


def test_checkpoints_do_not_change_the_hash(registry):
    every = cell_from_config(CELL, 0, registry)
    never = cell_from_config(changed(CELL, train={**CELL["train"], "checkpoint_every": 0}), 0, registry)
    assert every.hash == never.hash and "checkpoint_every" not in json.dumps(every.canonical())


def test_an_unreadable_checkpoint_is_moved_aside_and_the_cell_starts_over(registry, tmp_path):
    spec = cell_from_config(CELL, 0, registry)
    (tmp_path / "checkpoint.pt").write_bytes(b"cut short")
    with pytest.warns(UserWarning, match="could not be used"):
        result = run_cell(WorkOrder(spec, RESUME, cell_dir=tmp_path), registry)
    assert result.status == "ok" and list(tmp_path.glob("checkpoint.pt.corrupt-*"))
    assert _computed(result) == _computed(run_cell(spec, registry))


def test_a_checkpoint_of_the_old_format_is_refused_in_one_line_and_the_cell_trains_again(registry, tmp_path):
    """Format 1 (one dictionary per phase, before parts were registered), as 0.1 wrote it mid-cell."""
    spec = cell_from_config(CELL, 0, registry)
    torch.save({"format": 1, "hash": spec.hash, "phase": "schedule", "step": 4, "trainer": {}, "pruner": {},
                "events": [], "curves": {}, "rng": {}}, tmp_path / "checkpoint.pt")
    with pytest.warns(UserWarning) as caught:
        result = run_cell(WorkOrder(spec, RESUME, cell_dir=tmp_path), registry)
    message = str(caught[0].message)
    assert "\n" not in message and "checkpoint format 1" in message and "starting the cell from its first step" in message
    assert result.status == "ok" and list(tmp_path.glob("checkpoint.pt.corrupt-*"))
    assert _computed(result) == _computed(run_cell(spec, registry))


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def test_a_run_killed_mid_cell_resumes_from_its_checkpoint_and_removes_it(tmp_path):
    suite = tmp_path / "long.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace("epochs = 3", "epochs = 12\ncheckpoint_every = 1")
                     .replace('end = "2ep"', 'end = "10ep"').replace("seeds = 2", "seeds = 1"))
    straight = run_cli("run", "--suite", str(suite), "--out", str(tmp_path / "straight"), "--json")
    assert straight.returncode == 0, straight.stderr
    out = tmp_path / "killed"
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": ""}
    proc = popen_gstbench("run", "--suite", str(suite), "--out", str(out), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while not list(out.glob("cells/*/checkpoint.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    first = {p: _mtime(p) for p in out.glob("cells/*/checkpoint.pt")}
    while all(_mtime(p) == t for p, t in first.items()) and time.time() < deadline:
        time.sleep(0.01)  # an epoch more (the checkpoint written again), and 10 still to train
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoints = list(out.glob("cells/*/checkpoint.pt"))
    assert checkpoints, "the run should have been killed mid-cell"
    step = torch.load(checkpoints[0], weights_only=True)["parts"]["progress"]["step"]
    again = run_cli("run", "--suite", str(suite), "--out", str(out), "--json")
    assert again.returncode == 0, again.stderr
    assert stored_results(out) == stored_results(tmp_path / "straight")
    assert not list(out.glob("cells/*/checkpoint.pt")) and step > 0
