"""The statistics behind each claim test (scipy): one Part per tested statement, and how parts combine.

A Part holds a test's effect, its 95% interval (90% for an equivalence, two one-sided
tests), the test's name, p and n, and the claimed sign; with the effect the claim
declares (the paper's, or an effect of interest), the test's power there and the n for
80% (power.py). Its verdict follows claims.py's rule. Fewer than 3 values, a constant
variable or no variance give no test and say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from gstbench.reports import ALPHA
from gstbench.reports import power as pw
from gstbench.reports.distributions import normal_quantile, t_cdf, t_quantile, t_sf

MIN_RUNS = 3
SMALLER = "smaller than the paper's effect"
VERDICTS = ("reproduced", SMALLER, "contradicted", "inconclusive")


@dataclass
class EffectTested:
    """The effect a part's power and the smaller-than-paper verdict refer to, in the unit of its test."""

    value: float
    kind: str  # "paper": the paper's number; "interest": declared where the paper gives only a direction
    reason: str = ""
    derived: str = ""  # how it came from the declared value (Kendall's tau from a declared r)

    def as_json(self) -> dict[str, Any]:
        return {"value": self.value, "kind": self.kind, "reason": self.reason,
                **({"derived": self.derived} if self.derived else {})}


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
    one_sided: bool = False  # a non-inferiority test: only a - b > -margin is claimed
    se: float | None = None  # t tests: the standard error and t dof behind the interval
    dof: float | None = None
    # what power.py needs: the test's family ("pearson", "kendall", "trend", "paired", "one-sample", "welch"),
    # the spread of a paired / one-sample t, the groups of a Welch t, the distinct x values of a
    # correlation with their counts (a trend's positions, and the runs at each)
    family: str = ""
    sd: float | None = None
    groups: tuple[float, int, float, int] | None = None  # (var a, n a, var b, n b)
    x_counts: tuple[tuple[float, int], ...] = ()
    tested: EffectTested | None = None
    power: float | None = None
    n_for_power: int | None = None  # the n that would give pw.TARGET_POWER
    power_note: str = ""  # why there is no power

    def interval(self, alpha: float = ALPHA) -> tuple[float | None, float | None]:
        """The effect's (1 - alpha) interval (t, Fisher z or Fieller's z); an equivalence keeps its 90% one."""
        if self.effect is None:
            return None, None
        if self.se is not None and self.margin is None:
            half = float(t_quantile(1 - alpha / 2, self.dof)) * self.se
            return self.effect - half, self.effect + half
        if self.family in ("pearson", "kendall", "trend") and abs(self.effect) < 1:
            var = 1 / (self.n - 3) if self.family == "pearson" else pw.KENDALL_ALT_VAR / (self.n - 4)
            if self.n > (3 if self.family == "pearson" else 4):
                z, half = math.atanh(self.effect), float(normal_quantile(1 - alpha / 2)) * math.sqrt(var)
                return math.tanh(z - half), math.tanh(z + half)
        return self.low, self.high

    def verdict(self, alpha: float = ALPHA) -> str:
        if self.effect is None:
            return "inconclusive"
        if self.margin is not None:  # two one-sided tests: the (1 - 2 alpha) interval against the margin
            if self.se is None:
                return "inconclusive"
            half = float(t_quantile(1 - alpha, self.dof)) * self.se
            low, high = self.effect - half, self.effect + half
            if self.one_sided:  # non-inferiority: the interval above -margin, or wholly below it
                return "reproduced" if low > -self.margin else "contradicted" if high < -self.margin \
                    else "inconclusive"
            if -self.margin < low and high < self.margin:
                return "reproduced"
            if low > self.margin or high < -self.margin:
                return "contradicted"
            return "inconclusive"
        if self.p is not None and self.p < alpha and self.effect != 0:
            return "reproduced" if (self.effect > 0) == (self.sign > 0) else "contradicted"
        if self.p is not None and self.tested is not None and self.rules_out_tested(alpha):
            return SMALLER
        return "inconclusive"

    def rules_out_tested(self, alpha: float = ALPHA) -> bool:
        """The (1 - alpha) interval excludes the effect tested: an effect as large as it is ruled out."""
        low, high = self.interval(alpha)
        if low is None or high is None:
            return False
        return high < self.tested.value if self.tested.value > 0 else low > self.tested.value

    def as_equivalence(self, margin: float) -> None:
        """Turn a difference into an equivalence test (TOST, Schuirmann 1987): its p, and the 90% interval."""
        self.margin = margin
        if self.se is None:
            return
        t_low, t_high = (self.effect + margin) / self.se, (self.effect - margin) / self.se
        self.p = float(max(t_sf(t_low, self.dof), t_cdf(t_high, self.dof)))
        half = float(t_quantile(1 - ALPHA, self.dof)) * self.se
        self.low, self.high = self.effect - half, self.effect + half

    def as_noninferiority(self, margin: float) -> None:
        """Turn a difference a - b into a non-inferiority test (a - b > -margin, one-sided t at 0.05): its p, and the
        90% interval (whose lower end is the one-sided 95% bound)."""
        self.as_equivalence(margin)
        self.one_sided = True
        if self.se is not None:
            self.p = float(t_sf((self.effect + margin) / self.se, self.dof))

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "test": self.test, "statistic": self.statistic, "metric": self.metric,
                "effect": self.effect, "low": self.low, "high": self.high, "p": self.p, "n": self.n,
                "verdict": self.verdict(), **({"margin": self.margin} if self.margin is not None else {}),
                **({"one_sided": True} if self.one_sided else {}),
                **({"note": self.note} if self.note else {}), **self.power_json()}

    def power_json(self) -> dict[str, Any]:
        """The effect tested, the power there and the n for 80% (or why there is none)."""
        return {"effect_tested": self.tested.as_json() if self.tested else None, "power": self.power,
                "n_for_power": self.n_for_power, "power_target": pw.TARGET_POWER,
                **({"power_note": self.power_note} if self.power_note else {})}


