"""The statistics behind each claim test (scipy): one Part per tested statement, and how parts combine.

A Part holds a test's effect, its 95% interval (90% for an equivalence, two one-sided
tests), the test's name, p and n, and the claimed sign; its verdict follows claims.py's
rule. Fewer than 3 values, a constant variable or no variance give no test and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
MIN_RUNS = 3


@dataclass
class Part:
    """One tested statement: its effect, interval, test, p and n, and the claimed sign."""

    label: str
    test: str
    statistic: str
    metric: str
    sign: int  # +1, -1, or 0 for an equivalence
    effect: float | None = None
    low: float | None = None
    high: float | None = None
    p: float | None = None
    n: int = 0
    note: str = ""
    margin: float | None = None
    se: float | None = None  # difference tests: the standard error and t dof behind the interval
    dof: float | None = None

    def verdict(self, alpha: float = ALPHA) -> str:
        if self.effect is None:
            return "inconclusive"
        if self.margin is not None:  # two one-sided tests: the (1 - 2 alpha) interval against the margin
            if self.se is None:
                return "inconclusive"
            half = float(stats.t.ppf(1 - alpha, self.dof)) * self.se
            low, high = self.effect - half, self.effect + half
            if -self.margin < low and high < self.margin:
                return "reproduced"
            if low > self.margin or high < -self.margin:
                return "contradicted"
            return "inconclusive"
        if self.p is None or self.p >= alpha or self.effect == 0:
            return "inconclusive"
        return "reproduced" if (self.effect > 0) == (self.sign > 0) else "contradicted"

    def as_equivalence(self, margin: float) -> None:
        """Turn a difference into an equivalence test (TOST, Schuirmann 1987): its p, and the 90% interval."""
        self.margin = margin
        if self.se is None:
            return
        t_low, t_high = (self.effect + margin) / self.se, (self.effect - margin) / self.se
        self.p = float(max(stats.t.sf(t_low, self.dof), stats.t.cdf(t_high, self.dof)))
        half = float(stats.t.ppf(1 - ALPHA, self.dof)) * self.se
        self.low, self.high = self.effect - half, self.effect + half

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "test": self.test, "statistic": self.statistic, "metric": self.metric,
                "effect": self.effect, "low": self.low, "high": self.high, "p": self.p, "n": self.n,
                "verdict": self.verdict(), **({"margin": self.margin} if self.margin is not None else {}),
                **({"note": self.note} if self.note else {})}


def combine(parts: list[Part]) -> tuple[str, Part]:
    """The claim's verdict and the part that decides it (module docstring)."""
    m = len(parts)
    verdicts = [p.verdict() for p in parts]
    if all(v == "reproduced" for v in verdicts):
        weakest = max(parts, key=lambda p: -1.0 if p.p is None else p.p)
        return "reproduced", weakest
    against = [p for p in parts if p.verdict(ALPHA / m) == "contradicted"]
    if against:
        return "contradicted", min(against, key=lambda p: 1.0 if p.p is None else p.p)
    return "inconclusive", next(p for p, v in zip(parts, verdicts) if v != "reproduced")


def correlation_part(label: str, x: Sequence[float], y: Sequence[float], statistic: str, sign: int,
                     metric: str) -> Part:
    """Pearson r (Fisher-z interval) or Kendall tau-b (interval by Fieller et al.'s z variance 0.437/(n-4))."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    part = Part(label, statistic, "r" if statistic == "pearson" else "tau", metric, sign, n=int(a.size))
    if a.size < MIN_RUNS:
        part.note = f"n = {a.size} < {MIN_RUNS}: too few runs to test"
        return part
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        part.note = "a constant variable: no correlation is defined"
        return part
    if statistic == "pearson":
        res = stats.pearsonr(a, b)
        var = 1 / (a.size - 3) if a.size > 3 else None
    else:
        res = stats.kendalltau(a, b)
        var = 0.437 / (a.size - 4) if a.size > 4 else None
    part.effect, part.p = float(res.statistic), float(res.pvalue)
    if var is not None and abs(part.effect) < 1:
        z, half = math.atanh(part.effect), float(stats.norm.ppf(1 - ALPHA / 2)) * math.sqrt(var)
        part.low, part.high = math.tanh(z - half), math.tanh(z + half)
    return part


def paired_part(label: str, a: Sequence[float], b: Sequence[float], sign: int, metric: str,
                how: str = "over seeds") -> Part:
    """mean(a - b) over pairs: paired t-test (scipy ttest_rel) and its t interval."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    part = Part(label, f"paired t {how}", "difference", metric, sign, n=int(d.size))
    if d.size < MIN_RUNS:
        part.note = f"n = {d.size} pairs < {MIN_RUNS}: too few to test"
        return part
    part.effect = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0:
        part.note = "no variance across pairs: the t-test is undefined"
        return part
    return _with_t_interval(part, sd / math.sqrt(d.size), d.size - 1, stats.ttest_rel(a, b).pvalue)


