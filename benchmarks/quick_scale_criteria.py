"""Analysis: how faithful a suite's quick scale is to the paper's regime (the criteria of docs/quick-scale.md).

Measures, on seeds disjoint from every seed a verdict is reported on (default 1000-1002),
the criteria fixed before any correlation or claim verdict was looked at:

(a) the scorer orders removal cost smallest < random < largest in every pruned layer
    (benchmarks/scorer_removal_cost.py, at the first and the last pruning event); the
    pruned runs below use the scorer it picks (the suite's own when none orders);
(b) at the first pruning event the unpruned network has reached >= 80% of its final test
    accuracy (every seed);
(c) the schedule's proportions: last events and learning-rate drops as shares of training
    (the paper: last events at 46% and 85%, drops at 46% and 92%), the fractions per layer;
(d) optimizer steps between events, and whether test accuracy recovers before the next
    event (Prune_L at each rate, the hardest case: accuracy just before the next event, or
    at the end, against t_pre);
(e) unpruned: train accuracy 100% and a train-test gap of at least 5 points;
(f) the default command's time, estimated: each configuration's mean cell time (cells run
    two at a time, one thread each, as the default command runs them) times the suite's
    seed count, summed and halved (docs/quick-scale.md gives the measured run);
(g) capacity: the network with the widths the most-pruned configuration ends with,
    trained from scratch with the suite's recipe, within 1 point of the unpruned
    network's mean final test accuracy;
(h) power: the whole gst-tradeoff claim's power (its Pearson and Kendall parts must both reproduce, at
    the paper's size) at r = -0.43 with the default command's pruned runs (the part of Pearson alone also
    printed, as round 2 first measured it);
(i) recovery: every pruned configuration's final train accuracy >= 99.5%, every seed;
(j) for a suite pruning heads or neurons (docs/transformer-scale.md, whose (e) asks 99.5% and (f) 15 minutes):
    the unpruned network's mean final test accuracy at least 88%.

It prints no correlation, no difference between targets' or pruned and unpruned test
accuracies, and no verdict.

    python benchmarks/quick_scale_criteria.py [--suite tradeoff] [--seeds 1000-1002] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from gstbench.components import PrunableGroup
from gstbench.store.cell_result import Curves
from gstbench.plan.config import ComponentRef, steps_to_int
from gstbench.plugins import get_registry
from gstbench.reports.calibration import correlation_design
from gstbench.reports.claims import evaluate_claims
from gstbench.reports.power import pearson_power
from gstbench.pruning import layer_states
from gstbench.plan.schedule import kept_after
from gstbench.plan.seeds import parse_seed_range
from gstbench.plan.suite import load_suite

sys.path.insert(0, str(Path(__file__).parent))
from scorer_removal_cost import seed_drops, summarize  # noqa: E402 (same folder)

import tiny

MIN_SHARE_AT_FIRST_EVENT = 0.8
MIN_GAP = 0.05
RECOVERED_WITHIN = 0.01  # a point of test accuracy
CAPACITY_WITHIN = 0.01  # (g): a point of test accuracy
MIN_TRAIN_ACC = 0.995  # (i)
PAPER_R = 0.43  # (h): the paper's weaker correlation (ResNet18)
MIN_POWER = 0.8
SCREEN_S = 600  # (f): the screen; the chosen design's measured run must take at most 720 s
WORKERS = 2  # the default command on 2 cores: one cell per core
# A suite that prunes heads or neurons is judged by docs/transformer-scale.md: (e) at 99.5% train accuracy,
# (f) screened at 750 s for 15 minutes, and (j) an unpruned test accuracy of at least 88%
GROUPS = {"min_train_acc_e": 0.995, "screen_s": 750, "min_test_acc_j": 0.88}
CNN = {"min_train_acc_e": 0.9995, "screen_s": SCREEN_S, "min_test_acc_j": None}


def _label(spec) -> str:
    if spec.prune is None:
        return "unpruned"
    period = ",".join(sorted({s.period for _, s in spec.prune.layers}))
    return f"{spec.prune.target.id.split(':')[-1]} {period}"


def _accuracy_before(curves: Curves, step: int) -> float | None:
    """Test accuracy at the last end-of-epoch evaluation at or before ``step``."""
    seen = [a for s, a in zip(curves.step, curves.test_acc) if s <= step and a is not None]
    return seen[-1] if seen else None


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # as the default command's pool workers


class InProcess:
    """The pool's interface, running each job in this process at once: at the tiny size a pool's start (a fresh
    interpreter importing torch per worker) would be most of the script's seconds."""

    def __enter__(self) -> "InProcess":
        _worker_init()
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