def combine(parts: list[Part]) -> tuple[str, Part]:
    """The claim's verdict and the part that decides it (claims.py's module docstring)."""
    m = len(parts)
    verdicts = [p.verdict() for p in parts]
    if all(v == "reproduced" for v in verdicts):
        weakest = max(parts, key=lambda p: -1.0 if p.p is None else p.p)
        return "reproduced", weakest
    against = [p for p in parts if p.verdict(ALPHA / m) == "contradicted"]
    if against:
        return "contradicted", min(against, key=lambda p: 1.0 if p.p is None else p.p)
    smaller = [p for p, v in zip(parts, verdicts) if v != "reproduced" and p.verdict(ALPHA / m) == SMALLER]
    if smaller:
        return SMALLER, smaller[0]
    return "inconclusive", next(p for p, v in zip(parts, verdicts) if v != "reproduced")


def attach_power(part: Part, declared: dict[str, Any] | None) -> Part:
    """The effect the claim declares for this part, in its test's unit, and the test's power there."""
    if not declared:
        part.power_note = "no effect declared (neither the paper's nor one of interest)"
        return part
    value = float(declared["value"])
    derived = ""
    if part.family == "kendall" and declared.get("statistic") == "pearson":  # a declared r, tested by Kendall
        value, derived = 2 / math.pi * math.asin(value), "tau = (2/pi) asin r (Greiner's relation)"
    part.tested = EffectTested(value, declared["kind"], declared.get("reason", ""), derived)
    model = _power_model(part, value)
    if part.effect is None or model is None:
        part.power_note = part.note or "no test, so no power"
        return part
    part.power = model.power(part.n)
    part.n_for_power = model.n_for()
    if part.power is None:
        part.power_note = f"n = {part.n}: too few for the test's power model (at least {model.min_n})"
    elif part.n_for_power is None:
        part.power_note = f"80% needs more than {pw.MAX_N:,} runs"
    return part


