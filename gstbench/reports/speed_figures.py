"""The speed figure: each pruned network's measured speed-up against the one its MACs predict, the diagonal
(every promised speed-up delivered) drawn, one figure per batch size (batch 1, then the serving batch).

A colour per runtime, a marker per network; filled markers joined by a solid line for structured pruning (units
removed), hollow ones joined by a dashed line for single weights; a line runs through the levels of one way of
pruning in order (a global allocation, a 2:4 pattern: a point of its own).
"""

from __future__ import annotations

from typing import Any

from gstbench.reports.figure_style import MARKERS, legend, log_x, tick_label
from gstbench.reports.speed_tables import threads


def speed_figure(which: int, ax, suite, groups, report) -> str | None:
    """Measured against predicted speed-up at the ``which``-th batch size of each network (0: the smallest)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    speed = report.speed
    if speed is None and report.methods is not None:
        return "a comparison of methods: its speed-ups are in the level tables, its time in pareto_accuracy_vs_latency"
    if speed is None:
        return "no run measured speed (the speed metric)"
    networks = speed["networks"]
    runtimes = list(dict.fromkeys(r for n in networks for r in n["runtimes"]))
    colours = dict(zip(runtimes, plt.get_cmap("tab10").colors))
    xs: list[float] = []
    for i, network in enumerate(networks):
        labels = list(network["batches"])
        if which >= len(labels):
            continue
        label = labels[which]
        for runtime in network["runtimes"]:
            # a line through the levels of one way of pruning (a global ranking and a 2:4 pattern: their own)
            for way in dict.fromkeys((row["units"], row["scope"], row.get("pattern")) for row in network["rows"]):
                units = way[0]
                points = sorted((row["fraction"] or 0, row["predicted"], row["realized"][runtime][label])
                                for row in network["rows"] if (row["units"], row["scope"], row.get("pattern")) == way
                                and runtime in row["realized"] and row["predicted"]
                                and row["realized"][runtime].get(label))
                if not points:
                    continue
                structured = units != "weights"
                ax.plot([p for _, p, _ in points], [r for _, _, r in points], color=colours[runtime],
                        marker=MARKERS[i % len(MARKERS)], markersize=5, linewidth=0.8,
                        linestyle="-" if structured else "--",
                        markerfacecolor=colours[runtime] if structured else "none")
                xs += [p for _, p, _ in points]
    if not xs:
        return "no network was timed at this batch size"
    top = max(xs) * 1.2
    ax.plot([1, top], [1, top], color="black", linewidth=1, label="diagonal: all of the predicted speed-up")
    ax.axhline(1, color="grey", linewidth=0.8, linestyle=":")
    log_x(ax)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    sizes = sorted({list(n["batches"].values())[which] for n in networks if which < len(n["batches"])})
    ax.set_xlabel("speed-up MACs predict (unpruned MACs / pruned MACs; log)")
    ax.set_ylabel("measured speed-up (unpruned time / pruned time; log)")
    ax.set_title(f"Measured against predicted speed-up, batch {', '.join(map(str, sizes))} "
                 f"({speed['device']}, {threads(speed['threads'])})")
    handles = [Line2D([], [], color="black", linewidth=1), *(Line2D([], [], color=c, linewidth=2)
                                                             for c in colours.values()),
               *(Line2D([], [], color="dimgrey", marker=MARKERS[i % len(MARKERS)], linestyle="none")
                 for i in range(len(networks))),
               Line2D([], [], color="dimgrey", marker="o", linestyle="-"),
               Line2D([], [], color="dimgrey", marker="o", linestyle="--", markerfacecolor="none")]
    names = ["all of the predicted speed-up", *runtimes, *(n["network"] for n in networks),
             "units removed (structured)", "single weights zeroed (unstructured)"]
    legend(ax, handles, names, loc="upper left")
    return None


def speed_figures() -> list[tuple[str, Any]]:
    """(name, draw) of each speed figure, for plots.figures."""
    import functools

    return [("speed_vs_macs_batch1", functools.partial(speed_figure, 0)),
            ("speed_vs_macs_serving_batch", functools.partial(speed_figure, 1))]
