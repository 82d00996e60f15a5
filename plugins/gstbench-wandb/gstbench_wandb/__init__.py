"""gstbench-wandb: a logger that records each cell as a Weights & Biases run (``--log wandb[:DIR]``).

Offline by default: no account and no network; the run files go to ``DIR/wandb/``
(default DIR: the run directory), and ``wandb sync`` uploads them later. ``WANDB_MODE=online``
(with a login) logs live instead. The project is the suite, the group the configuration,
the job type the scale, and the run's name and id the cell's hash; its config is the cell's
flattened config, its history the per-epoch curves and pruning events at their step, and
its summary the final metrics.
"""

from __future__ import annotations

import os
from pathlib import Path

import gstbench

__version__ = "0.1.0"


class WandbLogger:
    def __init__(self, directory: str | None):
        self.directory = Path(directory) if directory else None
        self.run = None

    def start(self, run) -> None:
        import wandb

        directory = self.directory or run.directory
        directory.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(mode=os.environ.get("WANDB_MODE", "offline"), dir=str(directory), project=run.suite,
                              group=run.group, job_type=run.scale, name=run.name, id=run.name, resume="allow",
                              config={**run.config, "seed": run.seed, "configuration": run.configuration},
                              settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def finish(self, status: str, metrics: dict[str, float], error: str | None) -> None:
        self.run.summary.update({**metrics, "status": status, **({"error": error} if error else {})})
        self.run.finish(exit_code=0 if status == "ok" else 1)


def wandb(target: str | None = None):
    """Weights & Biases runs, one per cell, offline by default (target: the directory; default the run directory)."""
    return WandbLogger(target)


@gstbench.hookimpl
def register_loggers(register):
    register("wandb", wandb)
