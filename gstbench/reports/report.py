"""Leaderboards: one row per configuration across seeds, the stability-generalization correlation,
per-round tables for prune-retrain suites, the answer to a suite's declared question, and the
verdict of every claim the suite declares (claims.py).

Generalization is the best test accuracy at or after the last pruning event (the
paper's code); the correlation is computed across all finished pruned runs (the
unpruned baseline has no pruning event and is left out of it).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

from gstbench.store.cell_result import CellResult, Round
from gstbench.reports.claim_stats import NOT_RUN
from gstbench.reports.claims import Run, evaluate_claims
from gstbench.reports.methods import compare_methods
from gstbench.reports.speed_tables import speed_summary
from gstbench.errors import GstbenchError, closest
from gstbench.store.reader import RunResults, load_results
from gstbench.plan.suite import PRUNE_POTENTIAL_DELTA
from gstbench.plan.selection import (LABEL_ORDER, SHOWN_AXES, describe_config, in_group, label_at, label_text,
                                     outside_scope)
from gstbench.reports.stats import (INTERVALS, correlation, describe_interval, is_number,
                                    mean_interval, prune_potential, welch_difference)

GENERALIZATION = "best_test_acc"
Stat = Callable[..., dict[str, Any]]


# The leaderboard's own statistics: every row has them, the table shows those with a header, the CSV all.
ROW_STATS = ("stability", "final_test_acc", "best_test_acc", "train_acc", "gap")
TABLE_STATS = {"stability": "stability %", "final_test_acc": "final test %", "best_test_acc": "best test %",
               "gap": "gap %"}
TWIN_STATS = {"lmc_barrier": "LMC barrier %", "weight_distance": "distance"}  # suites with two data orders


@dataclass
class Row:
    """One configuration across its seeds: its label, its counts, and each statistic's mean and interval."""

    label: dict[str, str]  # scorer, target, effector, period, then each other axis of the suite
    configuration: str  # its key (CellSpec.config_hash)
    rate: float | None  # the iterative pruning rate
    n: int  # finished seeds
    failed: int
    missing: int
    corrupt: int
    stats: dict[str, dict[str, Any]]  # statistic -> mean, interval, n: ROW_STATS, TWIN_STATS, the rank, columns
    errors: list[dict[str, Any]] = field(default_factory=list)  # each failed cell: hash, seed, error
    rounds: list[dict[str, Any]] | None = None  # prune-retrain suites: per round
    potential: dict[str, Any] | None = None  # rounds that measured shifted data: prune potential
    tied: float | None = None  # the mean share of alive units whose scores tied, over its pruning events

    @property
    def title(self) -> str:
        """The configuration in words: its label's values, "-" left out (``bn-gamma smallest mask 1ep``)."""
        return label_text(self.label)

    def as_json(self) -> dict[str, Any]:
        out = {**self.label, "configuration": self.configuration, "rate": self.rate, "n": self.n,
               "failed": self.failed, "missing": self.missing, "corrupt": self.corrupt, **self.stats,
               "errors": self.errors, "tied": self.tied}
        if self.rounds is not None:
            out["rounds"] = self.rounds
        if self.potential is not None:
            out["potential"] = self.potential
        return out


