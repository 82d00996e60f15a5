"""Benchmark: what mid-cell checkpoints cost a quick-scale cell, as a share of its time, in one run.

Trains the quick tradeoff suite's first pruned cell (Prune_L, mask) without checkpoints and
with a checkpoint every epoch and every 5 epochs, in rotated order (``--repeats`` rounds), and
prints the median time of each and its ratio to no checkpoints. The results are checked
to be equal bitwise. The rule written before measuring (issue 16): checkpoints stay off at
the quick scale if saving every epoch costs more than 2%.

    python benchmarks/checkpoint_cost.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch

from gstbench.engine import run_cell
from gstbench.engine.order import TRAIN, WorkOrder
from gstbench.plugins import get_registry
from gstbench.plan.suite import load_suite

import tiny


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.repeats = 1
    torch.set_num_threads(1)
    registry = get_registry()
    suite = load_suite(registry, "tradeoff", seeds=1, overrides=tiny.overrides(args.tiny))
    spec = next(s for s in suite.cells if s.prune is not None and s.prune.target.id.endswith("largest"))
    times: dict[int, list[float]] = {0: [], 1: [], 5: []}
    outcomes = {}
    settings = list(times)
    for repeat in range(args.repeats):
        for every in settings[repeat % 3:] + settings[:repeat % 3]:  # rotated: no setting always runs first
            cell = dataclasses.replace(spec, train=dataclasses.replace(spec.train, checkpoint_every=every))
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                result = run_cell(WorkOrder(cell, TRAIN, cell_dir=d), registry)
                times[every].append(time.perf_counter() - t0)
            assert result.ok, result.error
            metrics = {k: v for k, v in result.metrics.items() if k != "metric_wall_s"}
            outcomes.setdefault(every, (metrics, result.curves, result.events))
    assert all(o == outcomes[0] for o in outcomes.values()), "checkpoints changed a result"
    base = statistics.median(times[0])
    print(f"quick tradeoff cell ({spec.train.epochs} epochs, 1 thread), median of {args.repeats}:")
    for every, ts in times.items():
        label = "no checkpoints" if every == 0 else f"checkpoint every {every} epoch{'s' if every > 1 else ''}"
        print(f"  {label:28s} {statistics.median(ts):7.2f} s   ratio {statistics.median(ts) / base:.3f}")


if __name__ == "__main__":
    main()
