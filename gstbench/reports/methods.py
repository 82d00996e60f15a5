"""The comparison of pruning methods a suite with ``[leaderboard] levels`` asks for: a leaderboard per compression
level, each method's prune potential, and the rank summary across levels and seeds (Friedman's test, Nemenyi's
critical difference, Wilcoxon signed-rank with Holm's correction: reports/ranking.py).

A method is a configuration without its level: its label less the level and the parts every pruned
configuration shares; one whose training differs from the unpruned parent's (posttrain's early parent) is no
method of this comparison. A block of the ranking is one level at one seed; only the methods measured in every block
are ranked (Friedman's test needs complete blocks), and the others are named.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import numpy as np
from tabulate import tabulate

from gstbench.plan.suite import PRUNE_POTENTIAL_DELTA
from gstbench.reports import ALPHA
from gstbench.reports.claim_stats import is_share
from gstbench.reports.ranking import rank_summary
from gstbench.reports.stats import format_number, format_percent, is_number, prune_potential

# what each level's table shows besides the rank metric, where the runs measured it
LEVEL_COLUMNS = {"params_without_dead_filters": "params", "macs_without_dead_filters": "MACs",
                 "latency_batch1_ms": "latency ms (batch 1)", "latency_large_ms": "latency ms (large batch)",
                 "ood_acc_mean": "OOD acc %", "stability": "stability %"}


# the speed metric's keys a level's data keeps: each runtime's time and speed-up at the serving batch
SPEED_COLUMNS = ("_batch_ms", "_batch_realized")


def level_value(label: str) -> float:
    try:
        return float(label)
    except ValueError:
        return float("inf")


def method_labels(labels: list[dict[str, str]], level_key: str) -> list[str]:
    """Each pruned configuration's method: its label less the level and the parts all of them share."""
    keys = [k for k in labels[0] if k != level_key] if labels else []
    varying = [k for k in keys if len({lab.get(k) for lab in labels}) > 1]
    return [" ".join(lab[k] for k in varying if lab.get(k, "-") != "-") or lab.get("scorer", "?") for lab in labels]


