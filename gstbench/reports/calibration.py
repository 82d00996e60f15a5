"""Verdict calibration: every claim kind driven through the real claim pipeline on planted data, its verdicts counted.

Each design declares one claim as a suite would (``parse_claims``), plants runs whose true
effect is a multiple of the effect the claim tests (0, half, the tested effect, twice it,
its opposite), judges each planted data set with ``evaluate_claims`` and counts the
claim's verdicts. The claim's stated power comes from the same pipeline on data whose
sample moments equal the planted truth at the tested effect (the spread the power
models read is then the true one). An equivalence is powered at no difference, so its
truths are multiples of its margin instead: 0 (the tested effect), half the margin, the
margin (where "reproduced" must be rare), twice it and its opposite.

Goals (docs/definitions.md#calibration), each checked against its simulation error:
``reproduced`` at a true effect of 0 at most alpha; ``contradicted`` at the tested effect
at most alpha / 2; ``reproduced`` at the tested effect within 3 points of the stated
power; and no verdict whose words the truth contradicts (``reproduced`` where the truth
is 0 or opposite, ``weaker`` outside (0, the paper's effect), ``absent`` at or beyond
the tested effect, ``contradicted`` at 0 or in the claimed direction) more than alpha
of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from gstbench.plan.claims import parse_claims
from gstbench.reports import ALPHA
from gstbench.reports import power as pw
from gstbench.reports.claim_stats import ABSENT, CONTRADICTED, NOT_RUN, REPRODUCED, VERDICTS, WEAKER
from gstbench.reports.claims import Run, evaluate_claims

TRUTHS = (0.0, 0.5, 1.0, 2.0, -1.0)  # multiples of the tested effect (of the margin for an equivalence)
POWER_WITHIN = 0.03


@dataclass
class Design:
    """One claim as a suite declares it, and how to plant its runs at a true effect."""

    name: str
    declaration: dict[str, Any]  # a [[claims]] table
    plant: Callable[[np.random.Generator, float, bool], list[Run]]  # (rng, multiple, exact moments) -> runs
    groups: dict[str, dict[str, list[Any]]]
    axis_labels: dict[str, list[str]]
    margin: float | None = None  # an equivalence or non-inferiority: its truths are multiples of the margin
    one_sided: bool = False
    tested: float = 0.0  # the effect tested, in the claimed direction (positive)
    sized: bool = False  # the paper's number: reproducing needs the size

    def claim(self) -> dict[str, Any]:
        return parse_claims([{"id": self.name, "statement": self.name, **self.declaration}], "calibration")[0]

    def truth(self, multiple: float) -> float:
        """The true effect at ``multiple``, in the claimed direction."""
        return multiple * (self.margin if self.margin is not None else self.tested)

    def wrong(self, verdict: str, multiple: float) -> bool:
        """Whether the verdict's words say something the planted truth contradicts."""
        t = self.truth(multiple)
        if self.margin is not None:
            inside = t > -self.margin if self.one_sided else abs(t) < self.margin
            return (verdict == REPRODUCED and not inside) or (verdict == CONTRADICTED and inside)
        e = self.tested
        return ((verdict == REPRODUCED and t <= 0) or (verdict == WEAKER and not 0 < t < e)
                or (verdict == ABSENT and t >= e) or (verdict == CONTRADICTED and t >= 0))


# ---- planting ------------------------------------------------------------------------------------
def _exact(z: np.ndarray) -> np.ndarray:
    """Noise with sample mean 0 and sample sd 1 exactly."""
    z = z - z.mean()
    return z / z.std(ddof=1)


def _normal(rng: np.random.Generator, n: int, exact: bool) -> np.ndarray:
    z = rng.standard_normal(n)
    return _exact(z) if exact else z


