"""gstbench-mlflow: cells logged to the default SQLite store read back with mlflow.search_runs and the metric history."""

from __future__ import annotations

import json
import os
import subprocess

from gstbench.plan.config import short_hash
from gstbench.store.store import Store
from gstbench.testing import files_outside
from gstbench.testing.forkserver import run_gstbench

SUITE = """
name = "mlflow-tiny"
seeds = 2
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 400, train_split = 0.5 }
train = { epochs = 3, batch_size = 50 }
prune = { scorer = "l2", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { conv3 = { fraction = 0.5 } } }
[scales.quick]
"""


def gstbench(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "mlflow", **env}
    return run_gstbench(*args, env=environ, timeout=300)


def test_mlflow_is_listed_by_gstbench_plugins():
    proc = gstbench("plugins", "--json")
    found = [p for p in json.loads(proc.stdout) if p["name"] == "mlflow"]
    assert found and found[0]["status"] == "loaded" and found[0]["provides"] == {"loggers": ["mlflow"]}


def test_every_cell_is_an_mlflow_run_in_a_sqlite_store_in_the_run_directory_from_pool_workers(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "run"
    # two pool workers write to one SQLite database at once
    proc = gstbench("run", "--suite", str(suite), "--out", str(out), "--log", "mlflow", "--executor", "pool",
                    "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "INFO" not in proc.stderr  # MLflow's and alembic's chatter stays out of the progress bar
    assert files_outside(tmp_path, suite, out) == []
    stored = {cell.result.hash: cell.result for cell in Store(out).iter_cells()}
    import mlflow  # here, not at collection: every test worker would import it (1.4 s), one uses it
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{out / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["mlflow-tiny"])
    assert sorted(runs["tags.mlflow.runName"]) == sorted(short_hash(h) for h in stored)
    assert set(runs["status"]) == {"FINISHED"}
    assert runs["tags.gstbench.configuration"].nunique() == 1 and runs["tags.gstbench.group"].nunique() == 1
    assert set(runs["params.train.epochs"]) == {"3"} and set(runs["params.prune.scorer.id"]) == {"gstbench:l2"}
    client = MlflowClient(tracking_uri=uri)
    for _, row in runs.iterrows():
        result = stored[row["tags.gstbench.hash"]]
        assert row["metrics.best_test_acc"] == result.metrics["best_test_acc"]
        assert row["tags.gstbench.seed"] == str(result.seed)
        history = client.get_metric_history(row["run_id"], "test/acc")
        assert [(m.step, m.value) for m in history] == list(zip(result.curves.step, result.curves.test_acc))
        drops = client.get_metric_history(row["run_id"], "prune/t_post")
        assert [(m.step, m.value) for m in drops] == [(e.step, e.t_post) for e in result.events]


def test_an_unreachable_tracking_server_warns_once_per_cell_and_loses_nothing(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("seeds = 2", "seeds = 1"))
    proc = gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--log", "mlflow:http://127.0.0.1:9",
                    MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="5")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    warned = [line for line in proc.stderr.splitlines() if "logger 'mlflow:mlflow' failed in start" in line]
    assert len(warned) == 1, proc.stderr
    assert [c.result.status for c in Store(tmp_path / "run").iter_cells()] == ["ok"]
