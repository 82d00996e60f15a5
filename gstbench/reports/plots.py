"""Figures of a result directory (matplotlib, headless): each titled, axes labelled with units.

- stability vs generalization: one point per pruned run, one color per configuration, a
  least-squares line and Pearson r;
- test accuracy over training: mean and 95% band across seeds per configuration, pruning
  events marked;
- the rate sweep: stability and generalization against the iterative rate, per target;
- prune potential, nominal vs each shift (when rounds measured shifted data);
- linear-mode-connectivity curves (when rounds trained two data orders);
- each correlation the suite asks for (``correlate``) and stability against each metric
  ``gstbench measure`` added: one point per pruned run, with its line and r;
- prune-retrain suites: test accuracy against the share of weights (or filters) remaining, log
  scale, one line per configuration with its 95% interval across seeds;
- a methods comparison (``[leaderboard] levels``; reports/method_figures.py): accuracy against the level (one line
  per method with its 95% band across seeds, the unpruned network dashed), accuracy against MACs and against
  measured latency
  (one line per method through its levels, the Pareto front of the means), and the critical-difference
  diagram of the methods' mean ranks (Nemenyi).
A figure whose results are absent is skipped, and the caller is told which.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from gstbench.errors import GstbenchError
from gstbench.names import inside
from gstbench.store.reader import RunResults, load_results
from gstbench.plan.selection import config_label
from gstbench.reports.figure_style import band, legend, log_x, tick_label
from gstbench.reports.speed_figures import speed_figures
from gstbench.reports.method_figures import critical_difference, levels_figure, pareto_figure, time_figure
from gstbench.reports.report import GENERALIZATION, Leaderboard, report_of
from gstbench.reports.stats import correlation, is_number, mean_interval

FORMATS = ("png", "svg", "pdf")


def _groups(results: RunResults) -> dict[str, list[tuple[dict, dict]]]:
    """The finished runs of each configuration under its display label (two configurations that
    print alike, e.g. differing in an option no axis shows, keep apart by their key)."""
    labels = {c.key: config_label(c.spec, results.axes, results.distinguish) for c in results.configurations}
    uses = Counter(labels.values())
    groups: dict[str, list[tuple[dict, dict]]] = {}
    for config in results.configurations:
        runs = [(c.spec, c.result) for c in config.with_status("ok")]
        if runs:
            label = labels[config.key]
            groups[f"{label} [{config.key[:6]}]" if uses[label] > 1 else label] = runs
    return dict(sorted(groups.items()))


def plot_all(out: Path | str, dest: Path | str, fmt: str = "png", runtime: str | None = None) -> dict[str, Any]:
    """Write every figure the results of ``out`` allow into ``dest``; returns {"written": [...], "skipped": {name:
    why}}. ``runtime``: the one whose measured time the accuracy-against-time figure draws (the speed metric's)."""
    results = load_results(out)  # once, for the groups and the report
    return save_figures(results, report_of(results, runtime=runtime), dest, fmt)


def save_figures(results: RunResults, report: Leaderboard, dest: Path | str, fmt: str = "png",
                 only: tuple[str, ...] = ()) -> dict[str, Any]:
    """``plot_all`` on results already read and reported (``run``'s end); ``only``: the figures whose names start
    so (all where empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GstbenchError(f"cannot write figures to {dest} ({exc.strerror or exc}); pass `gstbench plot --out` "
                            f"a writable directory") from None
    written, skipped = [], {}
    for name, fig, why in figures(results, report, only):
        if why:
            skipped[name] = why
            continue
        path = inside(dest, dest / f"{name}.{fmt}", "gstbench plot --out")
        try:
            fig.savefig(path, dpi=130)
        except OSError as exc:
            raise GstbenchError(f"cannot write {path} ({exc.strerror or exc}); pass `gstbench plot --out` a "
                                f"writable directory") from None
        finally:
            plt.close(fig)
        written.append(str(path))
    return {"written": written, "skipped": skipped}


def figures(results: RunResults, report: Leaderboard, only: tuple[str, ...] = ()):
    """Yield (name, figure, None) for each figure the results allow, (name, None, why) for the others (of those
    whose names start with one of ``only``, where given).

    The caller saves and closes each figure (``gstbench plot`` to files, the HTML report inline)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suite, groups = results.suite, _groups(results)
    # the correlations the suite asks for (and stability against each metric `gstbench measure` added)
    pairs = [(f"{c['x']}_vs_{c['y']}", functools.partial(_pair, c["x"], c["y"])) for c in report.correlations]
    for name, draw in (("stability_vs_generalization", _scatter), ("test_accuracy_over_training", _curves),
                       ("rate_sweep", _rate), ("prune_potential", _potential), ("lmc_curves", _lmc),
                       ("accuracy_vs_remaining", _remaining), ("accuracy_vs_level", levels_figure),
                       ("pareto_accuracy_vs_macs", functools.partial(pareto_figure, "macs_without_dead_filters",
                                                                     "MACs per example, dead filters removed (log)")),
                       ("pareto_accuracy_vs_latency", time_figure),
                       ("critical_difference", critical_difference), *speed_figures(), *pairs):
        if only and not name.startswith(only):
            continue
        if report.untrained and not name.startswith("speed"):
            yield name, None, "no run trained its network: an untrained network's accuracy says nothing"
            continue
        # many lines: room for the legend or labels
        wide = name.startswith(("pareto", "critical", "accuracy_vs", "speed"))
        fig, ax = plt.subplots(figsize=(10, 5.5) if wide else (7, 4.5), constrained_layout=True)
        why = draw(ax, suite, groups, report)
        if why:
            plt.close(fig)
            yield name, None, why
        else:
            ax.set_title(f"{ax.get_title()}\n{suite.get('name')} ({suite.get('scale')})", fontsize=10)
            yield name, fig, None


def _finish(ax, xlabel: str, ylabel: str, title: str, where: str = "best") -> None:
    """Axis labels with units, the title and the legend (at ``where``); None: the figure was drawn."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    legend(ax, loc=where)
    return None


def _pruned(groups):
    return {k: v for k, v in groups.items() if v[0][0].prune is not None}


def _scatter(ax, suite, groups, report) -> str | None:
    pruned = _pruned(groups)
    xs, ys = [], []
    for label, runs in pruned.items():
        x = [100 * r.metrics["stability"] for _, r in runs]
        y = [100 * r.metrics[GENERALIZATION] for _, r in runs]
        ax.scatter(x, y, label=label, s=22, alpha=0.8)
        xs += x
        ys += y
    if len(xs) < 3:
        return "fewer than 3 pruned runs"
    _fit_line(ax, xs, ys)
    return _finish(ax, "stability (%)", "best test accuracy after the last event (%)",
                   "Stability vs generalization, one point per pruned run")


def _fit_line(ax, xs: list[float], ys: list[float]) -> None:
    """The least-squares line through the points, labelled with Pearson's r, its p and n (none when r is not
    defined: a constant variable)."""
    c = correlation(xs, ys)
    if c["pearson_r"] is not None:
        slope, intercept = np.polyfit(xs, ys, 1)
        grid = np.linspace(min(xs), max(xs), 50)
        ax.plot(grid, slope * grid + intercept, color="black", lw=1,
                label=f"least squares: r = {c['pearson_r']:+.2f} (p = {c['pearson_p']:.2g}, n = {c['n']})")


def _pair(x: str, y: str, ax, suite, groups, report) -> str | None:
    """One point per pruned run: metric ``x`` against metric ``y``, with the least-squares line and r."""
    xs, ys = [], []
    for label, runs in _pruned(groups).items():
        points = [(r.metrics[x], r.metrics[y]) for _, r in runs
                  if is_number(r.metrics.get(x)) and is_number(r.metrics.get(y))]
        if points:
            ax.scatter(*zip(*points), label=label, s=22, alpha=0.8)
            xs += [a for a, _ in points]
            ys += [b for _, b in points]
    if len(xs) < 3:
        return f"fewer than 3 pruned runs with both {x} and {y}"
    _fit_line(ax, xs, ys)
    return _finish(ax, x, y, f"{x} vs {y}, one point per pruned run")


def _curves(ax, suite, groups, report) -> str | None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    drawn = False
    for label, runs in groups.items():
        curves = [r.curves for _, r in runs if r.curves and all(a is not None for a in r.curves.test_acc)]
        if not curves:
            continue
        n = min(len(c.epoch) for c in curves)
        epochs = curves[0].epoch[:n]
        acc = np.array([[100 * a for a in c.test_acc[:n]] for c in curves])
        stats = [mean_interval(acc[:, j], method="t") for j in range(n)]
        mean = np.array([s["mean"] for s in stats])
        line, = ax.plot(epochs, mean, lw=1.2, label=f"{label} (n = {len(curves)})")
        if all(s["low"] is not None for s in stats):
            ax.fill_between(epochs, [s["low"] for s in stats], [s["high"] for s in stats], alpha=0.15,
                            color=line.get_color())
        steps_per_epoch = runs[0][1].steps_per_epoch or 1
        for step in sorted({e.step for e in runs[0][1].events if e.round is None}):
            ax.axvline(step / steps_per_epoch, color=line.get_color(), lw=0.5, ls=":", alpha=0.7)
        drawn = True
    if not drawn:
        return "no per-epoch test accuracy stored"
    return _finish(ax, "epoch", "test accuracy (%)",
                   "Test accuracy over training (mean, 95% t band across seeds; dotted: pruning events)",
                   where="lower right")


def _rate(ax, suite, groups, report) -> str | None:
    by_target: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for row in report.rows:
        if row.rate and row.stats["stability"]["mean"] is not None and row.label["target"] != "-":
            by_target[row.label["target"]].append((100 * row.rate, 100 * row.stats["stability"]["mean"],
                                                   100 * row.stats[GENERALIZATION]["mean"]))
    if not any(len({r for r, _, _ in v}) >= 2 for v in by_target.values()):
        return "fewer than two iterative rates per target"
    twin = ax.twinx()
    for target, points in sorted(by_target.items()):
        points.sort()
        rates = [p[0] for p in points]
        line, = ax.plot(rates, [p[1] for p in points], marker="o", label=f"{target}: stability")
        twin.plot(rates, [p[2] for p in points], marker="s", ls="--", color=line.get_color(),
                  label=f"{target}: best test accuracy")
    ax.set_xscale("log")
    rates = sorted({p[0] for points in by_target.values() for p in points})
    ax.set_xticks(rates, [f"{tick_label(r)}%" for r in rates])
    ax.minorticks_off()
    ax.set_xlabel("iterative pruning rate (% of the layer's filters per event, log scale)")
    ax.set_ylabel("stability (%, solid)")
    twin.set_ylabel("best test accuracy (%, dashed)")
    ax.set_title("Stability and generalization vs iterative rate (means across seeds)")
    lines = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    legend(ax, lines[0] + more[0], lines[1] + more[1])
    return None


def _potential(ax, suite, groups, report) -> str | None:
    rows = [r for r in report.rows if r.potential is not None]
    if not rows:
        return "no prune-retrain rounds with shifted test sets"
    names = list(rows[0].potential["pooled"])
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        pooled = row.potential["pooled"]
        means = [100 * (pooled[k]["mean"] or 0) for k in names]
        # The interval clipped to what a potential can be (0-100% of the filters).
        low = [100 * max(0.0, pooled[k]["low"]) if pooled[k]["low"] is not None else m for k, m in zip(names, means)]
        high = [100 * min(1.0, pooled[k]["high"]) if pooled[k]["high"] is not None else m
                for k, m in zip(names, means)]
        err = [[m - lo for m, lo in zip(means, low)], [hi - m for m, hi in zip(means, high)]]
        ax.bar(np.arange(len(names)) + i * width, means, width, yerr=err, capsize=2,
               label=row.title)  # as the leaderboard labels it
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2,
                  ["all shifts" if n == "mean" else n.replace("_", " ") for n in names], fontsize=8)
    delta = rows[0].potential["delta"]
    return _finish(ax, "", "prune potential (% of filters pruned; 95% interval, clipped at 0)",
                   f"Prune potential within {100 * delta:g} points of the parent's error: nominal vs shifted")


def _lmc(ax, suite, groups, report) -> str | None:
    drawn = False
    for label, runs in groups.items():
        lasts = [r.rounds[-1] for _, r in runs if r.rounds and r.rounds[-1].lmc is not None]
        if not lasts:
            continue
        alpha = lasts[0].lmc.alpha
        errors = np.array([[100 * e for e in x.lmc.test_error] for x in lasts])
        ax.plot(alpha, errors.mean(0), marker=".", label=f"{label} (sparsity {100 * lasts[0].sparsity:.1f}%)")
        drawn = True
    if not drawn:
        return "no rounds trained with two data orders"
    return _finish(ax, "interpolation alpha (0: first copy, 1: second copy)", "test error (%)",
                   "Linear mode connectivity in the last round (mean across seeds)")


def _remaining(ax, suite, groups, report) -> str | None:
    """Test accuracy after each round against the share of units remaining: the figure the prune-retrain papers
    lead with."""
    if suite.get("levels"):
        return "a comparison of methods by level: the Pareto figures draw accuracy against what pruning leaves"
    unit = None
    for label, runs in groups.items():
        per_run = [r.rounds for _, r in runs if r.rounds]
        if not per_run:
            continue
        unit = unit or runs[0][0].prune.granularity
        rounds = min(len(r) for r in per_run)
        remaining = [100 * (1 - np.mean([r[i].sparsity for r in per_run])) for i in range(rounds)]
        stats = [mean_interval([r[i].final_test_acc for r in per_run]) for i in range(rounds)]
        mean, low, high = (np.array(v) for v in zip(*map(band, stats)))
        line, = ax.plot(remaining, mean, marker="o", markersize=3, label=f"{label} (n={len(per_run)})")
        ax.fill_between(remaining, low, high, color=line.get_color(), alpha=0.15)
    if unit is None:
        return "no prune-retrain rounds"
    log_x(ax)
    ax.invert_xaxis()  # sparser to the right, as the papers draw it
    ax.set_xlabel(f"{unit} remaining (%, log scale)")
    ax.set_ylabel("test accuracy at the end of the round (%)")
    ax.set_title("Test accuracy against what pruning leaves (mean, 95% interval across seeds)")
    ax.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return None
