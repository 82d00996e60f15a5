"""Benchmark: what the flatness metrics cost in a quick cell, and what trace deflation buys.

1. Runs quick tradeoff cells with the six flatness metrics at their defaults and prints
   the share of each cell's wall time they took (the budget is 15%).
2. On the trained unpruned quick model, estimates Tr(H) with plain Hutchinson and with the
   default deflated estimator at the same number of Hessian-vector products, over
   several probe seeds, and prints the ratio of their standard errors and of their
   spreads across seeds.

    python benchmarks/flatness_cost.py [--cells 3] [--seeds 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile

import torch

from gstbench.builtin import flatness
from gstbench.engine.evaluation import eval_mode
from gstbench.builtin.metrics import LANCZOS_ITERATIONS, PROBES, SAMPLES
from gstbench.plan.parse import component_ref
from gstbench.engine import run_cell
from gstbench.store.parents import ParentCache
from gstbench.plugins import get_registry
from gstbench.plan.suite import load_suite

import tiny

FLATNESS = ["hessian-trace", "hessian-topk", "grad-second-moment", "grad-covariance-trace", "tic-proxy",
            "eps-sharpness"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=3, help="quick tradeoff cells to time")
    parser.add_argument("--seeds", type=int, default=5, help="probe seeds for the estimator comparison")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.cells, args.seeds = 1, 2
    registry = get_registry()
    metrics = tuple(component_ref(registry, "metrics", m, "metrics", None) for m in FLATNESS)
    cells = [dataclasses.replace(c, metrics=metrics) for c in load_suite(registry, "tradeoff", seeds=1, overrides=tiny.overrides(args.tiny)).cells]
    print(f"{'cell':<28} {'wall s':>7} {'metrics s':>9} {'share':>6}")
    shares = []
    for spec in cells[:args.cells]:
        result = run_cell(spec, registry)
        assert result.ok, result.error
        share = result.timing["metrics_s"] / result.wall_s
        shares.append(share)
        label = f"{spec.prune.target.label} {spec.prune.layers[0][1].period}" if spec.prune else "unpruned"
        print(f"{label:<28} {result.wall_s:7.2f} {result.timing['metrics_s']:9.2f} {100 * share:5.1f}%")
    print(f"flatness metrics: {100 * statistics.mean(shares):.1f}% of a quick cell on average "
          f"(max {100 * max(shares):.1f}%; budget 15%)")

    # A trained quick model for the estimator comparison: the unpruned cell's, from the parent cache.
    unpruned = next(c for c in cells if c.prune is None)
    cache = ParentCache(tempfile.mkdtemp())
    run_cell(dataclasses.replace(unpruned, metrics=()), registry, parents=cache)
    data = registry.load_data(unpruned.dataset)
    model = registry.build_model(unpruned.model, data)
    model.load_state_dict(cache.load(unpruned, torch.device("cpu"), set())["final"])

    products = LANCZOS_ITERATIONS + PROBES
    plain, deflated = [], []
    with eval_mode(model):
        x, y = flatness.fixed_sample(data.x_test, data.y_test, SAMPLES, 0)
        hessian = flatness.LossHessian(model, x, y, 512)
        for seed in range(args.seeds):
            plain.append(flatness.hutchinson_trace(hessian, products, seed))
            lz = flatness.lanczos(hessian, LANCZOS_ITERATIONS, seed)
            deflated.append(flatness.hutchinson_trace(hessian, PROBES, seed + 1, lz.basis, sum(lz.alphas)))
    for name, runs in (("plain Hutchinson", plain), ("deflated (default)", deflated)):
        values = [t for t, _ in runs]
        print(f"{name:<20} {products} HVPs: trace {statistics.mean(values):9.1f}, mean SE "
              f"{statistics.mean(se for _, se in runs):7.1f}, spread over {args.seeds} seeds "
              f"{statistics.stdev(values):7.1f}")
    ratio_se = statistics.mean(se for _, se in plain) / statistics.mean(se for _, se in deflated)
    ratio_sd = statistics.stdev(t for t, _ in plain) / statistics.stdev(t for t, _ in deflated)
    print(f"standard error, plain / deflated at equal cost: {ratio_se:.1f}x (spread across seeds: {ratio_sd:.1f}x)")


if __name__ == "__main__":
    main()
