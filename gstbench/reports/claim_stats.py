"""The statistics behind each claim test (scipy): one Part per tested statement, and how parts combine.

A Part holds a test's effect, its interval at any level (95% by default; 1 - 2 alpha for
an equivalence's two one-sided tests), the test's name, p and n, and the claimed sign;
with the effect the claim declares (the paper's, or an effect of interest), the test's
power there and the n for 80% (power.py). Its verdict follows the scale below
(docs/definitions.md#claims-and-verdicts). Fewer than 3 values, a constant variable or no
variance give no test and say so.

The verdict scale, after equivalence testing's outcomes (Lakens, Scheel & Isager 2018),
for a part at level alpha, with E the effect tested in the claimed direction:

- ``reproduced``: significant in the claimed direction (p < alpha and the (1 - alpha)
  interval on that side of zero) and, where E is the paper's number, the interval reaches E;
- ``weaker``: significant in the claimed direction, but the interval excludes the paper's
  E toward zero: the direction held, the effect is weaker than the paper's (only where
  the paper gives a number: a direction-only claim claims no size);
- ``absent``: not significant, and the interval excludes E toward zero: no effect of the
  paper's size (or of the size of interest);
- ``contradicted``: significant in the opposite direction;
- ``inconclusive``: the rest: the interval holds both no effect and E.

An equivalence is reproduced inside its margin, contradicted beyond it, inconclusive
otherwise; a non-inferiority likewise above -margin or wholly below it.
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
REPRODUCED, WEAKER, ABSENT, CONTRADICTED, INCONCLUSIVE, NOT_RUN = (
    "reproduced", "weaker", "absent", "contradicted", "inconclusive", "not run")
# From most to least support for the claim; `compare` calls any step down this list a regression. "not run"
# is no verdict: a claim whose groups have no finished run.
VERDICTS = (REPRODUCED, WEAKER, INCONCLUSIVE, ABSENT, CONTRADICTED)
OLD_VERDICTS = {"smaller than the paper's effect": ABSENT}  # exports written before the scale had five steps


def verdict_rank(verdict: str) -> int | None:
    """A verdict's place on the scale (0: reproduced); None for "not run" or a word the scale does not know."""
    verdict = OLD_VERDICTS.get(verdict, verdict)
    return VERDICTS.index(verdict) if verdict in VERDICTS else None