@dataclass
class Leaderboard:
    """A run's leaderboard: the rows, ranked, and what the suite asks of them. The text table, CSV, JSON,
    the HTML page and the figures all render this one object; ``as_json`` is the JSON ``report`` prints."""

    suite: dict[str, Any]  # the run's suite record (suite.json), its columns merged with the asked ones
    rank: str
    interval: str  # how the intervals were computed, in words
    rows: list[Row]
    correlation: dict[str, Any]  # stability vs generalization over the pruned runs
    correlations: list[dict[str, Any]]  # the suite's declared pairs
    totals: dict[str, int]
    corrupt: list[dict[str, str]]
    time: dict[str, Any]  # where the cells' time went
    claims: list[dict[str, Any]]
    answer: dict[str, Any] | None = None  # the suite's question, answered
    methods: dict[str, Any] | None = None  # the comparison of methods by level (reports/methods.py)
    speed: dict[str, Any] | None = None  # realized against predicted speed-ups per network (reports/speed_tables.py)
    untrained: bool = False  # no finished run trained its network (the speed suite): its accuracies say nothing
    runtime: str | None = None  # whose measured time the accuracy-against-time figure draws (None: eager/latency)
    extra_axes: list[str] = field(init=False)  # the suite's axes that get their own column (computed once)

    def __post_init__(self) -> None:
        self.extra_axes = [a for a in self.suite.get("axes", {}) if a not in SHOWN_AXES]
        # the units, a regularizer, a rewind or another key that tells some configurations apart (describe_config):
        # a column, "-" elsewhere
        fixed = ("units", "regularizer", "rewind")
        others = [k for r in self.rows for k in r.label if k not in (*LABEL_ORDER, *fixed, *self.extra_axes)]
        for key in ("units", *dict.fromkeys(others), "regularizer", "rewind"):
            if key not in self.extra_axes and any(key in r.label for r in self.rows):
                self.extra_axes.append(key)
        for r in self.rows:  # one order of columns for every row
            r.label = {k: r.label.get(k, "-") for k in (*(k for k in LABEL_ORDER if k in r.label), *self.extra_axes)}

    @property
    def columns(self) -> list[str]:
        return self.suite.get("columns", [])

    def as_json(self) -> dict[str, Any]:
        out = {"suite": self.suite, "rank": self.rank, "corrupt": self.corrupt, "interval": self.interval,
               "rows": [r.as_json() for r in self.rows], "correlation": self.correlation, "totals": self.totals,
               "time": self.time, "correlations": self.correlations}
        if self.answer is not None:
            out["answer"] = self.answer
        if self.methods is not None:
            out["methods"] = self.methods
        if self.speed is not None:
            out["speed"] = self.speed
        out["claims"] = self.claims
        return out


def build_report(out: Path | str, rank: str | None = None, interval: str = "bootstrap",
                 columns: list[str] = ()) -> Leaderboard:
    """Everything a leaderboard of the run directory ``out`` shows (the CLI renders it)."""
    return report_of(load_results(out), rank, interval, columns)