def _correlated(rng: np.random.Generator, n: int, r: float, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """x, y of a bivariate normal at correlation ``r`` (exactly ``r`` in the sample when ``exact``)."""
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    if exact:
        x = _exact(x)
        z = z - z.mean()
        z = _exact(z - (z @ x) / (x @ x) * x)
    return x, r * x + math.sqrt(1 - r * r) * z


def _run(seed: int, values: dict[str, float], **keys: str) -> Run:
    return Run(dict(keys), seed, values)


def correlation_design(name: str, statistics: list[str], r: float, n: int, paper: bool) -> Design:
    effect = {"paper_effect": r, "effect_reason": "planted"} if paper else \
        {"effect_of_interest": r, "effect_reason": "planted"}

    def plant(rng, multiple, exact):
        x, y = _correlated(rng, n, max(min(multiple * r, 0.99), -0.99), exact)
        return [_run(i, {"x": a, "y": b}, group="g") for i, (a, b) in enumerate(zip(x, y))]

    test = {"kind": "correlation", "x": "x", "y": "y", "sign": "negative" if r < 0 else "positive",
            "statistic": statistics, "runs": "all"}
    return Design(name, {**effect, "test": test}, plant, {}, {}, tested=abs(r), sized=paper)


def _groups(*names: str) -> dict[str, dict[str, list[Any]]]:
    return {g: {"group": [g]} for g in names}


def paired_design(name: str, delta: float, sd: float, seeds: int, paper: bool, within: int = 0) -> Design:
    """a - b paired over seeds (a seed effect both groups share), ``within`` levels each its own part."""
    effect = {"paper_effect": delta, "effect_reason": "planted"} if paper else \
        {"effect_of_interest": delta, "effect_reason": "planted"}
    levels = [str(i) for i in range(within)] or [""]

    def plant(rng, multiple, exact):
        runs = []
        for level in levels:
            seed_effect = rng.normal(0.5, 0.05, seeds)
            d = multiple * delta + sd * _normal(rng, seeds, exact)
            extra = {"level": level} if level else {}
            runs += [_run(s, {"m": seed_effect[s] + d[s]}, group="a", **extra) for s in range(seeds)]
            runs += [_run(s, {"m": seed_effect[s]}, group="b", **extra) for s in range(seeds)]
        return runs

    test = {"kind": "difference", "metric": "m", "a": "a", "b": "b", "sign": "positive",
            **({"within": "level"} if within else {})}
    return Design(name, {**effect, "test": test}, plant, _groups("a", "b"), {"level": levels} if within else {},
                  tested=delta, sized=paper)


def welch_design(name: str, delta: float, sd_a: float, n_a: int, sd_b: float, n_b: int) -> Design:
    def plant(rng, multiple, exact):
        a = multiple * delta + sd_a * _normal(rng, n_a, exact)
        b = sd_b * _normal(rng, n_b, exact)
        return [_run(i, {"m": v}, group="a") for i, v in enumerate(a)] + \
            [_run(100 + i, {"m": v}, group="b") for i, v in enumerate(b)]

    test = {"kind": "difference", "metric": "m", "a": "a", "b": "b", "sign": "positive"}
    return Design(name, {"effect_of_interest": delta, "effect_reason": "planted", "test": test}, plant,
                  _groups("a", "b"), {}, tested=delta)


def order_design(name: str, step: float, sd: float, seeds: int, paired: bool) -> Design:
    """Three groups rising by ``step`` each: two adjacent differences that share the middle group."""
    names = ["low", "mid", "high"]

    def plant(rng, multiple, exact):
        runs = []
        if paired:  # per seed: a seed effect, and the two adjacent differences
            seed_effect = rng.normal(0.5, 0.05, seeds)
            z = rng.standard_normal((seeds, 3))
            if exact:
                z = z - z.mean(0)
                z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z.T, ddof=1))).T
            for s in range(seeds):
                runs += [_run(s, {"m": seed_effect[s] + j * multiple * step + sd * z[s, j]}, group=g)
                         for j, g in enumerate(names)]
        else:
            for j, g in enumerate(names):
                values = j * multiple * step + sd * _normal(rng, seeds, exact)
                runs += [_run(100 * j + i, {"m": v}, group=g) for i, v in enumerate(values)]
        return runs

    test = {"kind": "order", "metric": "m", "groups": names, "sign": "positive"}
    return Design(name, {"effect_of_interest": step, "effect_reason": "planted", "test": test}, plant,
                  _groups(*names), {}, tested=step)


def trend_design(name: str, tau: float, positions: int, runs: int) -> Design:
    """y = beta * position + N(0, 1), beta set so that tau-b's expectation is the planted multiple of ``tau``."""
    labels = [str(i) for i in range(positions)]
    beta_for = lambda target: pw.trend_beta(target, range(positions), [runs] * positions)  # noqa: E731
    betas = {k: beta_for(k * tau) for k in TRUTHS}

    def plant(rng, multiple, exact):
        beta = betas.get(multiple, beta_for(multiple * tau))
        return [_run(p * runs + i, {"m": beta * p + float(rng.standard_normal())}, position=labels[p])
                for p in range(positions) for i in range(runs)]

    test = {"kind": "trend", "metric": "m", "axis": "position", "sign": "positive"}
    return Design(name, {"effect_of_interest": tau, "effect_reason": "planted", "test": test}, plant, {},
                  {"position": labels}, tested=tau)


def margin_design(name: str, margin: float, sd: float, seeds: int, one_sided: bool) -> Design:
    """TOST (or non-inferiority) of a - b within ``margin``, paired over seeds, powered at no difference."""
    def plant(rng, multiple, exact):
        d = multiple * margin + sd * _normal(rng, seeds, exact)
        return [_run(s, {"acc": 0.8 + d[s]}, group="a") for s in range(seeds)] + \
            [_run(s, {"acc": 0.8}, group="b") for s in range(seeds)]

    kind = "noninferiority" if one_sided else "equivalence"
    test = {"kind": kind, "metric": "acc", "a": "a", "b": "b", "margin": margin}
    return Design(name, {"effect_of_interest": 0.0, "effect_reason": "planted", "test": test}, plant,
                  _groups("a", "b"), {}, margin=margin, one_sided=one_sided)


def bound_design(name: str, bound: float, below_by: float, sd: float, n: int) -> Design:
    def plant(rng, multiple, exact):
        values = bound - multiple * below_by + sd * _normal(rng, n, exact)
        return [_run(i, {"m": v}, group="g") for i, v in enumerate(values)]

    test = {"kind": "bound", "metric": "m", "below": bound, "runs": "all"}
    return Design(name, {"effect_of_interest": -below_by, "effect_reason": "planted", "test": test}, plant, {}, {},
                  tested=below_by)


