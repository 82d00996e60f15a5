"""Statistics for leaderboards (scipy): means with 95% bootstrap or t intervals, Welch tests, correlations,
and how a mean with its interval reads in a table."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from gstbench.reports.distributions import normal_quantile, t_quantile

INTERVALS = ("bootstrap", "t")
BOOTSTRAP_RESAMPLES = 9999
MIN_BOOTSTRAP = 5  # 3 values have 10 distinct resamples: the bootstrap-t's tails run off to +-1e2 there


def mean_interval(values: Sequence[float], level: float = 0.95, method: str = "bootstrap") -> dict[str, Any]:
    """Mean and a ``level`` interval across seeds: studentized bootstrap (default) or Student-t.

    The bootstrap is the bootstrap-t (Efron & Tibshirani 1993, ch. 12): resample, studentize
    each resample's mean by its own standard error, and read the interval off the quantiles
    of those t values. Seeded: the same numbers give the same interval. It keeps its
    coverage at the few seeds a benchmark runs, where the percentile and BCa bootstraps do
    not (docs/definitions.md has the measured coverage). With 3-4 values it gives the
    Student-t interval and names it; below 3 there is no interval, and the result says so.
    """
    if method not in INTERVALS:
        raise ValueError(f"unknown interval method {method!r}; known: {', '.join(INTERVALS)}")
    x = np.sort(np.asarray(values, dtype=float))  # sorted: the interval does not depend on the runs' order
    n = int(x.size)
    if n == 0:
        return {"mean": None, "low": None, "high": None, "n": 0, "method": "none", "note": "no values"}
    mean = float(x.mean())
    if n < 3:
        return {"mean": mean, "low": None, "high": None, "n": n, "method": "none", "note": "n < 3: no interval"}
    se = float(x.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return {"mean": mean, "low": mean, "high": mean, "n": n, "method": method, "note": "all values equal"}
    if method == "t" or n < MIN_BOOTSTRAP:
        half = float(t_quantile(0.5 + level / 2, n - 1)) * se
        return {"mean": mean, "low": mean - half, "high": mean + half, "n": n,
                "method": "student-t" if method == "t" else f"student-t (n < {MIN_BOOTSTRAP}: too few to resample)"}
    resamples = x[np.random.default_rng(0).integers(0, n, (BOOTSTRAP_RESAMPLES, n))]
    ses = resamples.std(axis=1, ddof=1) / math.sqrt(n)
    keep = ses > 1e-9 * se  # a resample of one repeated value has no t (its float std is ~1e-17, not 0)
    t = (resamples.mean(axis=1)[keep] - mean) / ses[keep]
    lo, hi = np.quantile(t, [0.5 - level / 2, 0.5 + level / 2])
    return {"mean": mean, "low": mean - float(hi) * se, "high": mean - float(lo) * se, "n": n,
            "method": f"bootstrap-t ({BOOTSTRAP_RESAMPLES} resamples)"}


def describe_interval(method: str) -> str:
    """How a leaderboard footer names its intervals."""
    if method == "t":
        return "95% Student-t interval across seeds, none below 3 seeds"
    return (f"95% studentized bootstrap interval across seeds (bootstrap-t, {BOOTSTRAP_RESAMPLES} resamples, "
            f"seeded; Student-t for 3-4 seeds; none below 3)")


def correlation(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Pearson r and Kendall tau with p-values; None where undefined (n < 3 or constant input)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out: dict[str, Any] = {"n": int(a.size), "pearson_r": None, "pearson_p": None, "kendall_tau": None,
                           "kendall_p": None}
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        out["note"] = "undefined: fewer than 3 runs or a constant variable"
        return out
    from scipy import stats  # its import takes a second: only where a test needs it

    r = stats.pearsonr(a, b)
    t = stats.kendalltau(a, b)
    out.update(pearson_r=float(r.statistic), pearson_p=float(r.pvalue), kendall_tau=float(t.statistic),
               kendall_p=float(t.pvalue), **fisher_interval(float(r.statistic), int(a.size)))
    return out


def fisher_interval(r: float, n: int, level: float = 0.95) -> dict[str, Any]:
    """A ``level`` interval for Pearson r by Fisher's z transform; None for n <= 3 or |r| = 1."""
    if n <= 3 or abs(r) >= 1:
        return {"pearson_low": None, "pearson_high": None}
    z, half = math.atanh(r), normal_quantile(0.5 + level / 2) / math.sqrt(n - 3)
    return {"pearson_low": math.tanh(z - half), "pearson_high": math.tanh(z + half)}


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """mean(b) - mean(a) with a Welch 95% interval and two-sided p-value; None below 2 values per side."""
    from scipy import stats  # its import takes a second: only where a test needs it

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    out: dict[str, Any] = {"diff": None, "low": None, "high": None, "p": None, "n_a": int(x.size),
                           "n_b": int(y.size), "method": "welch-t"}
    if x.size < 2 or y.size < 2:
        out["note"] = "undefined: fewer than 2 runs on a side"
        return out
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    diff = float(y.mean() - x.mean())
    out["diff"] = diff
    if va + vb == 0:
        out["note"] = "undefined: no variance"
        return out
    dof = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
    half = float(t_quantile(0.5 + level / 2, dof) * math.sqrt(va + vb))
    out.update(low=diff - half, high=diff + half, p=float(stats.ttest_ind(y, x, equal_var=False).pvalue))
    return out


def prune_potential(ratios: Sequence[float], errors: Sequence[float], parent_error: float, delta: float) -> float:
    """The largest swept prune ratio whose error is within ``delta`` of the parent's (Liebenwein et al. 2021).

    Contiguous rule: ratios are taken in increasing order and the sweep stops at the first
    ratio over the tolerance, so a ratio that passes after one that failed (noise) does
    not count. 0 when the smallest ratio already fails.
    """
    potential = 0.0
    for ratio, error in sorted(zip(ratios, errors)):
        if error > parent_error + delta + 1e-12:
            break
        potential = ratio
    return potential


def is_number(v: Any) -> bool:
    """A metric value that statistics apply to: int or float, not bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def format_percent(stat: dict[str, Any]) -> str:
    """``mean [low, high]`` in percent; a bootstrap interval need not be symmetric."""
    if stat["mean"] is None:
        return "-"
    if stat["low"] is None:
        return f"{100 * stat['mean']:.2f}"
    return f"{100 * stat['mean']:.2f} [{100 * stat['low']:.2f}, {100 * stat['high']:.2f}]"


def format_number(stat: dict[str, Any]) -> str:
    """``mean [low, high]`` to four significant digits."""
    if stat["mean"] is None:
        return "-"
    return f"{stat['mean']:.4g}" + ("" if stat["low"] is None else f" [{stat['low']:.4g}, {stat['high']:.4g}]")
