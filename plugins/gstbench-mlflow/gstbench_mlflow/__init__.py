"""gstbench-mlflow: a logger that records each cell as an MLflow run (``--log mlflow[:TRACKING_URI]``).

The default tracking store is a SQLite database in the run directory (``mlflow.db``), so
``mlflow ui --backend-store-uri sqlite:///<run dir>/mlflow.db`` shows the runs. The
experiment is the suite; each run is named after the cell's hash and tagged with its
configuration (``gstbench.group``, ``gstbench.configuration``), scale and seed, so the UI
groups seeds of one configuration. Parameters are the cell's flattened config; metrics are
the per-epoch curves and pruning events at their step (written every ``FLUSH_S``
seconds, in one transaction), then the final metrics. A cell
resumed from its checkpoint continues the run it started (still RUNNING) instead of a new one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import gstbench

__version__ = "0.1.0"

PARAM_CHARS = 6000  # MLflow's limit on a parameter's value
FLUSH_S = 2.0  # metrics reach the store at most this long after their epoch


class MlflowLogger:
    def __init__(self, tracking_uri: str | None):
        self.tracking_uri = tracking_uri
        self.client = None
        self.run_id = None
        self.lock = contextlib.nullcontext()
        self.pending: list = []  # metrics not yet written
        self.flushed = time.monotonic()

    def start(self, run) -> None:
        from filelock import FileLock
        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # their INFO lines would drown the progress bar
            logging.getLogger(name).setLevel(logging.WARNING)
        uri = self.tracking_uri or f"sqlite:///{(run.directory / 'mlflow.db').resolve()}"
        # SQLite takes one writer at a time: pool workers take turns by a file lock beside the
        # database (a tracking server orders its writers itself, but creating the experiment still
        # takes the run directory's lock once).
        if uri.startswith("sqlite:///"):
            self.lock = FileLock(str(Path(uri.removeprefix("sqlite:///")).with_suffix(".lock")))
        lock = self.lock if uri.startswith("sqlite:///") else FileLock(str(run.directory / "mlflow.lock"))
        with lock:  # creating the database and the experiment: one process at a time
            self.client = client = MlflowClient(tracking_uri=uri)
            experiment = client.get_experiment_by_name(run.suite)
            if experiment is None:
                artifacts = (run.directory / "mlflow-artifacts").resolve().as_uri()
                experiment_id = client.create_experiment(run.suite, artifact_location=artifacts)
            else:
                experiment_id = experiment.experiment_id
        with self.lock:
            self._start_run(client, experiment_id, run)

    def _start_run(self, client, experiment_id: str, run) -> None:
        from mlflow.entities import Param, RunTag

        tags = {"gstbench.hash": run.hash, "gstbench.suite": run.suite, "gstbench.scale": run.scale,
                "gstbench.configuration": run.configuration, "gstbench.group": run.group,
                "gstbench.seed": str(run.seed)}
        unfinished = client.search_runs([experiment_id], f"tags.`gstbench.hash` = '{run.hash}' and "
                                                         f"attributes.status = 'RUNNING'", max_results=1)
        if unfinished:  # a cell resumed from its checkpoint goes on in its run
            self.run_id = unfinished[0].info.run_id
            return
        self.run_id = client.create_run(experiment_id, run_name=run.name, tags=tags).info.run_id
        params = [Param(k, str(v)[:PARAM_CHARS]) for k, v in run.config.items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters a batch
            client.log_batch(self.run_id, params=params[i:i + 100])
        client.log_batch(self.run_id, tags=[RunTag("mlflow.note.content", f"{run.group}, seed {run.seed}")])

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, step) for k, v in values.items()]
        if time.monotonic() - self.flushed > FLUSH_S:
            self._flush()

    def _flush(self) -> None:
        """One transaction for what came since the last (each costs ~15 ms on SQLite: per epoch, 5% of a cell)."""
        with self.lock:
            for i in range(0, len(self.pending), 1000):  # MLflow takes at most 1000 metrics a batch
                self.client.log_batch(self.run_id, metrics=self.pending[i:i + 1000])
        self.pending, self.flushed = [], time.monotonic()

    def finish(self, status: str, metrics: dict[str, float], error: str | None) -> None:
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.pending += [Metric(k, v, now, 0) for k, v in metrics.items()]
        self._flush()
        with self.lock:
            if error:
                self.client.log_batch(self.run_id, tags=[RunTag("gstbench.error", error[:5000])])
            self.client.set_terminated(self.run_id, "FINISHED" if status == "ok" else "FAILED")


def mlflow(target: str | None = None):
    """MLflow runs, one per cell (target: a tracking URI; default sqlite:///<run dir>/mlflow.db)."""
    return MlflowLogger(target)


@gstbench.hookimpl
def register_loggers(register):
    register("mlflow", mlflow)
