"""How every figure reads: ticks as people write them, legends that do not cover the data, axes named in words,
and methods told apart (a family by its colour, a regime by its marker and line style)."""

from __future__ import annotations

import math
from typing import Any

LEGEND_INSIDE = 12  # more entries than this cover the data: they go beside the axes, in columns
LEGEND_ROWS = 40  # entries per column beside the axes (a methods suite has 89 configurations)
# result keys as an axis names them
WORDS = {"final_test_acc": "final test accuracy", "best_test_acc": "best test accuracy", "stability": "stability",
         "ood_acc_mean": "accuracy on shifted data", "prune.fraction": "share of each pruned layer removed",
         "macs_without_dead_filters": "MACs per example", "latency_large_ms": "latency of a large batch (ms)"}


def words(key: str) -> str:
    """A result or config key as an axis label says it (``final_test_acc``: final test accuracy)."""
    return WORDS.get(key, key.replace("_", " "))


def band(stat: dict[str, Any]) -> tuple[float, float, float]:
    """A statistic's mean, low and high in percent (the mean where there is no interval)."""
    mean = stat["mean"]
    return tuple(100 * (stat.get(end) if stat.get(end) is not None else mean) for end in ("mean", "low", "high"))


def tick_label(value: float) -> str:
    """A tick as people write it: 2.6, not 2.64706; 13, not 12.8571; 0.25 below 1."""
    if value >= 10:
        return f"{value:.0f}"
    if value >= 1:
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.2g}"


def log_x(ax) -> None:
    """A log x axis whose ticks read as plain numbers (50, not 5 x 10^1; 33, not 32.768). Minor ticks carry a
    label where the axis spans less than half a decade, at 2 and 5 times a power of ten while it spans less than
    two (an axis just over a decade showed one major label alone), none beyond: labelling every one printed
    4000500060007000 on one line."""
    from matplotlib.ticker import FuncFormatter

    def minor(value: float, _pos: Any) -> str:
        low, high = sorted(ax.get_xlim())
        decades = math.log10(high / low) if low > 0 else math.inf
        mantissa = round(value / 10 ** math.floor(math.log10(value)), 6) if value > 0 else 0
        if decades >= 2 or (decades > 0.5 and mantissa not in (2, 5)):
            return ""
        return tick_label(value)

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: tick_label(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(minor))


def legend(ax, handles: list | None = None, labels: list[str] | None = None, loc: str = "best") -> None:
    """The legend: inside the axes when it is short; beside them, in columns, with the figure widened to hold
    it, when it would cover the data."""
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= LEGEND_INSIDE:
        ax.legend(handles, labels, fontsize=7, loc=loc)
        return
    columns = math.ceil(len(labels) / LEGEND_ROWS)
    rows = math.ceil(len(labels) / columns)
    width, height = ax.figure.get_size_inches()
    longest = max(len(label) for label in labels)
    ax.figure.set_size_inches(width + columns * (0.4 + 0.045 * longest), max(height, 0.8 + 0.11 * rows))
    ax.legend(handles, labels, fontsize=5.5, ncols=columns, loc="upper left", bbox_to_anchor=(1.01, 1.0))


MARKERS = "os^Dv<>pPX*h"
LINESTYLES = ("-", "--", ":", "-.")


def method_styles(methods: list[str]) -> dict[str, dict[str, Any]]:
    """A colour per family (the method's first word, its scorer) and a marker and line style per regime (the
    rest of its label: one round or gradual, a rewind, the units), so that 22 methods never share a look."""
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(m.split(" ", 1)[0] for m in methods))
    regimes = list(dict.fromkeys(m.partition(" ")[2] for m in methods))
    palette = plt.get_cmap("tab10" if len(families) <= 10 else "tab20").colors
    out = {}
    for m in methods:
        family, regime = families.index(m.split(" ", 1)[0]), regimes.index(m.partition(" ")[2])
        out[m] = {"color": palette[family % len(palette)], "marker": MARKERS[regime % len(MARKERS)],
                  "linestyle": LINESTYLES[(regime // len(MARKERS) + regime) % len(LINESTYLES)]}
    return out