def designs() -> list[Design]:
    """Every claim kind, with one part and with several (the built-in suites' shapes and sizes)."""
    return [
        correlation_design("pearson, paper r = -0.43, 42 runs", ["pearson"], -0.43, 42, paper=True),
        correlation_design("pearson + kendall, paper r = -0.43, 42 runs", ["pearson", "kendall"], -0.43, 42,
                           paper=True),
        correlation_design("pearson, paper r = -0.43, 300 runs (size decided)", ["pearson"], -0.43, 300, paper=True),
        correlation_design("kendall, r = 0.3 of interest, 30 runs", ["kendall"], 0.3, 30, paper=False),
        paired_design("paired, 1 pt of interest, sd 1 pt, 7 seeds", 0.01, 0.01, 7, paper=False),
        paired_design("paired, paper +0.5 pts, sd 0.5 pts, 10 seeds", 0.005, 0.005, 10, paper=True),
        paired_design("paired within 3 levels, 1 pt, sd 0.7 pts, 8 seeds", 0.01, 0.007, 8, paper=False, within=3),
        welch_design("welch, 1 pt of interest, 3 + 4 runs", 0.01, 0.006, 3, 0.008, 4),
        order_design("order of 3, paired, 1 pt steps, sd 1 pt, 12 seeds", 0.01, 0.01, 12, paired=True),
        order_design("order of 3, welch, 1 pt steps, sd 0.8 pts, 10 runs", 0.01, 0.008, 10, paired=False),
        trend_design("trend, tau = 0.3 of interest, 7 x 3", 0.3, 7, 3),
        margin_design("equivalence within 1 pt, sd 0.8 pts, 8 seeds", 0.01, 0.008, 8, one_sided=False),
        margin_design("non-inferiority > -1 pt, sd 1 pt, 6 seeds", 0.01, 0.01, 6, one_sided=True),
        bound_design("bound, 2 pts below, sd 2 pts, 8 runs", 0.02, 0.02, 0.02, 8),
    ]


# ---- simulating ----------------------------------------------------------------------------------
@dataclass
class Calibration:
    """One design's verdict frequencies at each truth, its stated power, and which goals it met."""

    design: str
    parts: int
    power: float | None
    frequencies: dict[float, dict[str, float]]  # multiple -> verdict -> share of simulations
    wrong: dict[float, dict[str, float]]  # multiple -> verdict -> share of simulations with that verdict, against the truth
    simulations: int
    tested: float = 1.0  # the multiple at the tested effect (0 for an equivalence: no difference)
    null: float = 0.0  # the multiple where the claim is false (the margin for an equivalence)

    def error(self, share: float) -> float:
        """Twice the simulation's standard error at ``share`` (a goal is met within it)."""
        return 2 * math.sqrt(max(share * (1 - share), 0.0025) / self.simulations)

    def goals(self, alpha: float = ALPHA) -> dict[str, bool]:
        at, null = self.frequencies[self.tested], self.frequencies[self.null]
        return {
            "reproduced at 0 <= alpha": null[REPRODUCED] <= alpha + self.error(alpha),
            "contradicted at the tested effect <= alpha / 2": at[CONTRADICTED] <= alpha / 2 + self.error(alpha / 2),
            "reproduced at the tested effect within 3 points of the power":
                self.power is not None and abs(at[REPRODUCED] - self.power) <= POWER_WITHIN + self.error(self.power),
            "no label against the truth more than alpha": all(w <= alpha + self.error(alpha) for by in
                                                             self.wrong.values() for w in by.values()),
        }


def calibrate(design: Design, simulations: int, seed: int = 0, truths: tuple[float, ...] = TRUTHS) -> Calibration:
    """The design's claim judged on ``simulations`` planted data sets at each truth."""
    claim = design.claim()
    at_tested = 0.0 if design.margin is not None else 1.0
    stated = evaluate_claims([claim], design.groups, design.plant(np.random.default_rng(seed), at_tested, True),
                             design.axis_labels)[0]
    frequencies, wrong = {}, {}
    for multiple in truths:
        rng = np.random.default_rng([seed, int(round(multiple * 1000)) % 2 ** 31])
        counts = {v: 0 for v in (*VERDICTS, NOT_RUN)}
        for _ in range(simulations):
            verdict = evaluate_claims([claim], design.groups, design.plant(rng, multiple, False),
                                      design.axis_labels, power=False)[0]["verdict"]
            counts[verdict] += 1
        frequencies[multiple] = {v: c / simulations for v, c in counts.items()}
        wrong[multiple] = {v: c / simulations for v, c in counts.items() if design.wrong(v, multiple)}
    margin = design.margin is not None
    return Calibration(design.name, len(stated["parts"]), stated["power"], frequencies, wrong, simulations,
                       tested=0.0 if margin else 1.0, null=(-1.0 if design.one_sided else 1.0) if margin else 0.0)
