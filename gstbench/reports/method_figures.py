"""The figures of a comparison of methods (a suite with ``[leaderboard] levels``): the rank metric against the
level, accuracy against a cost with the Pareto front of the means, and the critical-difference diagram.

Each method keeps one look in every figure (figure_style.method_styles: a family by colour, a regime by marker
and line style); axes are named in words.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from gstbench.reports.figure_style import band, legend, log_x, method_styles, words


def levels_figure(ax, suite, groups, report) -> str | None:
    """The rank metric against the level (the accuracy-sparsity curve of post-training pruning papers): one line
    per method with its 95% band across seeds, the unpruned network as a dashed line."""
    from gstbench.reports.methods import curve, level_value

    methods = report.methods
    if methods is None:
        return "not a comparison of methods (the suite names no [leaderboard] levels)"
    levels, by_method = curve(methods)
    numeric = [level for level in levels if math.isfinite(level_value(level))]
    if len(numeric) < 2:
        return f"fewer than 2 numeric {methods['key']} levels to draw a curve through"
    shares = all(level_value(level) <= 1 for level in numeric)
    styles = method_styles(list(by_method))
    for method, stats in by_method.items():
        at = [level for level in numeric if level in stats]
        xs = [100 * level_value(level) if shares else level_value(level) for level in at]
        mean, low, high = (np.array(v) for v in zip(*(band(stats[level]) for level in at)))
        ax.plot(xs, mean, markersize=4, linewidth=1, label=method, **styles[method])
        ax.fill_between(xs, low, high, color=styles[method]["color"], alpha=0.1)
    parent = (methods["unpruned"].get(methods["rank"]) or {}).get("mean")
    if parent is not None:
        ax.axhline(100 * parent, color="black", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel(words(methods["key"]) + (" (%)" if shares else ""))
    ax.set_ylabel(f"{words(methods['rank'])} (%; mean, 95% band across seeds)")
    ax.set_title(f"{words(methods['rank']).capitalize()} against {words(methods['key'])}, one line per method")
    legend(ax)
    return None


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated points of (cost, accuracy): none cheaper and at least as accurate, or as cheap and more
    accurate; in increasing cost (and accuracy)."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or y > front[-1][1]:
            front.append((x, y))
    return front


def pareto_figure(key: str, xlabel: str, ax, suite, groups, report) -> str | None:
    """Accuracy against a cost, one line per method through its levels, and the Pareto front of the means with
    the unpruned network: the upper-left staircase across the whole range of costs."""
    methods = report.methods
    if methods is None:
        return "not a comparison of methods (the suite names no [leaderboard] levels)"
    rank = methods["rank"]
    lines: dict[str, list[tuple[float, float, float, float]]] = defaultdict(list)  # in the order of the levels
    for level in methods["levels"]:
        for row in level["rows"]:
            x, y = (row.get(key) or {}).get("mean"), row.get(rank) or {}
            if x is None or y.get("mean") is None:
                continue
            mean, low, high = band(y)
            lines[row["method"]].append((x, mean, mean - low, high - mean))
    if not lines:
        return f"no method measured {key}"
    styles = method_styles(sorted(lines))
    for method, points in sorted(lines.items()):
        xs, ys, down, up = (list(v) for v in zip(*points))
        ax.errorbar(xs, ys, yerr=[down, up], markersize=4, capsize=2, linewidth=1, label=method, **styles[method])
    candidates = [(x, y) for ps in lines.values() for x, y, *_ in ps]
    parent = methods["unpruned"]
    if (parent.get(key) or {}).get("mean") is not None and (parent.get(rank) or {}).get("mean") is not None:
        candidates.append((parent[key]["mean"], 100 * parent[rank]["mean"]))
        ax.scatter(*candidates[-1], marker="*", s=140, color="black", zorder=5, label="unpruned")
    front = pareto_front(candidates)
    right = max(x for x, _ in candidates)
    ax.step([x for x, _ in front] + [right], [y for _, y in front] + [front[-1][1]], where="post", color="black",
            linewidth=2, alpha=0.45, label="Pareto front of the means")
    log_x(ax)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{words(rank)} (%; mean, 95% interval across seeds)")
    ax.set_title(f"{words(rank).capitalize()} against cost, one line per method through its levels "
                 f"({words(methods['key'])})")
    legend(ax)
    return None


def time_figure(ax, suite, groups, report) -> str | None:
    """Accuracy against measured time: in the runtime ``report.runtime`` names (the speed metric's serving batch),
    else in eager where the runs measured speed, else the latency metric's large batch."""
    from gstbench.builtin.speed import key_of

    rows = [row for level in (report.methods or {}).get("levels", []) for row in level["rows"]]
    runtime = report.runtime or ("eager" if any("speed_eager_batch_ms" in row for row in rows) else None)
    if runtime is None:
        return pareto_figure("latency_large_ms", "measured time of a large batch in eager, ms (log; the latency "
                                                 "metric's large_batch)", ax, suite, groups, report)
    return pareto_figure(f"speed_{key_of(runtime)}_batch_ms", f"measured time of the serving batch in {runtime}, "
                         f"ms (log; the speed metric's batch)", ax, suite, groups, report)


def critical_difference(ax, suite, groups, report) -> str | None:
    """Demsar's critical-difference diagram: the methods at their mean rank, bars joining those within Nemenyi's CD."""
    from gstbench.reports.ranking import cliques

    ranking = (report.methods or {}).get("ranking")
    if ranking is None:
        return "no rank summary (a comparison of methods needs 2 methods at every level and seed)"
    names, ranks, cd = ranking["methods"], ranking["mean_ranks"], ranking["nemenyi_critical_difference"]
    order = sorted(range(len(names)), key=lambda i: ranks[i])
    k = len(names)
    ax.set_xlim(0.5, k + 0.5)
    half = (k + 1) // 2
    rows = max(half, k - half)
    ax.set_ylim(-(rows + 2), 2.2)
    ax.axis("off")
    ax.hlines(0, 1, k, color="black")
    for r in range(1, k + 1):
        ax.vlines(r, 0, 0.15, color="black")
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    ax.hlines(1.3, 1, 1 + cd, color="black", linewidth=2)
    ax.text(1 + cd / 2, 1.5, f"CD = {cd:.2f} (Nemenyi, alpha {ranking['alpha']})", ha="center", fontsize=8)
    for pos, i in enumerate(order):
        left = pos < half
        y = -(pos + 1) if left else -(k - pos)
        x_text = 0.6 if left else k + 0.4
        ax.plot([ranks[i], ranks[i], x_text], [0, y, y], color="black", linewidth=0.8)
        ax.text(x_text + (-0.05 if left else 0.05), y, f"{names[i]} ({ranks[i]:.2f})", fontsize=7,
                ha="right" if left else "left", va="center")
    for n, (a, b) in enumerate(cliques(ranks, cd)):
        y = -0.35 - 0.25 * n
        ax.hlines(y, sorted(ranks)[a] - 0.05, sorted(ranks)[b] + 0.05, color="tab:red", linewidth=3)
    f = ranking["friedman"]
    ax.set_title(f"Mean rank of each method over {ranking['blocks']} blocks ({ranking['blocks_are']}; 1 = best); "
                 f"Friedman p = {f['p']:.3g}; red bars join methods within the CD", fontsize=9)
    return None