def _run(spec):
    from gstbench.engine import run_cell

    t0 = time.perf_counter()
    result = run_cell(spec, get_registry())
    return result, time.perf_counter() - t0


def slim_spec(registry, unpruned, pruned: list) -> tuple[Any, Any] | None:
    """The unpruned spec with every pruned layer at the fewest units any configuration ends with, and those
    widths; None when the model takes neither ``channels`` nor per-block ``heads`` and ``hidden`` options
    (criterion (g) does not apply)."""

    parameters = inspect.signature(registry.component("models", unpruned.model).factory).parameters
    if "channels" not in parameters and not {"heads", "hidden"} <= set(parameters):
        return None
    model = registry.build_model(unpruned.model, registry.load_data(unpruned.dataset))
    names = list(model.prunable_layers)
    widths = {name: s.n_original for name, s in layer_states(model, names).items()}
    final = dict(widths)
    for spec in pruned:
        for name, sched in spec.prune.layers:
            final[name] = min(final[name], kept_after(widths[name], sched.fraction, 1, 1))
    if "channels" in parameters:
        chosen = {"channels": tuple(final[name] for name in names)}
    else:  # the transformer: blockN.heads and blockN.neurons, one count per block
        depth = len(names) // 2
        chosen = {"heads": tuple(final[f"block{b}.heads"] for b in range(1, depth + 1)),
                  "hidden": tuple(final[f"block{b}.neurons"] for b in range(1, depth + 1))}
    options = {**unpruned.model.kwargs, **chosen}
    widths_shown = chosen["channels"] if "channels" in chosen else chosen
    return dataclasses.replace(unpruned, model=ComponentRef(unpruned.model.id, tuple(sorted(options.items())))), \
        widths_shown