def _power_model(part: Part, value: float) -> pw.PowerModel | None:
    if part.family == "pearson":
        return pw.pearson_model(value)
    if part.family == "kendall":
        return pw.kendall_model(value, part.n, [c for _, c in part.x_counts if c > 1])
    if part.family == "trend":
        return pw.trend_model(value, [x for x, _ in part.x_counts], [c for _, c in part.x_counts])
    if part.family in ("paired", "one-sample") and part.sd:
        return pw.one_sample_model(value, part.sd, margin=part.margin, one_sided=part.one_sided)
    if part.family == "welch" and part.groups:
        var_a, n_a, var_b, n_b = part.groups
        return pw.welch_model(value, var_a, n_a, var_b, n_b, margin=part.margin, one_sided=part.one_sided)
    return None


def correlation_part(label: str, x: Sequence[float], y: Sequence[float], statistic: str, sign: int,
                     metric: str) -> Part:
    """Pearson r (Fisher-z interval) or Kendall tau-b (interval by Fieller et al.'s z variance 0.437/(n-4))."""
    from scipy import stats  # its import takes a second: only where a test needs it

    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    part = Part(label, statistic, "r" if statistic == "pearson" else "tau", metric, sign, n=int(a.size),
                family=statistic)
    part.x_counts = tuple((float(v), int(c)) for v, c in zip(*np.unique(a, return_counts=True)))
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
        z, half = math.atanh(part.effect), float(normal_quantile(1 - ALPHA / 2)) * math.sqrt(var)
        part.low, part.high = math.tanh(z - half), math.tanh(z + half)
    return part


def paired_part(label: str, a: Sequence[float], b: Sequence[float], sign: int, metric: str,
                how: str = "over seeds") -> Part:
    """mean(a - b) over pairs: paired t-test (scipy ttest_rel) and its t interval."""
    from scipy import stats  # its import takes a second: only where a test needs it

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    part = Part(label, f"paired t {how}", "difference", metric, sign, n=int(d.size), family="paired")
    if d.size < MIN_RUNS:
        part.note = f"n = {d.size} pairs < {MIN_RUNS}: too few to test"
        return part
    part.effect = float(d.mean())
    part.sd = float(d.std(ddof=1))
    if part.sd == 0:
        part.note = "no variance across pairs: the t-test is undefined"
        return part
    return _with_t_interval(part, part.sd / math.sqrt(d.size), d.size - 1, stats.ttest_rel(a, b).pvalue)


def welch_part(label: str, a: Sequence[float], b: Sequence[float], sign: int, metric: str) -> Part:
    """mean(a) - mean(b): Welch's t-test (scipy ttest_ind, equal_var=False) and its interval."""
    from scipy import stats  # its import takes a second: only where a test needs it

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    part = Part(label, "welch t", "difference", metric, sign, n=int(x.size + y.size), family="welch")
    if min(x.size, y.size) < MIN_RUNS:
        part.note = f"groups of {x.size} and {y.size} runs: fewer than {MIN_RUNS} on a side, too few to test"
        return part
    part.effect = float(x.mean() - y.mean())
    part.groups = (float(x.var(ddof=1)), int(x.size), float(y.var(ddof=1)), int(y.size))
    if part.groups[0] + part.groups[2] == 0:
        part.note = "no variance in either group: the t-test is undefined"
        return part
    se, dof = pw.welch_se_dof(*part.groups)
    return _with_t_interval(part, se, dof, stats.ttest_ind(x, y, equal_var=False).pvalue)