def report_of(results: RunResults, rank: str | None = None, interval: str = "bootstrap",
              columns: list[str] = (), runtime: str | None = None) -> Leaderboard:
    """The leaderboard of a run already read. ``rank`` overrides the suite's ranking metric,
    ``columns`` adds metric columns to the suite's, ``interval`` is ``bootstrap`` (studentized) or ``t``,
    ``runtime`` picks whose measured time (the speed metric's) the accuracy-against-time figure draws."""
    if interval not in INTERVALS:
        raise GstbenchError(f"unknown interval method '{interval}'; known: {', '.join(INTERVALS)}")
    if runtime is not None:
        _check_runtime(results, runtime)
    stat = functools.partial(mean_interval, method=interval)
    suite = results.suite
    measured = [key for _, result in results.finished for keys in result.measured_later.values() for key in keys
                if not key.endswith("_se")]  # an estimate's standard error goes with it, not in a column of its own
    columns = [key for name in columns for key in results.metric_keys(name)]  # a metric's name: all its keys
    suite["columns"] = list(dict.fromkeys([*suite.get("columns", []), *measured, *columns]))  # measure's too
    asked = [list(pair) for pair in suite.get("correlate", [])]
    suite["correlate"] = asked + [["stability", key] for key in dict.fromkeys(measured) if ["stability", key] not in asked]
    rank = rank or suite.get("rank", GENERALIZATION)
    finished = results.finished  # (spec, result) of every finished run
    pruned_runs = [result.metrics for spec, result in finished if spec.prune is not None]
    runs = [(spec, result.metrics) for spec, result in finished]  # (spec, metrics) of every finished run
    rows = []
    for config in results.configurations:
        ok = [c.result for c in config.with_status("ok")]
        failed = [{"hash": c.result.hash, "seed": c.result.seed, "error": c.result.error}
                  for c in config.with_status("failed")]
        metrics = [r.metrics for r in ok]
        row = Row(describe_config(config.spec, results.axes, results.distinguish), config.key,
                  metrics[0]["iterative_rate"] if metrics else None, len(metrics), len(failed),
                  len(config.with_status("missing")), len(config.with_status("corrupt")),
                  {s: stat([m[s] for m in metrics]) for s in ROW_STATS}, failed)
        shares = [e.tied for r in ok for e in r.events if e.tied is not None]
        row.tied = sum(shares) / len(shares) if shares else None
        if any("lmc_barrier" in m for m in metrics):
            row.stats.update({s: stat([m[s] for m in metrics if s in m]) for s in TWIN_STATS})
        if any(r.rounds for r in ok):
            row.rounds = _round_stats([r.rounds for r in ok if r.rounds], stat)
        # a column is a statistic unless a label or count already has that name (then the JSON keeps those)
        taken = {*row.label, *row.stats, "configuration", "rate", "n", "failed", "missing", "corrupt", "errors",
                 *(["rounds"] if row.rounds is not None else [])}
        for col in {*suite.get("columns", []), rank} - taken:
            row.stats[col] = stat([m[col] for m in metrics if is_number(m.get(col))])
        if any(_measures_shift(r) for r in ok):
            row.potential = _potential([r.rounds for r in ok if r.rounds],
                                       suite.get("delta", PRUNE_POTENTIAL_DELTA), stat)
        rows.append(row)
    known = sorted({k for _, m in runs for k, v in m.items() if is_number(v)})
    for name in {rank, *suite["columns"]}:
        if runs and name not in known:
            raise GstbenchError(f"no finished run in {results.directory} has a metric '{name}'{closest(name, known)}; "
                                f"metrics: {', '.join(known)}")
    def ranked(row: Row) -> float:
        mean = value_of(row, rank)["mean"]
        return -math.inf if mean is None else mean

    rows.sort(key=ranked, reverse=True)
    corr = correlation([m["stability"] for m in pruned_runs], [m[GENERALIZATION] for m in pruned_runs])
    totals = {"cells": sum(r.n + r.failed + r.missing + r.corrupt for r in rows) + len(results.unplaced),
              "ok": sum(r.n for r in rows), "failed": sum(r.failed for r in rows),
              "corrupt": sum(r.corrupt for r in rows) + len(results.unplaced),
              "missing": sum(r.missing for r in rows)}
    correlations = []
    for x, y in suite.get("correlate", []):
        pairs = [(m[x], m[y]) for m in pruned_runs if is_number(m.get(x)) and is_number(m.get(y))]
        correlations.append({"x": x, "y": y, **correlation([a for a, _ in pairs], [b for _, b in pairs])})
    board = Leaderboard(
        suite, rank, describe_interval(interval), rows,
        {"x": "stability", "y": GENERALIZATION, "runs": "pruned runs", **corr}, correlations, totals,
        [{"cell": d, "problem": p} for d, p in results.corrupt],
        _time_split([c.result for config in results.configurations for c in config.with_status("ok")]),
        claims_for(suite, finished),
        answer_question(suite["question"], runs, rank, stat) if suite.get("question") else None)
    board.methods = compare_methods(suite, board.rows, finished, rank, stat)  # the rows with every label column
    # a methods comparison shows each level's speed-ups in its level tables and its accuracy-against-time figure
    board.speed, board.runtime = (speed_summary(finished) if board.methods is None else None), runtime
    board.untrained = bool(finished) and all(spec.train.epochs == 0 for spec, _ in finished)
    return board


def _check_runtime(results: RunResults, runtime: str) -> None:
    """A runtime the run measured speed in, or a one-line error naming those it did."""
    from gstbench.builtin.speed import key_of

    timed = sorted({k.removeprefix("speed_").removesuffix("_batch_ms") for _, r in results.finished
                    for k in r.metrics if k.startswith("speed_") and k.endswith("_batch_ms")})
    if key_of(runtime) not in timed:
        measured = f"it measured speed in: {', '.join(timed)}" if timed else \
            "no run measured speed: add `--metric speed` to `gstbench run` (or run `gstbench measure`)"
        raise GstbenchError(f"--runtime {runtime}: no finished run in {results.directory} was timed in it; {measured}")


