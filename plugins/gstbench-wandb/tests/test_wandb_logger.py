"""gstbench-wandb: offline runs (no account, no network) checked from the run files wandb writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

from gstbench.plan.config import short_hash
from gstbench.store.store import Store
from gstbench.testing import files_outside
from gstbench.testing.forkserver import run_gstbench

SUITE = """
name = "wandb-tiny"
seeds = 2
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 400, train_split = 0.5 }
train = { epochs = 3, batch_size = 50 }
prune = { scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { conv3 = { fraction = 0.5 } } }
[scales.quick]
"""

BLOCK = 32768  # the .wandb file is a LevelDB-style log of protobuf records in 32 KiB blocks


def records(path: Path) -> list:
    """Every record of an offline run file, parsed with wandb's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2  # here, not at collection: every test worker would import wandb

    data, pos, chunks, out = path.read_bytes(), 7, b"", []  # 7: the ':W&B' header, its magic and version
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        chunks += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            out.append(record)
            chunks = b""
    return out


def items(update) -> dict:
    """A record's items by key (wandb keeps a key with '/' as its parts, in nested_key)."""
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in update}


def gstbench(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["GSTBENCH_LOAD_PLUGINS"] = "wandb"
    return run_gstbench(*args, env=env, timeout=300)


def test_wandb_is_listed_by_gstbench_plugins():
    proc = gstbench("plugins", "--json")
    found = [p for p in json.loads(proc.stdout) if p["name"] == "wandb"]
    assert found and found[0]["status"] == "loaded" and found[0]["provides"] == {"loggers": ["wandb"]}


def test_every_cell_is_an_offline_wandb_run_with_config_history_and_summary(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    proc = gstbench("run", "--suite", str(suite), "--out", str(out), "--log", "wandb")
    assert proc.returncode == 0, proc.stderr
    assert files_outside(tmp_path, suite, out) == []
    stored = {short_hash(cell.result.hash): cell.result for cell in Store(out).iter_cells()}
    files = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert sorted(f.stem.removeprefix("run-") for f in files) == sorted(stored)
    groups = set()
    for file in files:
        result = stored[file.stem.removeprefix("run-")]
        found = records(file)
        run = next(r.run for r in found if r.WhichOneof("record_type") == "run")
        assert (run.project, run.display_name, run.job_type) == ("wandb-tiny", short_hash(result.hash), "quick")
        groups.add(run.run_group)
        config = items(run.config.update)
        assert config["train.epochs"] == 3 and config["seed"] == result.seed
        history = [items(r.history.item) for r in found if r.WhichOneof("record_type") == "history"]
        epochs = [h for h in history if "test/acc" in h]
        assert [(h["_step"], h["test/acc"]) for h in epochs] == list(zip(result.curves.step, result.curves.test_acc))
        events = [h for h in history if "prune/instability" in h]
        assert [h["prune/instability"] for h in events] == [e.instability for e in result.events]
        summary = {}
        for r in found:
            if r.WhichOneof("record_type") == "summary":
                summary.update(items(r.summary.update))
        assert summary["best_test_acc"] == result.metrics["best_test_acc"] and summary["status"] == "ok"
    assert len(groups) == 1  # both seeds in their configuration's group
