"""Logger plugins (register_loggers): what a logger receives, in pool workers too, and that a failing one loses nothing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from gstbench.plan.config import short_hash
from gstbench.store.store import Store
from gstbench.testing import stored_results
from gstbench.testing.forkserver import run_gstbench

SUITE = """
name = "tracked"
seeds = 2
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 400, train_split = 0.5 }
train = { epochs = 3, batch_size = 50 }
prune = { scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { conv3 = { fraction = 0.5 } } }
[scales.quick]
"""

# A logger plugin as a user writes one: it records everything it is given to a JSON file per cell.
PLUGIN = '''
import json, os
from pathlib import Path
from gstbench import hookimpl


class Recorder:
    def __init__(self, target):
        self.folder = Path(target)
        self.seen = {"log": []}

    def start(self, run):
        self.run = run
        self.seen["start"] = {"name": run.name, "hash": run.hash, "suite": run.suite, "scale": run.scale,
                              "configuration": run.configuration, "group": run.group, "seed": run.seed,
                              "config": run.config, "directory": str(run.directory), "pid": os.getpid()}

    def log(self, step, values):
        self.seen["log"].append([step, values])

    def finish(self, status, metrics, error):
        self.seen["finish"] = {"status": status, "metrics": metrics, "error": error}
        (self.folder / f"{self.run.name}.json").write_text(json.dumps(self.seen))


class Broken:
    def start(self, run):
        pass

    def log(self, step, values):
        raise ConnectionError("tracking server unreachable")

    def finish(self, status, metrics, error):
        raise AssertionError("never called: dropped after its first failure")


def recorder(target=None):
    """Records what it receives."""
    return Recorder(target)


def broken(target=None):
    """Fails at its first log."""
    return Broken()


def unbuildable(target=None):
    """Fails to start."""
    raise RuntimeError("no such tracking backend")


@hookimpl
def register_loggers(register):
    register("recorder", recorder)
    register("broken", broken)
    register("unbuildable", unbuildable)
'''


def gstbench(*args: str, plugins: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "", "OMP_NUM_THREADS": "1", **env}
    if plugins is not None:
        environ["GSTBENCH_PLUGINS_DIR"] = str(plugins)
    return run_gstbench(*args, env=environ, timeout=300)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "trackers.py").write_text(PLUGIN)
    return folder


def test_pool_workers_log_curves_events_and_final_metrics_and_a_failing_logger_loses_nothing(tmp_path, plugin_dir):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    records = tmp_path / "records"
    records.mkdir()
    out = tmp_path / "run"
    proc = gstbench("run", "--suite", str(suite), "--out", str(out), "--executor", "pool", "--workers", "2",
                    "--log", f"recorder:{records}", "--log", "broken", "--log", "trackers:unbuildable",
                    plugins=plugin_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    # one warning per cell for each failing logger, naming it; both cells are stored ok
    assert sum("logger 'trackers:broken' failed in log: ConnectionError: tracking server unreachable" in line
               for line in lines) == 2
    assert sum("logger 'trackers:unbuildable' could not start: RuntimeError" in line for line in lines) == 2
    stored = {cell.result.hash: cell.result for cell in Store(out).iter_cells()}
    assert len(stored) == 2 and all(r.ok for r in stored.values())
    assert all(r.environment.plugins == {"gstbench": "0.1.0"} for r in stored.values())  # for the HTML report

    seen = {p.stem: json.loads(p.read_text()) for p in records.glob("*.json")}
    assert set(seen) == {short_hash(h) for h in stored}
    for name, record in seen.items():
        result = next(r for h, r in stored.items() if h.startswith(name))
        start = record["start"]
        assert start["hash"] == result.hash and start["suite"] == "tracked" and start["scale"] == "quick"
        assert start["seed"] == result.seed and start["pid"] != os.getpid()  # in a worker process
        assert start["config"]["train.epochs"] == 3 and start["config"]["prune.scorer.id"] == "gstbench:l2"
        assert start["directory"] == str(out.resolve())
        epochs = [(step, v) for step, v in record["log"] if "epoch" in v]
        assert [s for s, _ in epochs] == result.curves.step  # each epoch at its step
        assert [v["test/acc"] for _, v in epochs] == result.curves.test_acc
        assert [v["train/loss"] for _, v in epochs] == result.curves.train_loss
        events = [(step, v) for step, v in record["log"] if "prune/t_pre" in v]
        assert [s for s, _ in events] == [e.step for e in result.events]
        for (_, v), e in zip(events, result.events):
            assert (v["prune/t_pre"], v["prune/t_post"], v["prune/instability"]) == (e.t_pre, e.t_post, e.instability)
            assert v["prune/conv3/removed"] == e.layers["conv3"].count
            assert v["prune/conv3/remaining"] == e.layers["conv3"].remaining
        assert record["finish"]["status"] == "ok" and record["finish"]["error"] is None
        assert record["finish"]["metrics"]["best_test_acc"] == result.metrics["best_test_acc"]
        assert record["finish"]["metrics"]["remaining_filters/conv3"] == result.metrics["remaining_filters"]["conv3"]
    # both seeds of the one configuration share its group
    assert len({r["start"]["group"] for r in seen.values()}) == 1

    # logging changes no result: the same cells without loggers, one thread, in this process's executor
    plain = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "plain"), "--json")
    assert plain.returncode == 0, plain.stderr
    assert stored_results(out) == stored_results(tmp_path / "plain")


def test_a_suites_logging_table_selects_loggers_and_a_bad_name_is_one_line(tmp_path, plugin_dir):
    records = tmp_path / "records"
    records.mkdir()
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace('seeds = 2', 'seeds = 1').replace(
        "[scales.quick]", f'[logging]\nrecorder = "{records}"\nbroken = false\n[scales.quick]'))
    proc = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--json", plugins=plugin_dir)
    assert proc.returncode == 0, proc.stderr
    assert len(list(records.glob("*.json"))) == 1 and "broken" not in proc.stderr

    suite.write_text(SUITE.replace("[scales.quick]", "[logging]\ntensorbord = true\n[scales.quick]"))
    bad = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "bad"), plugins=plugin_dir)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert f"in {suite}" in bad.stderr and "logging.tensorbord" in bad.stderr and "unknown logger" in bad.stderr
    flag = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "bad"), "--log", "nosuch")
    assert flag.returncode == 2 and "--log" in flag.stderr and "unknown logger 'nosuch'" in flag.stderr
    assert not (tmp_path / "bad").exists()  # refused before anything was written