def compare_methods(suite: dict[str, Any], rows: list, finished: list, rank: str,
                    stat: Callable) -> dict[str, Any] | None:
    """The methods comparison of a run, or None when its suite names no ``levels`` key."""
    key = suite.get("levels")
    if not key:
        return None
    pruned_rows = [r for r in rows if r.label.get("effector") != "unpruned" and r.label.get(key, "-") != "-"]
    unpruned = [r for r in rows if r.label.get("effector") == "unpruned" and r.label.get("regularizer", "-") == "-"]
    if unpruned:  # methods compared on one footing: pruned from the parent as the unpruned network was trained
        trained = {k: v for k, v in unpruned[0].label.items() if k.startswith("train.")}
        pruned_rows = [r for r in pruned_rows if all(r.label.get(k) == v for k, v in trained.items())]
    names = dict(zip((r.configuration for r in pruned_rows), method_labels([r.label for r in pruned_rows], key)))
    by_config = {r.configuration: r for r in pruned_rows}
    # one pass over the runs: each configuration's values of what a level's table shows (not only the suite's
    # columns); (level, seed) -> method -> the rank metric; each method's runs by seed and level; the parent's
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    blocks: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    per_method: dict[str, dict[int, dict[float, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    parent: dict[int, dict[str, float]] = {}
    parent_times: dict[str, list[float]] = defaultdict(list)  # each runtime's unpruned time, as pruned runs timed it
    for spec, result in finished:
        m = result.metrics
        for c in dict.fromkeys([rank, *LEVEL_COLUMNS, *(k for k in m if k.startswith("speed_") and
                                                      k.endswith(SPEED_COLUMNS))]):
            if is_number(m.get(c)):
                values[spec.config_hash][c].append(m[c])
        for k in m:
            if k.startswith("speed_") and k.endswith("_batch_parent_ms") and is_number(m[k]):
                parent_times[k.replace("_parent_ms", "_ms")].append(m[k])
        if spec.config_hash in by_config and rank in m:
            level, method = by_config[spec.config_hash].label[key], names[spec.config_hash]
            blocks[(level, spec.seed)][method] = m[rank]
            per_method[method][spec.seed][level_value(level)] = m
        elif spec.prune is None and spec.train.regularizer is None:
            parent[spec.seed] = m
    stats = {config: {c: stat(v) for c, v in by_metric.items()} for config, by_metric in values.items()}
    levels = []
    for level in sorted({r.label[key] for r in pruned_rows}, key=level_value):
        at = sorted((r for r in pruned_rows if r.label[key] == level),
                    key=lambda r: -(stats.get(r.configuration, {}).get(rank, {}).get("mean") or -1e300))
        levels.append({"level": level, "rows": [{"method": names[r.configuration], "configuration": r.configuration,
                                                 "n": r.n, **stats.get(r.configuration, {})} for r in at]})
    reference = dict(stats.get(unpruned[0].configuration, {})) if unpruned else {}
    reference.update({k: stat(v) for k, v in parent_times.items() if k not in reference})
    methods = sorted({name for block in blocks.values() for name in block})
    complete = [name for name in methods if all(name in block for block in blocks.values())]
    out: dict[str, Any] = {"key": key, "rank": rank, "levels": levels, "unpruned": reference,
                           "excluded": [name for name in methods if name not in complete]}
    keys = sorted(blocks, key=lambda b: (level_value(b[0]), b[1]))
    if len(complete) >= 2 and len(keys) >= 2:
        scores = np.array([[blocks[b][name] for name in complete] for b in keys])
        summary = rank_summary(complete, scores, ALPHA)
        out["ranking"] = {**summary.as_json(), "blocks_are": f"{key} x seed",
                          "block_labels": [f"{level} seed {seed}" for level, seed in keys]}
    out["potential"] = _potentials(per_method, parent, rank, suite.get("delta", PRUNE_POTENTIAL_DELTA), stat)
    return out


def _potentials(per_method, parent, rank: str, delta: float, stat: Callable) -> dict[str, Any]:
    """Each method's prune potential (the largest level within ``delta`` of the same seed's unpruned error), on
    the rank metric and, where measured, on OOD accuracy; mean and interval across seeds."""
    out = {}
    for method, seeds in per_method.items():
        values: dict[str, list[float]] = {"nominal": [], "shifted": []}
        for seed, by_level in seeds.items():
            if seed not in parent:
                continue
            ratios = sorted(by_level)
            for name, metric in (("nominal", rank), ("shifted", "ood_acc_mean")):
                if metric in parent[seed] and all(metric in by_level[r] for r in ratios):
                    values[name].append(prune_potential(ratios, [1 - by_level[r][metric] for r in ratios],
                                                        1 - parent[seed][metric], delta))
        out[method] = {name: stat(v) for name, v in values.items() if v}
    return out


def _fmt(stat: dict[str, Any] | None, percent: bool) -> str:
    """A mean with its interval as the leaderboard prints it; where every seed gave the same value (a level's
    parameters and MACs) the value alone."""
    if not stat:
        return "-"
    if stat.get("low") is not None and stat["low"] == stat["high"]:
        stat = {**stat, "low": None, "high": None}
    return format_percent(stat) if percent else format_number(stat)


def curve(methods: dict[str, Any]) -> tuple[list[str], dict[str, dict[str, dict[str, Any]]]]:
    """Each method's rank metric at each level (its mean and interval across seeds): the accuracy-against-level
    curve. The levels in order, and per method the statistic by level; methods in order of mean rank where they
    were ranked, then by their mean over the levels they have."""
    rank = methods["rank"]
    levels = [level["level"] for level in methods["levels"]]
    by_method: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for level in methods["levels"]:
        for row in level["rows"]:
            if (row.get(rank) or {}).get("mean") is not None:
                by_method[row["method"]][level["level"]] = row[rank]
    ranking = methods.get("ranking") or {"methods": [], "mean_ranks": []}
    mean_rank = dict(zip(ranking["methods"], ranking["mean_ranks"]))
    order = sorted(by_method, key=lambda m: (mean_rank.get(m, float("inf")),
                                             -np.mean([s["mean"] for s in by_method[m].values()])))
    return levels, {m: by_method[m] for m in order}


def curve_table(methods: dict[str, Any], intervals: bool = True) -> tuple[str, list[str], list[list[str]]]:
    """The curve as a table: a row per method, a column per level (``mean [low, high]``, or the mean alone)."""
    rank, key = methods["rank"], methods["key"]
    levels, by_method = curve(methods)
    share = is_share(rank)

    def cell(stat: dict[str, Any] | None) -> str:
        if not stat:
            return "-"
        return _fmt(stat if intervals else {**stat, "low": None, "high": None}, share)

    ref = methods["unpruned"].get(rank)
    caption = (f"{rank} against {key} (the curve `gstbench plot` draws): mean"
               + (" [95% interval]" if intervals else "") + " over seeds"
               + (f"; unpruned {_fmt(ref, share)}" if ref else ""))
    rows = [[method, *(cell(stats.get(level)) for level in levels)] for method, stats in by_method.items()]
    return caption, ["method", *(f"{key.rpartition('.')[2]} {level}" for level in levels)], rows


def _speed_header(key: str) -> str:
    """``speed_onnxruntime_batch_realized`` -> ``onnxruntime speed-up``."""
    return key.removeprefix("speed_").removesuffix("_batch_realized") + " speed-up"


def methods_tables(methods: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, headers, rows) of the accuracy-against-level curve, each level's leaderboard and the rank summary;
    a caption alone is a note."""
    rank, key = methods["rank"], methods["key"]
    out = [curve_table(methods)]
    for level in methods["levels"]:
        speedups = sorted({k for r in level["rows"] for k in r
                           if k.startswith("speed_") and k.endswith("_batch_realized")})
        columns = [c for c in dict.fromkeys([rank, *LEVEL_COLUMNS, *speedups]) if any(c in r for r in level["rows"])]
        ref = methods["unpruned"].get(rank)
        caption = (f"{key} = {level['level']}: {len(level['rows'])} methods ranked by {rank}"
                   + (f" (unpruned: {_fmt(ref, is_share(rank))})" if ref else ""))
        rows = [[str(i + 1), r["method"], str(r["n"]), *(_fmt(r.get(c), is_share(c)) for c in columns)]
                for i, r in enumerate(level["rows"])]
        headers = [LEVEL_COLUMNS.get(c, c) if not c.startswith("speed_") else _speed_header(c) for c in columns]
        out.append((caption, ["#", "method", "n", *headers], rows))
    ranking = methods.get("ranking")
    if ranking is None:
        out.append(("rank summary: needs at least 2 methods measured at every level and seed, and 2 blocks", [], []))
        return out
    best = int(np.argmin(ranking["mean_ranks"]))
    order = sorted(range(len(ranking["methods"])), key=lambda i: ranking["mean_ranks"][i])
    f = ranking["friedman"]
    caption = (f"rank summary over {ranking['blocks']} blocks ({ranking['blocks_are']}; rank 1 = the highest {rank}): "
               f"Friedman chi2 = {f['chi2']:.2f}, df = {f['df']}, p = {f['p']:.3g}; Nemenyi critical difference "
               f"{ranking['nemenyi_critical_difference']:.2f} at alpha {ranking['alpha']}")
    potential = methods.get("potential", {})
    rows = []
    for i in order:
        name = ranking["methods"][i]
        gap = ranking["mean_ranks"][i] - ranking["mean_ranks"][best]
        rows.append([name, f"{ranking['mean_ranks'][i]:.2f}",
                     "-" if i == best else ("yes" if gap < ranking["nemenyi_critical_difference"] else "no"),
                     "-" if i == best else f"{ranking['holm_wilcoxon_p'][i][best]:.3g}",
                     _fmt(potential.get(name, {}).get("nominal"), True),
                     _fmt(potential.get(name, {}).get("shifted"), True)])
    out.append((caption, ["method", "mean rank", "within CD of best", "Holm-Wilcoxon p vs best",
                          "prune potential %", "prune potential OOD %"], rows))
    if methods["excluded"]:
        out.append((f"not ranked (not measured at every {key} and seed): {', '.join(methods['excluded'])}", [], []))
    return out


def render_methods(methods: dict[str, Any], tablefmt: str = "simple") -> list[str]:
    """The per-level leaderboards and the rank summary, as text."""
    lines = []
    for caption, headers, rows in methods_tables(methods):
        lines += ["", caption]
        if headers:
            lines.append(tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True))
    return lines