def value_of(row: Row, name: str) -> Any:
    """A row's statistic, or the label or count of that name (a rank may name either)."""
    return row.stats[name] if name in row.stats else row.as_json()[name]


OWN_COMPONENTS = ("prune.scorer", "prune.effector", "train.regularizer")  # what a claim row says it tested


def _values_of(key: str, values: list[str]) -> str:
    """``scorer bn-gamma``, ``effector mask|soft``, or ``8 scorers`` where a suite compares many."""
    name = key.rsplit(".", 1)[-1]
    return f"{name} {'|'.join(values)}" if len(values) <= 2 else f"{len(values)} {name}s"


def claims_for(suite: dict[str, Any], finished: list[tuple[dict, CellResult]]) -> list[dict[str, Any]]:
    """The verdict of every claim the suite declares, from its finished runs (spec, result).

    A claim tests the configurations its suite file declares (``scope``): runs of another value
    at a component key (a scorer added with ``--scorer``, another suite's cells in the same
    directory) leave its verdict as it was, and each such configuration gets its claim rows of
    its own, ``gst-targets [scorer=mysnip:mysnip]``, with the runs that have no value at that key
    (the unpruned baseline); rows whose groups it did not run are left out.
    """
    runs = [claim_run(spec, result, suite.get("delta", PRUNE_POTENTIAL_DELTA)) for spec, result in finished]
    scope = suite.get("scope") or {}
    claims, groups, axes = suite.get("claims", []), suite.get("groups", {}), suite.get("axis_labels", {})
    if not scope:  # a run written before claims had a scope: every run counts, as it did then
        return evaluate_claims(claims, groups, runs, axes)
    outside = [outside_scope(r.spec, scope) for r in runs]
    own = ", ".join(_values_of(k, scope[k]) for k in OWN_COMPONENTS if k in scope)
    out = [{**c, "tested": own or "the suite's own configurations"}
           for c in evaluate_claims(claims, groups, [r for r, o in zip(runs, outside) if not o], axes)]
    for other in dict.fromkeys(o for o in outside if o):
        keys = dict(other)
        mine = [r for r, o in zip(runs, outside) if o == other or
                (not o and all(label_at(r.spec, k) == "-" for k in keys))]
        name = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in other)
        out += [{**c, "id": f"{c['id']} [{name}]", "tested": name}
                for c in evaluate_claims(claims, groups, mine, axes) if c["verdict"] != NOT_RUN]
    return out


def _time_split(results: list[CellResult]) -> dict[str, Any]:
    """Where the cells' time went: training, evaluation, pruning, and each metric (all rounds)."""
    wall = sum(r.wall_s for r in results)
    parts: dict[str, float] = defaultdict(float)
    by_metric: dict[str, float] = defaultdict(float)
    for r in results:
        for k, v in r.timing.items():
            parts[k.removesuffix("_s")] += v
        passes = [x.metrics or {} for x in r.rounds] or [r.metrics]
        for m in passes:
            for label, t in m.get("metric_wall_s", {}).items():
                by_metric[label] += t
    share = (lambda t: t / wall if wall else None)
    return {"cells": len(results), "wall_s": wall, "parts": {k: {"s": v, "share": share(v)} for k, v in parts.items()},
            "metrics": {k: {"s": v, "share": share(v)} for k, v in sorted(by_metric.items(), key=lambda kv: -kv[1])}}


def run_potentials(rounds: list[Round], delta: float) -> dict[str, float]:
    """One run's prune potential on nominal data, on each shift (its severities pooled) and over all shifts."""
    parent, pruned = rounds[0].metrics, rounds[1:]
    ratios = [r.sparsity for r in pruned]

    def err(m: dict[str, Any], shift: str | None) -> float:
        if shift is None:
            return 1 - m["ood_nominal_acc"]
        accs = m["ood_acc"] if shift == "mean" else {shift: m["ood_acc"][shift]}
        values = [a for v in accs.values() for a in v]
        return 1 - sum(values) / len(values)

    return {shift or "nominal": prune_potential(ratios, [err(r.metrics, shift) for r in pruned],
                                                err(parent, shift), delta)
            for shift in (None, *parent["ood_acc"], "mean")}