def verdict_label(verdict: str, tested_kind: str | None = None) -> str:
    """The words a table prints: ``weaker`` and ``absent`` name what they are measured against, the paper's effect
    or an effect of interest (a direction-only claim's)."""
    verdict = OLD_VERDICTS.get(verdict, verdict)
    if verdict == WEAKER:
        return "weaker than the paper's effect"
    if verdict == ABSENT:
        return "no effect of the paper's size" if tested_kind == "paper" else "no effect of the size of interest"
    return verdict


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
    missing: str = ""  # why the part is not run: a group it compares has no finished run
    block: Any = None  # the claim_power.Block of parts computed from the same runs, if any

    def interval(self, alpha: float = ALPHA) -> tuple[float | None, float | None]:
        """The effect's (1 - alpha) interval (t, Fisher z, or Fieller's z widened for ties in x); an equivalence's
        and a non-inferiority's is the (1 - 2 alpha) one, as their one-sided tests at alpha use it."""
        if self.effect is None:
            return None, None
        if self.se is not None:
            half = float(t_quantile(1 - (alpha if self.margin is not None else alpha / 2), self.dof)) * self.se
            return self.effect - half, self.effect + half
        if self.family in ("pearson", "kendall", "trend") and abs(self.effect) < 1:
            if self.n > (3 if self.family == "pearson" else 4):
                sd = 1 / math.sqrt(self.n - 3) if self.family == "pearson" else \
                    pw.kendall_interval_sd(self.n, [c for _, c in self.x_counts if c > 1])
                z, half = math.atanh(self.effect), float(normal_quantile(1 - alpha / 2)) * sd
                return math.tanh(z - half), math.tanh(z + half)
            return None, None
        return self.low, self.high

    def sized(self) -> bool:
        """The claim states the paper's number for this part: reproducing it needs the size too."""
        return self.tested is not None and self.tested.kind == "paper" and self.margin is None

    def verdict(self, alpha: float = ALPHA) -> str:
        """This part's place on the scale at level ``alpha`` (the module docstring)."""
        if self.missing:
            return NOT_RUN
        if self.effect is None:
            return INCONCLUSIVE
        low, high = self.interval(alpha)
        if self.margin is not None:  # two one-sided tests (or one): the (1 - 2 alpha) interval against the margin
            if low is None:
                return INCONCLUSIVE
            if self.one_sided:  # non-inferiority: the interval above -margin, or wholly below it
                return REPRODUCED if low > -self.margin else CONTRADICTED if high < -self.margin else INCONCLUSIVE
            if -self.margin < low and high < self.margin:
                return REPRODUCED
            return CONTRADICTED if low > self.margin or high < -self.margin else INCONCLUSIVE
        s = 1 if self.sign >= 0 else -1
        effect = s * self.effect  # in the claimed direction: positive holds the claim
        lo, hi = (None, None) if low is None else sorted((s * low, s * high))
        significant = self.p is not None and self.p < alpha and effect != 0
        if significant and effect < 0 and (hi is None or hi < 0):
            return CONTRADICTED
        tested = None if self.tested is None else s * self.tested.value
        if significant and effect > 0 and (lo is None or lo > 0):
            return WEAKER if self.sized() and hi is not None and hi < tested else REPRODUCED
        if tested is not None and hi is not None and hi < tested:
            return ABSENT
        return INCONCLUSIVE

    def as_equivalence(self, margin: float) -> None:
        """Turn a difference into an equivalence test (TOST, Schuirmann 1987): its p, and the 90% interval."""
        self.margin = margin
        if self.se is None:
            return
        t_low, t_high = (self.effect + margin) / self.se, (self.effect - margin) / self.se
        self.p = float(max(t_sf(t_low, self.dof), t_cdf(t_high, self.dof)))
        self.low, self.high = self.interval()

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
                "verdict": self.verdict(), "verdict_label": verdict_label(self.verdict(), self.tested_kind()),
                "level": self.level(), **({"margin": self.margin} if self.margin is not None else {}),
                **({"one_sided": True} if self.one_sided else {}),
                **({"note": self.note} if self.note else {}), **({"missing": self.missing} if self.missing else {}),
                **self.power_json()}

    def tested_kind(self) -> str | None:
        return None if self.tested is None else self.tested.kind

    def level(self, alpha: float = ALPHA) -> float:
        """The confidence of this part's interval at level ``alpha``: 1 - alpha, or 1 - 2 alpha for one-sided tests."""
        return 1 - (2 * alpha if self.margin is not None else alpha)

    def at_level(self, alpha: float) -> dict[str, Any]:
        """This part's row at level ``alpha``: its interval there and its verdict there."""
        low, high = self.interval(alpha)
        verdict = self.verdict(alpha)
        return {**self.as_json(), "low": low, "high": high, "level": self.level(alpha), "verdict": verdict,
                "verdict_label": verdict_label(verdict, self.tested_kind())}

    def power_json(self) -> dict[str, Any]:
        """The effect tested, the power there and the n for 80% (or why there is none)."""
        return {"effect_tested": self.tested.as_json() if self.tested else None, "power": self.power,
                "n_for_power": self.n_for_power, "power_target": pw.TARGET_POWER,
                **({"power_note": self.power_note} if self.power_note else {})}


def combine(parts: list[Part]) -> tuple[str, Part, float]:
    """The claim's verdict, the part that decides it and the level its row is shown at (alpha for a reproduced
    claim, alpha / number of parts otherwise).

    Reproduced when every part is at alpha (an intersection-union test: valid at alpha without
    correction); otherwise each part is judged at alpha / m (Bonferroni): contradicted when
    any part is; weaker when every part is significant in the claimed direction at alpha and
    one is weaker there; absent when a part's interval there excludes the effect tested
    toward zero; inconclusive otherwise. A part whose group has no finished run makes the
    claim "not run", unless a part that ran contradicts it.
    """
    run = [p for p in parts if not p.missing]
    if len(run) < len(parts):  # a group without finished runs: no verdict, unless what did run contradicts
        against = [p for p in run if p.verdict(ALPHA / len(parts)) == CONTRADICTED]
        if against:
            return CONTRADICTED, min(against, key=lambda p: 1.0 if p.p is None else p.p), ALPHA / len(parts)
        return NOT_RUN, next(p for p in parts if p.missing), ALPHA
    m = len(parts)
    at_alpha = [p.verdict() for p in parts]
    if all(v == REPRODUCED for v in at_alpha):
        return REPRODUCED, max(parts, key=lambda p: -1.0 if p.p is None else p.p), ALPHA
    corrected = ALPHA / m
    at_corrected = [p.verdict(corrected) for p in parts]
    against = [p for p, v in zip(parts, at_corrected) if v == CONTRADICTED]
    if against:
        return CONTRADICTED, min(against, key=lambda p: 1.0 if p.p is None else p.p), corrected
    weaker = [p for p, v in zip(parts, at_corrected) if v == WEAKER]
    if weaker and all(v in (REPRODUCED, WEAKER) for v in at_alpha):
        return WEAKER, weaker[0], corrected
    absent = [p for p, v in zip(parts, at_corrected) if v in (ABSENT, WEAKER)]
    if absent:
        return ABSENT, min(absent, key=lambda p: p.verdict(corrected) != ABSENT), corrected
    return INCONCLUSIVE, next(p for p, v in zip(parts, at_alpha) if v != REPRODUCED), corrected


