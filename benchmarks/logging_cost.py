"""Benchmark: what each logger plugin costs a quick-scale cell, as a share of its time, in one run.

Trains the quick tradeoff suite's first pruned cell (Prune_L, mask) without a logger and
with each of tensorboard, mlflow (SQLite in the run directory) and wandb (offline), in
rotated order for ``--repeats`` rounds, each logger into its own run directory kept across
rounds (as a run's cells share one). Prints each setting's median cell time and its ratio
to no logger, the first cell apart (MLflow creates its database then), and the time spent
inside the logger's own calls, timed directly (a figure that machine noise in the cell
times cannot hide). Checks that logging changed no result.

    python benchmarks/logging_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from gstbench.engine import run_cell
from gstbench.plugins import get_registry
from gstbench.plan.suite import load_suite
from gstbench.engine.tracking import build_tracker, logged_run
from gstbench.plan.log_targets import LogTarget

import tiny

SETTINGS = ("none", "tensorboard", "mlflow", "wandb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    tiny.add_flag(parser)
    args = parser.parse_args()
    settings = SETTINGS[:2] if args.tiny else SETTINGS  # mlflow's and wandb's own start-up: minutes, not seconds
    if args.tiny:
        args.repeats = 1
    torch.set_num_threads(1)
    registry = get_registry()
    suite = load_suite(registry, "tradeoff", seeds=1, overrides=tiny.overrides(args.tiny))
    spec = next(s for s in suite.cells if s.prune is not None and s.prune.target.id.endswith("largest"))
    times: dict[str, list[float]] = {s: [] for s in settings}
    inside: dict[str, list[float]] = {s: [] for s in settings}  # seconds in the logger's own calls, per cell
    outcomes = {}
    with tempfile.TemporaryDirectory() as root:
        dirs = {s: Path(root) / s for s in settings}
        for d in dirs.values():
            d.mkdir()
        for repeat in range(args.repeats):
            k = repeat % len(settings)
            for setting in settings[k:] + settings[:k]:  # rotated: no setting always runs first
                tracker, logged = None, None
                t0 = time.perf_counter()
                if setting != "none":
                    tracker = build_tracker(registry, [LogTarget(setting)])
                    logged = logged_run(spec, suite.name, suite.scale, dirs[setting])
                result = run_cell(spec, registry, tracker=tracker, logged=logged)
                times[setting].append(time.perf_counter() - t0)
                inside[setting].append(tracker.seconds if tracker is not None else 0.0)
                assert result.ok, result.error
                assert tracker is None or len(tracker.loggers) == 1, f"{setting} failed: see the warning"
                metrics = {k: v for k, v in result.metrics.items() if k != "metric_wall_s"}
                outcomes.setdefault(setting, (metrics, result.curves, result.events))
    assert all(o == outcomes["none"] for o in outcomes.values()), "logging changed a result"
    base = statistics.median(times["none"])
    print(f"quick tradeoff cell ({spec.train.epochs} epochs, 1 thread), median of {args.repeats}:")
    for setting, ts in times.items():
        later = statistics.median(ts[1:]) if len(ts) > 1 else ts[0]
        spent = statistics.median(inside[setting][1:] or inside[setting])
        print(f"  {setting:12s} {statistics.median(ts):7.2f} s   ratio {statistics.median(ts) / base:.3f}   "
              f"first cell {ts[0]:6.2f} s, later cells (median) {later:6.2f} s   inside the logger: first cell "
              f"{inside[setting][0]:.2f} s, later {spent:.3f} s ({100 * spent / base:.2f}% of a cell)")


if __name__ == "__main__":
    main()