def _measures_shift(result: CellResult) -> bool:
    return bool(result.rounds) and "ood_acc" in (result.rounds[0].metrics or {})


def _potential(per_run: list[list[Round]], delta: float, stat: Stat = mean_interval) -> dict[str, Any]:
    """Prune potential per seed (nominal and per shift, each shift's error averaged over its severities),
    pooled across seeds; and per round: sparsity, nominal and shifted accuracy, excess error."""
    per_seed: dict[str, list[float]] = defaultdict(list)
    for rounds in per_run:
        for name, value in run_potentials(rounds, delta).items():
            per_seed[name].append(value)
    n_rounds = min(len(r) for r in per_run)
    by_round = []
    for i in range(n_rounds):
        ms = [r[i].metrics for r in per_run]
        by_round.append({"round": i, "sparsity": sum(r[i].sparsity for r in per_run) / len(per_run),
                         "nominal_acc": stat([m["ood_nominal_acc"] for m in ms]),
                         "ood_acc": stat([m["ood_acc_mean"] for m in ms]),
                         **({"excess_error": stat([m["excess_error_mean"] for m in ms])}
                            if all("excess_error_mean" in m for m in ms) else {})})
    return {"delta": delta, "per_seed": dict(per_seed),
            "pooled": {k: stat(v) for k, v in per_seed.items()}, "by_round": by_round}


def claim_run(spec: dict[str, Any], result: CellResult, delta: float) -> Run:
    """A finished run for the claims: its metrics, the report's derived ones (prune potential), and each round's."""
    metrics = dict(result.metrics)
    if _measures_shift(result):
        potentials = run_potentials(result.rounds, delta)
        metrics.update(prune_potential_nominal=potentials["nominal"], prune_potential_shifted=potentials["mean"])
    rounds = [{**{k: v for k, v in r.to_json().items() if is_number(v)}, **(r.metrics or {}),
               **({"lmc_barrier": r.lmc.barrier} if r.lmc is not None else {})} for r in result.rounds]
    return Run(spec, spec.seed, metrics, rounds)


def _round_stats(per_run: list[list[Round]], stat: Stat = mean_interval) -> list[dict[str, Any]]:
    """Per round across seeds: sparsity, final test accuracy, and the data-order stability if measured."""
    out = []
    for i in range(min(len(r) for r in per_run)):
        rounds = [r[i] for r in per_run]
        summary = {"round": i, "sparsity": sum(x.sparsity for x in rounds) / len(rounds),
                   "final_test_acc": stat([x.final_test_acc for x in rounds])}
        if all(x.lmc is not None for x in rounds):
            summary["lmc_barrier"] = stat([x.lmc.barrier for x in rounds])
            summary["weight_distance"] = stat([x.weight_distance for x in rounds])
        out.append(summary)
    return out


def answer_question(question: dict[str, Any], runs: list[tuple[dict, dict]], metric: str,
                    stat: Stat = mean_interval) -> dict[str, Any]:
    """Each group's runs pooled (per value of ``split`` too), and every pair compared with a Welch t-test."""
    groups = dict(question["groups"])
    names = [name for name, _ in question["groups"]]
    members = {g: [(spec, m) for spec, m in runs if in_group(spec, groups[g])] for g in names}
    split = question.get("split")
    values = ["all"]
    if split:
        values += sorted({label_at(spec, split) for g in names for spec, _ in members[g]} - {"-"})
    rows = []
    for value in values:
        pooled = {}
        for g in names:
            # a group without the split key (e.g. the unpruned baseline) is compared in every split
            pooled[g] = [m[metric] for spec, m in members[g] if metric in m and
                         (value == "all" or label_at(spec, split) in (value, "-"))]
        rows.append({"split": value, "groups": {g: stat(v) for g, v in pooled.items()},
                     "pairs": [{"a": a, "b": b, **welch_difference(pooled[b], pooled[a])}  # a - b
                               for i, a in enumerate(names) for b in names[i + 1:]]})
    return {"question": question["question"], "metric": metric, "split": split, "groups": names, "rows": rows}