def bound_part(label: str, values: Sequence[float], bound: float, sign: int, metric: str) -> Part:
    """The mean against ``bound``: one-sample t-test (scipy ttest_1samp); the effect is mean - bound."""
    from scipy import stats  # its import takes a second: only where a test needs it

    x = np.asarray(values, dtype=float)
    part = Part(label, "one-sample t", "mean - bound", metric, sign, n=int(x.size), family="one-sample")
    if x.size < MIN_RUNS:
        part.note = f"n = {x.size} < {MIN_RUNS}: too few runs to test"
        return part
    part.effect = float(x.mean() - bound)
    part.sd = float(x.std(ddof=1))
    if part.sd == 0:
        part.note = "no variance across runs: the t-test is undefined"
        return part
    return _with_t_interval(part, part.sd / math.sqrt(x.size), x.size - 1, stats.ttest_1samp(x, bound).pvalue)


def _with_t_interval(part: Part, se: float, dof: float, p: float) -> Part:
    """A t-test's p and the effect's 95% t interval (se and dof kept for an equivalence)."""
    part.se, part.dof, part.p = se, dof, float(p)
    half = float(t_quantile(1 - ALPHA / 2, dof)) * se
    part.low, part.high = part.effect - half, part.effect + half
    return part


# ---- display ------------------------------------------------------------------------------
SHARE_WORDS = ("acc", "stability", "gap", "barrier", "potential", "agreement", "instability", "sparsity", "error")


def is_share(metric: str) -> bool:
    """Metrics that are fractions (accuracy, stability, ...): differences read in percentage points."""
    return any(w in metric for w in SHARE_WORDS)


def _value_format(c: dict[str, Any]) -> tuple[Callable[[float], str], str]:
    """How a part's values read: ``+0.62`` points for fractions, ``+0.0123`` otherwise, and the unit."""
    if is_share(c["metric"]):
        return (lambda v: f"{100 * v:+.2f}"), " pts"
    return (lambda v: f"{v:+.4g}"), ""


def format_effect(c: dict[str, Any]) -> str:
    """``r = -0.41 [-0.67, -0.06]``, ``+0.62 pts [+0.10, +1.14]`` or, for an equivalence, its 90% interval
    and margin ``+0.20 pts [-0.30, +0.70] in ±1.00`` (a non-inferiority: ``> -1.00``); ``-`` when untested."""
    if c["effect"] is None:
        return "-"
    if c["statistic"] in ("r", "tau"):
        interval = "" if c["low"] is None else f" [{c['low']:+.2f}, {c['high']:+.2f}]"
        return f"{c['statistic']} = {c['effect']:+.2f}{interval}"
    fmt, unit = _value_format(c)
    interval = "" if c["low"] is None else f" [{fmt(c['low'])}, {fmt(c['high'])}]"
    margin = "" if c.get("margin") is None else \
        f" > -{fmt(c['margin'])[1:]}" if c.get("one_sided") else f" in ±{fmt(c['margin'])[1:]}"
    return f"{fmt(c['effect'])}{unit}{interval}{margin}"


def format_tested(c: dict[str, Any]) -> str:
    """The effect a part is powered for: ``r = -0.43 (paper)``, ``tau = -0.28 (paper, from r)``,
    ``+1.00 pts (of interest)``; ``-`` when the claim declares none."""
    tested = c.get("effect_tested")
    if not tested:
        return "-"
    if c["statistic"] in ("r", "tau"):
        text = f"{c['statistic']} = {tested['value']:+.2f}"
    else:
        fmt, unit = _value_format(c)
        text = f"{fmt(tested['value'])}{unit}"
    origin = "paper" if tested["kind"] == "paper" else "of interest"
    return f"{text} ({origin}{', from r' if tested.get('derived') else ''})"


def format_power(c: dict[str, Any]) -> tuple[str, str]:
    """(power, n for 80%) as the tables show them: ``0.82``, ``41``; ``-`` where there is none."""
    power = "-" if c.get("power") is None else f"{c['power']:.2f}"
    if c.get("n_for_power") is not None:
        n = f"{c['n_for_power']:,}"
    elif c.get("power") is not None:
        n = f"> {pw.MAX_N:,}"
    else:
        n = "-"
    return power, n


def format_p(p: float | None) -> str:
    return "-" if p is None else f"{p:.2g}"