def criteria(suite_name: str, seeds: list[int], overrides: dict | None = None) -> dict[str, Any]:
    registry = get_registry()
    suite = load_suite(registry, suite_name, seeds=seeds, overrides=overrides)
    n_suite_seeds = len(load_suite(registry, suite_name).seeds)
    unpruned = [s for s in suite.cells if s.prune is None]
    probe = registry.build_model(unpruned[0].model, registry.load_data(unpruned[0].dataset))
    limits = GROUPS if any(isinstance(v, PrunableGroup) for v in probe.prunable_layers.values()) else CNN
    slim = slim_spec(registry, unpruned[0], [s for s in suite.cells if s.prune is not None])
    slim_specs = [slim_spec(registry, s, [p for p in suite.cells if p.prune is not None])[0] for s in unpruned] \
        if slim else []
    context = multiprocessing.get_context("spawn")
    pool_or_not = InProcess() if overrides is not None else ProcessPoolExecutor(WORKERS, mp_context=context,
                                                                                initializer=_worker_init)
    with pool_or_not as pool:
        removal = [pool.submit(seed_drops, suite_name, seed, overrides) for seed in seeds]
        base_jobs = [pool.submit(_run, spec) for spec in unpruned + slim_specs]
        costs = summarize(suite_name, seeds, [f.result() for f in removal])
        scorer = costs["chosen"]
        chosen = {"prune.scorer": f"gstbench:{scorer}"} if scorer else {}  # by full id: a plugin may share the name
        design = load_suite(registry, suite_name, seeds=seeds, overrides={**(overrides or {}), **chosen} or None)
        pruned_specs = [spec for spec in design.cells if spec.prune is not None]
        pruned_jobs = [pool.submit(_run, spec) for spec in pruned_specs]
        done = [job.result() for job in base_jobs + pruned_jobs]
    failed = [r.error for r, _ in done if r.status != "ok"]
    if failed:
        raise SystemExit(f"cells failed: {failed}")
    ran = unpruned + slim_specs + pruned_specs
    results = {id(spec): r for spec, (r, _) in zip(ran, done)}
    wall = {id(spec): t for spec, (_, t) in zip(ran, done)}
    pruned: dict[str, list] = {}
    for spec in pruned_specs:
        pruned.setdefault(spec.config_hash, []).append(spec)
    result_of = lambda spec: results[id(spec)]  # noqa: E731
    any_result = result_of(unpruned[0])
    spe, total = any_result.steps_per_epoch, any_result.total_steps
    event_steps = {k: [e.step for e in result_of(specs[0]).events] for k, specs in pruned.items()}
    first_event = min(min(v) for v in event_steps.values())

    # (b) and (e): the unpruned network on every criteria seed
    share = [_accuracy_before(result_of(s).curves, first_event) / result_of(s).metrics["final_test_acc"]
             for s in unpruned]
    train_acc = [result_of(s).metrics["train_acc"] for s in unpruned]
    gap = [result_of(s).metrics["gap"] for s in unpruned]

    # (c) proportions of one pruned spec per rate
    spec0 = next(iter(pruned.values()))[0]
    proportions = {"milestones": [round(100 * steps_to_int(m, spe, total) / total, 1)
                                  for m in spec0.train.milestones], "layers": {}}
    for specs in pruned.values():
        spec = specs[0]
        for name, sched in spec.prune.layers:
            layer_steps = sorted({e.step for e in result_of(spec).events if name in e.layers})
            proportions["layers"].setdefault(name, {"fraction": sched.fraction, "by_period": {}})
            proportions["layers"][name]["by_period"][sched.period] = {
                "events": len(layer_steps), "first_%": round(100 * layer_steps[0] / total, 1),
                "last_%": round(100 * layer_steps[-1] / total, 1),
                "per_event_%": round(100 * sched.fraction / len(layer_steps), 2)}

    # (d) steps between events; recovery of Prune_L at each rate (every seed)
    spacing, recovery = {}, {}
    for k, specs in pruned.items():
        steps = event_steps[k]
        gaps = [b - a for a, b in zip(steps, steps[1:])] + [total - steps[-1]]
        lr_after = [result_of(specs[0]).curves.lr[i] for i, s in enumerate(result_of(specs[0]).curves.step)
                    if s > steps[-1]]
        spacing[_label(specs[0])] = {"events": len(steps), "min_steps_between": min(gaps[:-1] or gaps),
                                     "steps_after_last": gaps[-1],
                                     "steps_after_last_by_lr": {f"{lr:g}": spe * lr_after.count(lr)
                                                                for lr in sorted(set(lr_after), reverse=True)}}
        if specs[0].prune.target.id.endswith(":largest"):
            shortfalls = []
            for spec in specs:
                r = result_of(spec)
                for i, e in enumerate(r.events):
                    nxt = r.events[i + 1].step if i + 1 < len(r.events) else total
                    before = _accuracy_before(r.curves, nxt)
                    shortfalls.append(e.t_pre - before if before is not None else float("nan"))
            recovery[_label(specs[0])] = {
                "median_shortfall_points": round(100 * statistics.median(shortfalls), 2),
                "recovered_share": round(sum(s <= RECOVERED_WITHIN for s in shortfalls) / len(shortfalls), 3)}

    # (f) the default command, estimated from the cells' times (two at a time, one thread each)
    per_config = {_label(s[0]): statistics.mean(wall[id(x)] for x in s) for s in pruned.values()}
    per_config["unpruned"] = statistics.mean(wall[id(s)] for s in unpruned)
    estimate = sum(t * n_suite_seeds for t in per_config.values()) / WORKERS

    # (g) capacity: the slim network from scratch against the unpruned one
    capacity: dict[str, Any] = {"applies": bool(slim)}
    if slim:
        full_acc = statistics.mean(result_of(s).metrics["final_test_acc"] for s in unpruned)
        slim_acc = statistics.mean(result_of(s).metrics["final_test_acc"] for s in slim_specs)
        capacity.update(channels=slim[1], slim_test_acc=round(slim_acc, 4), unpruned_test_acc=round(full_acc, 4),
                        shortfall_points=round(100 * (full_acc - slim_acc), 2),
                        passed=slim_acc >= full_acc - CAPACITY_WITHIN)

    # (h) power of the whole gst-tradeoff claim with the default command's pruned runs (the claim pipeline on runs
    # planted at exactly r = -0.43), and of its Pearson part alone
    n_pruned = len(pruned) * n_suite_seeds
    planted = correlation_design("gst-tradeoff", ["pearson", "kendall"], -PAPER_R, n_pruned, paper=True)
    claim = evaluate_claims([planted.claim()], {}, planted.plant(np.random.default_rng(0), 1.0, True), {})[0]
    power, n_needed = claim["power"], claim["n_for_power"]
    pearson_alone = pearson_power(PAPER_R, n_pruned, size=PAPER_R)

    # (i) recovery: every pruned configuration's final train accuracy, every seed
    fit = {_label(s[0]): [round(result_of(x).metrics["train_acc"], 4) for x in s] for s in pruned.values()}
    worst = min(min(v) for v in fit.values())

    return {
        "suite": suite_name, "seeds": seeds, "steps_per_epoch": spe, "total_steps": total,
        "a_scorer": {"suite_scorer": spec0.prune.scorer.id, "ordered": costs["ordered"], "chosen": scorer},
        "b_first_event": {"step": first_event, "share_of_final": [round(s, 3) for s in share],
                          "passed": min(share) >= MIN_SHARE_AT_FIRST_EVENT},
        "c_proportions": proportions,
        "d_recovery": {"spacing": spacing, "recovery_largest": recovery},
        "e_fit": {"train_acc": [round(a, 4) for a in train_acc], "gap_points": [round(100 * g, 2) for g in gap],
                  "passed": min(train_acc) >= limits["min_train_acc_e"] and min(gap) >= MIN_GAP},
        "f_time": {"cell_s": {k: round(v, 1) for k, v in per_config.items()}, "seeds": n_suite_seeds,
                   "cells": (len(pruned) + 1) * n_suite_seeds, "estimated_suite_s": round(estimate, 1),
                   "screen_s": limits["screen_s"], "passed": estimate <= limits["screen_s"]},
        "g_capacity": capacity,
        "h_power": {"pruned_runs": n_pruned, "power": round(power, 3), "pearson_part": round(pearson_alone, 3),
                    "runs_for_80": n_needed, "passed": power >= MIN_POWER},
        "i_recovery": {"train_acc": fit, "worst": worst, "shortfall_points": round(max(0.0, 100 * (MIN_TRAIN_ACC - worst)), 2),
                       "passed": worst >= MIN_TRAIN_ACC},
        "j_accuracy": {"unpruned_test_acc": [round(result_of(s).metrics["final_test_acc"], 4) for s in unpruned],
                       "floor": limits["min_test_acc_j"],
                       "passed": None if limits["min_test_acc_j"] is None else statistics.mean(
                           result_of(s).metrics["final_test_acc"] for s in unpruned) >= limits["min_test_acc_j"]},
        "removal_costs": costs["rows"],
    }