def attach_power(part: Part, declared: dict[str, Any] | None, with_power: bool = True) -> Part:
    """The effect the claim declares for this part, in its test's unit, and (``with_power``) the test's power
    there."""
    if not declared:
        part.power_note = "no effect declared (neither the paper's nor one of interest)"
        return part
    value = float(declared["value"])
    derived = ""
    if part.family == "kendall" and declared.get("statistic") == "pearson":  # a declared r, tested by Kendall
        value, derived = 2 / math.pi * math.asin(value), "tau = (2/pi) asin r (Greiner's relation)"
    part.tested = EffectTested(value, declared["kind"], declared.get("reason", ""), derived)
    if not with_power:
        part.power_note = "not computed"
        return part
    model = power_model(part)
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


def power_model(part: Part) -> pw.PowerModel | None:
    """How likely ``part``'s test is to come out reproduced at any n, at the effect tested."""
    if part.tested is None:
        return None
    s = 1 if part.sign >= 0 else -1
    # the claimed direction positive; an equivalence is powered at a difference, not in a direction
    value = part.tested.value if part.margin is not None else s * part.tested.value
    size = s * part.tested.value if part.sized() else None
    alpha = ALPHA
    if part.family == "pearson":
        return pw.pearson_model(value, alpha, size)
    if part.family == "kendall":
        return pw.kendall_model(value, part.n, [c for _, c in part.x_counts if c > 1], alpha, size)
    if part.family == "trend":
        return pw.trend_model(value, [x for x, _ in part.x_counts], [c for _, c in part.x_counts], alpha, size)
    if part.family in ("paired", "one-sample") and part.sd:
        return pw.one_sample_model(value, part.sd, alpha, margin=part.margin, one_sided=part.one_sided, size=size)
    if part.family == "welch" and part.groups:
        var_a, n_a, var_b, n_b = part.groups
        return pw.welch_model(value, var_a, n_a, var_b, n_b, alpha, margin=part.margin, one_sided=part.one_sided,
                              size=size)
    return None


def correlation_part(label: str, x: Sequence[float], y: Sequence[float], statistic: str, sign: int,
                     metric: str) -> Part:
    """Pearson r (Fisher-z interval) or Kendall tau-b (interval by Fieller et al.'s z variance 0.437/(n-4), widened
    for ties in x)."""
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
    res = stats.pearsonr(a, b) if statistic == "pearson" else stats.kendalltau(a, b)
    part.effect, part.p = float(res.statistic), float(res.pvalue)
    part.low, part.high = part.interval()
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
    part.low, part.high = part.interval()
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
    and margin ``+0.20 pts [-0.30, +0.70] in ±1.00`` (a non-inferiority: ``> -1.00``); an interval at another level
    than its test's usual one (a claim of several parts, judged at 0.05 / parts) names it: ``[..] 97.5%``;
    ``-`` when untested."""
    if c["effect"] is None:
        return "-"
    usual = 0.90 if c.get("margin") is not None else 0.95
    level = "" if c.get("level") is None or abs(c["level"] - usual) < 1e-9 or c["low"] is None \
        else f" {100 * c['level']:.4g}%"
    if c["statistic"] in ("r", "tau"):
        interval = "" if c["low"] is None else f" [{c['low']:+.2f}, {c['high']:+.2f}]"
        return f"{c['statistic']} = {c['effect']:+.2f}{interval}{level}"
    fmt, unit = _value_format(c)
    interval = "" if c["low"] is None else f" [{fmt(c['low'])}, {fmt(c['high'])}]"
    margin = "" if c.get("margin") is None else \
        f" > -{fmt(c['margin'])[1:]}" if c.get("one_sided") else f" in ±{fmt(c['margin'])[1:]}"
    return f"{fmt(c['effect'])}{unit}{interval}{level}{margin}"


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
