"""gstbench-tensorboard: a logger that writes each cell as a TensorBoard run (``--log tensorboard[:LOGDIR]``).

Event files go to ``LOGDIR/<suite>/<configuration>/<cell hash>`` (default LOGDIR: the run
directory's ``tensorboard/``), so ``tensorboard --logdir LOGDIR`` shows one run per cell,
grouped by suite and configuration: per-epoch curves (``train/``, ``test/``, ``lr``), every
pruning event (``prune/``), and at the end the final metrics (``final/``) with the cell's
flattened config in the HParams tab.
"""

from __future__ import annotations

import re
from pathlib import Path

import gstbench
from gstbench.names import inside

__version__ = "0.1.0"


def run_directory(logdir: Path, run) -> Path:
    group = re.sub(r"[^A-Za-z0-9.=-]+", "_", run.label).strip("_") or "configuration"
    return logdir / run.suite / f"{group}-{run.configuration[:8]}" / run.name


class TensorBoardLogger:
    def __init__(self, logdir: str | None):
        self.logdir = Path(logdir) if logdir else None
        self.writer = None
        self.run = None
        self.last_step = 0

    def start(self, run) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run = run
        root = self.logdir or run.directory / "tensorboard"
        directory = inside(root, run_directory(root, run), "the tensorboard log directory")
        self.writer = SummaryWriter(log_dir=str(directory), flush_secs=30)
        table = "\n".join(f"| {k} | {v} |" for k, v in run.config.items())
        self.writer.add_text("config", f"suite {run.suite} ({run.scale}), {run.group}, seed {run.seed}\n\n"
                                       f"| key | value |\n|---|---|\n{table}", 0)

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.last_step = max(self.last_step, step)

    def finish(self, status: str, metrics: dict[str, float], error: str | None) -> None:
        from torch.utils.tensorboard.summary import hparams

        final = {f"final/{k}": v for k, v in metrics.items()}
        for key, value in final.items():
            self.writer.add_scalar(key, value, self.last_step)
        if error:
            self.writer.add_text("error", error, self.last_step)
        params = {**{k: v for k, v in self.run.config.items()}, "seed": self.run.seed, "status": status}
        for summary in hparams(params, final):  # the HParams tab: config against final metrics
            self.writer.file_writer.add_summary(summary)
        self.writer.close()


def tensorboard(target: str | None = None):
    """TensorBoard event files, one run per cell (target: the log directory; default <run dir>/tensorboard)."""
    return TensorBoardLogger(target)


@gstbench.hookimpl
def register_loggers(register):
    register("tensorboard", tensorboard)
