"""Analysis: how faithful a suite's quick scale is to the paper's regime (the criteria of docs/quick-scale.md).

Measures, on seeds disjoint from every seed a verdict is reported on (default 1000-1002),
the criteria fixed before any correlation or claim verdict was looked at:

(a) the scorer orders removal cost smallest < random < largest in every pruned layer
    (benchmarks/scorer_removal_cost.py, at the first and the last pruning event);
(b) at the first pruning event the unpruned network has reached >= 80% of its final test
    accuracy (every seed);
(c) the schedule's proportions: last events and learning-rate drops as shares of training
    (the paper: last events at 46% and 85%, drops at 46% and 92%), the fractions per layer;
(d) optimizer steps between events, and whether test accuracy recovers before the next
    event (Prune_L at each rate, the hardest case: accuracy just before the next event, or
    at the end, against t_pre);
(e) unpruned: train accuracy 100% and a train-test gap of at least 5 points;
(f) the suite's time: one cell of every configuration on the first seed, times the
    suite's seed count (an estimate; docs/quick-scale.md gives the measured run).

It prints no correlation, no difference between targets' accuracies and no verdict.

    python benchmarks/quick_scale_criteria.py [--suite tradeoff] [--seeds 1000-1002] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from gstbench.cell_result import Curves
from gstbench.config import steps_to_int
from gstbench.engine import run_cell
from gstbench.plugins import get_registry
from gstbench.seeds import parse_seed_range
from gstbench.suite import load_suite

from scorer_removal_cost import removal_costs  # noqa: E402 (same folder)

MIN_SHARE_AT_FIRST_EVENT = 0.8
MIN_GAP = 0.05
RECOVERED_WITHIN = 0.01  # a point of test accuracy


def _label(spec) -> str:
    if spec.prune is None:
        return "unpruned"
    period = ",".join(sorted({s.period for _, s in spec.prune.layers}))
    return f"{spec.prune.target.id.split(':')[-1]} {period}"


def _accuracy_before(curves: Curves, step: int) -> float | None:
    """Test accuracy at the last end-of-epoch evaluation at or before ``step``."""
    seen = [a for s, a in zip(curves.step, curves.test_acc) if s <= step and a is not None]
    return seen[-1] if seen else None


def criteria(suite_name: str, seeds: list[int]) -> dict[str, Any]:
    registry = get_registry()
    suite = load_suite(registry, suite_name, seeds=seeds)
    n_suite_seeds = len(load_suite(registry, suite_name).seeds)
    configs: dict[str, list] = {}
    for spec in suite.cells:
        configs.setdefault(spec.config_hash, []).append(spec)
    results: dict[tuple[str, int], dict] = {}
    times: dict[str, float] = {}
    for key, specs in configs.items():
        first = specs[0]
        for spec in specs if first.prune is None else specs[:1]:  # all seeds unpruned; one seed per pruned config
            t0 = time.perf_counter()
            results[(key, spec.seed)] = run_cell(spec, registry)
            if spec is first:
                times[_label(spec)] = time.perf_counter() - t0
    failed = [k for k, r in results.items() if r.status != "ok"]
    if failed:
        raise SystemExit(f"cells failed: {[results[k]['error'] for k in failed]}")
    unpruned_key = next(k for k, s in configs.items() if s[0].prune is None)
    pruned = {k: s[0] for k, s in configs.items() if s[0].prune is not None}
    spe, total = next(iter(results.values())).steps_per_epoch, next(iter(results.values())).total_steps
    event_steps = {k: [e.step for e in results[(k, s.seed)].events] for k, s in pruned.items()}
    first_event = min(min(v) for v in event_steps.values())

    # (b) and (e): the unpruned network on every criteria seed
    share, train_acc, gap = [], [], []
    for seed in seeds:
        r = results[(unpruned_key, seed)]
        share.append(_accuracy_before(r.curves, first_event) / r.metrics["final_test_acc"])
        train_acc.append(r.metrics["train_acc"])
        gap.append(r.metrics["gap"])

    # (c) proportions of one pruned spec per rate
    spec0 = next(iter(pruned.values()))
    milestones = list(spec0.train.milestones)
    proportions = {"milestones": [round(100 * steps_to_int(m, spe, total) / total, 1) for m in milestones],
                   "layers": {}}
    for k, spec in pruned.items():
        for name, sched in spec.prune.layers:
            layer_steps = sorted({e.step for e in results[(k, spec.seed)].events if name in e.layers})
            proportions["layers"].setdefault(name, {"fraction": sched.fraction, "by_period": {}})
            proportions["layers"][name]["by_period"][sched.period] = {
                "events": len(layer_steps), "first_%": round(100 * layer_steps[0] / total, 1),
                "last_%": round(100 * layer_steps[-1] / total, 1),
                "per_event_%": round(100 * sched.fraction / len(layer_steps), 2)}

    # (d) steps between events; recovery of Prune_L at each rate
    spacing, recovery = {}, {}
    for k, spec in pruned.items():
        steps = event_steps[k]
        gaps = [b - a for a, b in zip(steps, steps[1:])] + [total - steps[-1]]
        spacing[_label(spec)] = {"events": len(steps), "min_steps_between": min(gaps[:-1] or gaps),
                                 "steps_after_last": gaps[-1]}
        if spec.prune.target.id.endswith(":largest"):
            r = results[(k, spec.seed)]
            shortfalls = []
            for i, e in enumerate(r.events):
                nxt = r.events[i + 1].step if i + 1 < len(r.events) else total
                before = _accuracy_before(r.curves, nxt)
                shortfalls.append(e.t_pre - before if before is not None else float("nan"))
            recovery[_label(spec)] = {
                "median_shortfall_points": round(100 * statistics.median(shortfalls), 2),
                "recovered_share": round(sum(s <= RECOVERED_WITHIN for s in shortfalls) / len(shortfalls), 3)}

    cells_per_config = {_label(s[0]): n_suite_seeds for s in configs.values()}
    estimate = sum(times[label] * n for label, n in cells_per_config.items())
    costs = removal_costs(suite_name, seeds)
    return {
        "suite": suite_name, "seeds": seeds, "steps_per_epoch": spe, "total_steps": total,
        "a_scorer": {"suite_scorer": spec0.prune.scorer.id, "ordered": costs["ordered"], "chosen": costs["chosen"]},
        "b_first_event": {"step": first_event, "share_of_final": [round(s, 3) for s in share],
                          "pass": min(share) >= MIN_SHARE_AT_FIRST_EVENT},
        "c_proportions": proportions,
        "d_recovery": {"spacing": spacing, "recovery_largest": recovery},
        "e_fit": {"train_acc": [round(a, 4) for a in train_acc], "gap_points": [round(100 * g, 2) for g in gap],
                  "pass": min(train_acc) >= 0.9995 and min(gap) >= MIN_GAP},
        "f_time": {"one_cell_s": {k: round(v, 1) for k, v in times.items()},
                   "estimated_suite_s": round(estimate, 1), "cells": sum(cells_per_config.values()),
                   "pass": estimate <= 600},
        "removal_costs": costs["rows"],
    }


def render(c: dict[str, Any]) -> str:
    lines = [f"suite {c['suite']} (quick), criteria seeds {c['seeds']}: {c['steps_per_epoch']} steps per epoch, "
             f"{c['total_steps']} steps in all"]
    a = c["a_scorer"]
    lines.append("(a) S < R < L in every pruned layer at the first and last event: "
                 + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in a["ordered"].items())
                 + f" -> {a['chosen'] or 'none'} (the suite uses {a['suite_scorer']})")
    b = c["b_first_event"]
    lines.append(f"(b) first event at step {b['step']}: unpruned test accuracy there / final = "
                 f"{', '.join(f'{s:.2f}' for s in b['share_of_final'])} -> {'pass' if b['pass'] else 'FAIL'}")
    p = c["c_proportions"]
    lines.append(f"(c) learning-rate drops at {', '.join(f'{m}%' for m in p['milestones'])} of training")
    for name, layer in p["layers"].items():
        for period, v in layer["by_period"].items():
            lines.append(f"    {name} {100 * layer['fraction']:.0f}% every {period}: {v['events']} events from "
                         f"{v['first_%']}% to {v['last_%']}% of training, {v['per_event_%']}% per event")
    d = c["d_recovery"]
    for label, v in d["spacing"].items():
        lines.append(f"(d) {label}: {v['events']} events, >= {v['min_steps_between']} steps between events, "
                     f"{v['steps_after_last']} after the last")
    for label, v in d["recovery_largest"].items():
        lines.append(f"    {label}: accuracy before the next event is within {100 * RECOVERED_WITHIN:g} point of "
                     f"t_pre after {100 * v['recovered_share']:.0f}% of events (median shortfall "
                     f"{v['median_shortfall_points']} points)")
    e = c["e_fit"]
    lines.append(f"(e) unpruned train accuracy {', '.join(f'{100 * a:.2f}%' for a in e['train_acc'])}, gap "
                 f"{', '.join(f'{g:.2f}' for g in e['gap_points'])} points -> {'pass' if e['pass'] else 'FAIL'}")
    f = c["f_time"]
    lines.append("(f) one cell: " + ", ".join(f"{k} {v} s" for k, v in f["one_cell_s"].items())
                 + f"; {f['cells']} cells estimated at {f['estimated_suite_s']} s -> "
                 + ("pass" if f["pass"] else "FAIL"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="tradeoff", help="built-in suite name or .toml path (quick scale)")
    parser.add_argument("--seeds", default="1000-1002", help="criteria seeds, disjoint from reported ones")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = criteria(args.suite, parse_seed_range(args.seeds))
    print(json.dumps(result, indent=1) if args.json else render(result))


if __name__ == "__main__":
    main()