def welch_part(label: str, a: Sequence[float], b: Sequence[float], sign: int, metric: str) -> Part:
    """mean(a) - mean(b): Welch's t-test (scipy ttest_ind, equal_var=False) and its interval."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    part = Part(label, "welch t", "difference", metric, sign, n=int(x.size + y.size))
    if min(x.size, y.size) < MIN_RUNS:
        part.note = f"groups of {x.size} and {y.size} runs: fewer than {MIN_RUNS} on a side, too few to test"
        return part
    part.effect = float(x.mean() - y.mean())
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if va + vb == 0:
        part.note = "no variance in either group: the t-test is undefined"
        return part
    dof = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
    return _with_t_interval(part, math.sqrt(va + vb), dof, stats.ttest_ind(x, y, equal_var=False).pvalue)


def bound_part(label: str, values: Sequence[float], bound: float, sign: int, metric: str) -> Part:
    """The mean against ``bound``: one-sample t-test (scipy ttest_1samp); the effect is mean - bound."""
    x = np.asarray(values, dtype=float)
    part = Part(label, "one-sample t", "mean - bound", metric, sign, n=int(x.size))
    if x.size < MIN_RUNS:
        part.note = f"n = {x.size} < {MIN_RUNS}: too few runs to test"
        return part
    part.effect = float(x.mean() - bound)
    sd = float(x.std(ddof=1))
    if sd == 0:
        part.note = "no variance across runs: the t-test is undefined"
        return part
    return _with_t_interval(part, sd / math.sqrt(x.size), x.size - 1, stats.ttest_1samp(x, bound).pvalue)


def _with_t_interval(part: Part, se: float, dof: float, p: float) -> Part:
    """A t-test's p and the effect's 95% t interval (se and dof kept for an equivalence)."""
    part.se, part.dof, part.p = se, dof, float(p)
    half = float(stats.t.ppf(1 - ALPHA / 2, dof)) * se
    part.low, part.high = part.effect - half, part.effect + half
    return part


# ---- display ------------------------------------------------------------------------------
SHARE_WORDS = ("acc", "stability", "gap", "barrier", "potential", "agreement", "instability", "sparsity", "error")


def is_share(metric: str) -> bool:
    """Metrics that are fractions (accuracy, stability, ...): differences read in percentage points."""
    return any(w in metric for w in SHARE_WORDS)


def format_effect(c: dict[str, Any]) -> str:
    """``r = -0.41 [-0.67, -0.06]``, ``+0.62 pts [+0.10, +1.14]`` or, for an equivalence, its 90% interval
    and margin ``+0.20 pts [-0.30, +0.70] in ±1.00``; ``-`` when untested."""
    if c["effect"] is None:
        return "-"
    if c["statistic"] in ("r", "tau"):
        interval = "" if c["low"] is None else f" [{c['low']:+.2f}, {c['high']:+.2f}]"
        return f"{c['statistic']} = {c['effect']:+.2f}{interval}"
    scale, unit = (100, " pts") if is_share(c["metric"]) else (1, "")
    fmt = (lambda v: f"{scale * v:+.2f}") if scale == 100 else (lambda v: f"{v:+.4g}")
    interval = "" if c["low"] is None else f" [{fmt(c['low'])}, {fmt(c['high'])}]"
    margin = "" if c.get("margin") is None else f" in ±{fmt(c['margin'])[1:]}"
    return f"{fmt(c['effect'])}{unit}{interval}{margin}"


def format_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"