def render(c: dict[str, Any]) -> str:
    verdict = (lambda ok: "pass" if ok else "FAIL")
    lines = [f"suite {c['suite']} (quick), criteria seeds {c['seeds']}: {c['steps_per_epoch']} steps per epoch, "
             f"{c['total_steps']} steps in all"]
    a = c["a_scorer"]
    lines.append("(a) S < R < L in every pruned layer at the first and last event: "
                 + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in a["ordered"].items())
                 + f" -> {a['chosen'] or 'none'} (the suite file names {a['suite_scorer']}; the pruned runs used "
                 + f"{a['chosen'] or a['suite_scorer']})")
    b = c["b_first_event"]
    lines.append(f"(b) first event at step {b['step']}: unpruned test accuracy there / final = "
                 f"{', '.join(f'{s:.2f}' for s in b['share_of_final'])} -> {verdict(b['passed'])}")
    p = c["c_proportions"]
    lines.append(f"(c) learning-rate drops at {', '.join(f'{m}%' for m in p['milestones'])} of training")
    for name, layer in p["layers"].items():
        for period, v in layer["by_period"].items():
            lines.append(f"    {name} {100 * layer['fraction']:.0f}% every {period}: {v['events']} events from "
                         f"{v['first_%']}% to {v['last_%']}% of training, {v['per_event_%']}% per event")
    d = c["d_recovery"]
    for label, v in d["spacing"].items():
        by_lr = ", ".join(f"{n} at lr {lr}" for lr, n in v["steps_after_last_by_lr"].items())
        lines.append(f"(d) {label}: {v['events']} events, >= {v['min_steps_between']} steps between events, "
                     f"{v['steps_after_last']} after the last ({by_lr})")
    for label, v in d["recovery_largest"].items():
        lines.append(f"    {label}: accuracy before the next event is within {100 * RECOVERED_WITHIN:g} point of "
                     f"t_pre after {100 * v['recovered_share']:.0f}% of events (median shortfall "
                     f"{v['median_shortfall_points']} points)")
    e = c["e_fit"]
    lines.append(f"(e) unpruned train accuracy {', '.join(f'{100 * a:.2f}%' for a in e['train_acc'])}, gap "
                 f"{', '.join(f'{g:.2f}' for g in e['gap_points'])} points -> {verdict(e['passed'])}")
    f = c["f_time"]
    lines.append("(f) mean cell time (two at a time): " + ", ".join(f"{k} {v} s" for k, v in f["cell_s"].items())
                 + f"; {f['cells']} cells ({f['seeds']} seeds) estimated at {f['estimated_suite_s']} s "
                 + f"-> {verdict(f['passed'])} (screen: {f['screen_s']} s)")
    g = c["g_capacity"]
    if g["applies"]:
        lines.append(f"(g) widths {g['channels']} from scratch: final test accuracy {100 * g['slim_test_acc']:.2f}% "
                     f"against the unpruned {100 * g['unpruned_test_acc']:.2f}% ({g['shortfall_points']:+.2f} points "
                     f"short) -> {verdict(g['passed'])}")
    else:
        lines.append("(g) not applicable: the model has no 'channels' option, nor per-block 'heads' and 'hidden'")
    h = c["h_power"]
    lines.append(f"(h) {h['pruned_runs']} pruned runs: the claim's power {h['power']:.3f} at r = -{PAPER_R} "
                 f"(its Pearson part alone {h['pearson_part']:.3f}; 80% at {h['runs_for_80']} runs) -> "
                 f"{verdict(h['passed'])}")
    i = c["i_recovery"]
    lines.append("(i) final train accuracy per pruned configuration: "
                 + "; ".join(f"{k} {', '.join(f'{100 * a:.2f}%' for a in v)}" for k, v in i["train_acc"].items())
                 + f" -> {verdict(i['passed'])}")
    j = c["j_accuracy"]
    if j["floor"] is not None:
        lines.append(f"(j) unpruned final test accuracy {', '.join(f'{100 * a:.2f}%' for a in j['unpruned_test_acc'])}"
                     f" (mean at least {100 * j['floor']:.0f}%) -> {verdict(j['passed'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="tradeoff", help="built-in suite name or .toml path (quick scale)")
    parser.add_argument("--seeds", default="1000-1002", help="criteria seeds, disjoint from reported ones")
    parser.add_argument("--json", action="store_true")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.seeds = "1000-1001"
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result = criteria(args.suite, parse_seed_range(args.seeds), tiny.overrides(args.tiny))
    print(json.dumps(result, indent=1) if args.json else render(result))


if __name__ == "__main__":
    main()
