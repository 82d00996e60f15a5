"""Claims: a paper's finding written as a test on stored runs, and its verdict (REFERENCE.md section 4).

What a suite declares is parsed and checked in plan/claims.py; each kind of test is one class
in plan/claim_kinds.py, which computes its parts from the runs of a split through this module's
``_Split`` (the statistics of each test family); this module combines them into verdicts and renders them.
A suite declares ``[[claims]]`` (id, source, statement, the paper's figure, one or more
``test`` tables) and ``[groups]`` (named sets of configurations, replaced per scale under
``[scales.<scale>.groups]``, so the quick and paper scales share one declaration). Test
kinds:

- ``correlation``: Pearson r and/or Kendall tau between two per-run metrics, with a sign;
- ``difference``: a metric between two groups (paired over seeds when both ran the same
  seeds, Welch otherwise), or two metrics of the same runs (paired per run), with a sign;
- ``order``: groups in a claimed order on a metric, each adjacent pair a difference;
- ``trend``: Kendall tau between the position along an axis (or a list of groups) and a metric;
- ``equivalence``: a difference inside a declared margin (two one-sided tests);
- ``noninferiority``: a difference a - b above -margin (one side of an equivalence: "comparable or better");
- ``bound``: a metric's mean below or above a value (one-sample t-test).

``within = KEY`` repeats a test for each value of a config key that one of its groups takes. A claim declares the
effect its tests are powered for, in the unit of each test: ``paper_effect`` where the
paper gives a number, otherwise ``effect_of_interest`` with its ``effect_reason`` (on the
claim, or on one test where the units differ); each part gets its test's power there and
the n for 80% (power.py). Verdicts: a part is ``reproduced`` when its effect has the
claimed sign and p < 0.05 (an equivalence: two one-sided tests at 0.05, i.e. its 90%
interval inside the margin; a non-inferiority: its 90% interval above -margin),
``contradicted`` when the opposite is significant (an equivalence: the difference beyond
the margin; a non-inferiority: below -margin), ``smaller than the paper's effect`` when
it is not significant and its 95% interval excludes the declared effect, ``inconclusive``
otherwise. A claim is reproduced when every part is (an intersection-union test, valid at
0.05 without correction), contradicted when any part contradicts at 0.05 / number of
parts (Bonferroni), smaller than the paper's effect when, short of that, a part that is
not reproduced is smaller at 0.05 / number of parts, inconclusive otherwise. Fewer than 3
runs (or pairs, or runs in a group) give no test.
"""


from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gstbench.reports.claim_power import Block, claim_power
from gstbench.reports.claim_stats import (ALPHA, NOT_RUN, VERDICTS, Part, attach_power, bound_part, combine,
                                          correlation_part, format_effect, format_p, format_power, format_tested,
                                          is_share, paired_part, verdict_label, welch_part)
from gstbench.plan.claim_kinds import CLAIM_KINDS, name_of
from gstbench.plan.selection import group_predicate, label_at

# ---- evaluation ---------------------------------------------------------------------------
@dataclass
class Run:
    """A finished run as claims see it: its stored spec, seed, final metrics and per-round metrics."""

    spec: dict[str, Any]
    seed: int
    metrics: dict[str, Any]
    rounds: list[dict[str, Any]] = field(default_factory=list)

    def value(self, metric: str, round_index: int | None = None) -> float | None:
        source = self.metrics
        if round_index is not None:
            if not self.rounds or not -len(self.rounds) <= round_index < len(self.rounds):
                return None
            source = self.rounds[round_index]
        v = source.get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def evaluate_claims(claims: list[dict[str, Any]], groups: dict[str, dict[str, list[Any]]], runs: list[Run],
                    axis_labels: dict[str, list[str]], power: bool = True) -> list[dict[str, Any]]:
    """Every claim's verdict from the finished runs, as plain data (``parts`` holds each tested statement at 0.05;
    the claim's own fields are its deciding part at the level the verdict used, and the whole claim's power).
    ``power=False`` leaves the claim's power out (a simulation per claim), for callers that judge many planted
    data sets."""
    out = []
    for claim in claims:
        parts: list[Part] = []
        for test in claim["tests"]:
            parts += _test_parts(test, groups, runs, axis_labels, power)
        verdict, deciding, level = combine(parts)
        row = deciding.at_level(level)
        whole, needed, why = claim_power(parts, deciding) if power and not deciding.missing else \
            (None, None, deciding.missing or "not computed")
        out.append({"id": claim["id"], "source": claim["source"], "statement": claim["statement"],
                    "paper": claim["paper"], "verdict": verdict,
                    "verdict_label": verdict_label(verdict, deciding.tested_kind()), "test": deciding.test,
                    "statistic": deciding.statistic, "metric": deciding.metric, "effect": deciding.effect,
                    "low": row["low"], "high": row["high"], "level": row["level"], "p": deciding.p,
                    "n": deciding.n, "deciding": deciding.label, "parts": [p.as_json() for p in parts],
                    **({"margin": deciding.margin} if deciding.margin is not None else {}),
                    **({"one_sided": True} if deciding.one_sided else {}),
                    **({"missing": deciding.missing} if deciding.missing else {}),
                    **deciding.power_json(), "power": whole, "n_for_power": needed,
                    **({"power_note": why} if whole is None or needed is None else {}),
                    "power_of": "claim" if len(parts) > 1 else "part",
                    **({"design_check": claim["design_check"]} if claim.get("design_check") else {})})
    return out


def _splits(test: dict[str, Any], runs: list[Run], axis_labels: dict[str, list[str]]) -> list[tuple[str, list[Run]]]:
    """("", all runs), or one split per value of ``within``; a run without that key joins every split."""
    within = test.get("within")
    if not within:
        return [("", runs)]
    values = {label_at(r.spec, within) for r in runs} - {"-"}
    order = axis_labels.get(within, [])
    ordered = sorted(values, key=lambda v: (order.index(v) if v in order else len(order), v))
    name = within.rsplit(".", 1)[-1]  # prune.period -> period=1ep
    return [(f"{name}={v}", [r for r in runs if label_at(r.spec, within) in (v, "-")]) for v in ordered]


@dataclass
class _Split:
    """The runs of one split of a test (all of them, or one value of its ``within`` key) and the statistics a claim
    kind computes its parts with (plan/claim_kinds.py's ``Split``): each family with its interval and power model."""

    prefix: str
    runs: list[Run]
    round: int | None
    sign: int
    axis_labels: dict[str, list[str]]
    groups: dict[str, dict[str, list[Any]]]

    def pick(self, ref: str | list[str], runs: list[Run] | None = None) -> list[Run]:
        return [r for r in (self.runs if runs is None else runs) if group_predicate(ref, self.groups)(r.spec)]

    def correlation(self, label, x, y, statistic, metric) -> Part:
        return correlation_part(label, x, y, statistic, self.sign, metric)

    def paired(self, label, a, b, metric, how, sign) -> Part:
        return paired_part(label, a, b, sign, metric, how)

    def difference(self, label, a, b, metric, sign) -> Part:
        return group_difference(label, a, b, metric, self.round, sign)

    def bound(self, label, values, bound, sign, metric) -> Part:
        return bound_part(label, values, bound, sign, metric)

    def within_margin(self, part: Part, margin: float, one_sided: bool) -> None:
        """An equivalence (TOST inside ±margin) or, ``one_sided``, a non-inferiority (a - b > -margin)."""
        (part.as_noninferiority if one_sided else part.as_equivalence)(margin)
        width = f"{100 * part.margin:g} pts" if is_share(part.metric) else f"{part.margin:g}"
        part.test = (f"non-inferiority > -{width} ({part.test}; one-sided, 90% interval)" if one_sided
                     else f"TOST ±{width} ({part.test}; 90% interval)")

    def joint_correlations(self, parts: list[Part]) -> None:
        _join(Block("correlation", parts))

    def joint_order(self, parts: list[Part], chosen: list[list[Run]], metric: str) -> None:
        """An order's adjacent differences share runs: simulated together for the claim's power."""
        by_seed = [_by_seed(runs, metric, self.round) for runs in chosen]
        if all(p.family == "paired" for p in parts) and all(set(b) == set(by_seed[0]) for b in by_seed):
            seeds = sorted(by_seed[0])
            means = np.array([[np.mean(b[s]) for b in by_seed] for s in seeds])
            _join(Block("paired-order", parts, cov=np.atleast_2d(np.cov(np.diff(means, axis=1).T, ddof=1))))
        elif all(p.family == "welch" for p in parts):
            values = [[v for vs in b.values() for v in vs] for b in by_seed]
            _join(Block("welch-order", parts, variances=tuple(float(np.var(v, ddof=1)) for v in values),
                        sizes=tuple(len(v) for v in values)))


def _join(block: Block) -> None:
    for part in block.parts:
        part.block = block


def _test_parts(test: dict[str, Any], groups: dict, runs: list[Run], axis_labels: dict[str, list[str]],
                power: bool = True) -> list[Part]:
    kind, rnd = CLAIM_KINDS[test["kind"]], test.get("round")
    sign = 1 if test.get("sign", "positive") == "positive" else -1
    parts: list[Part] = []
    for name, members in _splits(test, runs, axis_labels):
        split = _Split(f"{name}: " if name else "", members, rnd, sign, axis_labels, groups)
        compared = kind.compared(test)
        empty = [ref for ref in compared if not split.pick(ref)]
        if name and len(empty) == len(compared):
            continue  # a value none of the claim's groups takes (voita-scratch's levels are two of posttrain's three)
        if empty:  # no verdict from no runs: the claim says which group and why
            parts.append(Part(f"{split.prefix}{name_of(empty[0])}", kind.name, "-",
                              test.get("metric", test.get("y", "")), sign,
                              missing=f"group '{name_of(empty[0])}' has no finished run"))
            continue
        parts += kind.parts(test, split)
    if not parts:
        parts.append(Part(f"{test.get('within')}: no values", kind.name, "-", test.get("metric", ""), sign,
                          missing="no finished run has a value at the 'within' key"))
    return [attach_power(part, test.get("effect"), power) for part in parts]


# ---- pairing runs by seed -------------------------------------------------------------------
def _by_seed(runs: list[Run], metric: str, round_index: int | None) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in runs:
        v = r.value(metric, round_index)
        if v is not None:
            out.setdefault(r.seed, []).append(v)
    return out


def group_difference(label: str, a: list[Run], b: list[Run], metric: str, round_index: int | None,
                     sign: int) -> Part:
    """a - b on ``metric``: paired over seeds (each group's mean per seed) when both ran the same seeds, else Welch."""
    sa, sb = _by_seed(a, metric, round_index), _by_seed(b, metric, round_index)
    if sa and set(sa) == set(sb):
        seeds = sorted(sa)
        return paired_part(label, [float(np.mean(sa[s])) for s in seeds], [float(np.mean(sb[s])) for s in seeds],
                           sign, metric)
    return welch_part(label, [v for vs in sa.values() for v in vs], [v for vs in sb.values() for v in vs], sign,
                      metric)


# ---- display ------------------------------------------------------------------------------
CLAIM_HEADERS = ["claim", "paper's figure", "measured [interval]", "test", "p", "n", "effect tested", "power",
                 "n for 80%", "verdict"]


def claim_rows(claims: list[dict[str, Any]], mark: Callable[[str], Any] = str.upper) -> list[tuple[str, list[Any]]]:
    """("claim" or "part", cells) for every claim (its deciding part at the verdict's level, the whole claim's
    power) and, when it has several, each part at 0.05 with its own power; ``mark`` renders a verdict (upper case
    in text, a badge in HTML)."""
    rows: list[tuple[str, list[Any]]] = []
    for c in claims:
        name = f"{c['id']} (design check)" if c.get("design_check") else c["id"]
        rows.append(("claim", [name, c["paper"], format_effect(c), c["test"], format_p(c["p"]), c["n"],
                               format_tested(c), *format_power(c), mark(label_of(c))]))
        if len(c["parts"]) > 1:  # each part, the one that decides marked
            for p in c["parts"]:
                decides = " <- decides" if p["label"] == c["deciding"] and p["test"] == c["test"] else ""
                why = p.get("missing") or p.get("note")
                rows.append(("part", ["", f"  · {p['label']}", format_effect(p), p["test"], format_p(p["p"]), p["n"],
                                      format_tested(p), *format_power(p),
                                      label_of(p) + decides + (f" ({why})" if why else "")]))
    return rows


def label_of(c: dict[str, Any]) -> str:
    """A claim's or part's verdict in words (an export older than the five-step scale holds only ``verdict``)."""
    return c.get("verdict_label") or verdict_label(c["verdict"], (c.get("effect_tested") or {}).get("kind"))


def count_verdicts(claims: list[dict[str, Any]]) -> str:
    """``1 reproduced, 2 inconclusive``, in the fixed order of the scale (VERDICTS), "not run" last; design checks
    (claims the suite's design was chosen to meet) counted apart, as they reproduce nothing independently."""
    def counted(group: list[dict[str, Any]]) -> str:
        labels: dict[str, int] = {}
        for v in (*VERDICTS, NOT_RUN):
            for c in group:
                if c["verdict"] == v:
                    labels[label_of(c)] = labels.get(label_of(c), 0) + 1
        return ", ".join(f"{n} {label}" for label, n in labels.items())

    checks = [c for c in claims if c.get("design_check")]
    text = counted([c for c in claims if not c.get("design_check")])
    return text + (f"; design checks: {counted(checks)}" if checks else "")


def claim_notes(claims: list[dict[str, Any]]) -> list[str]:
    """One line per claim: its source, and the effect its power refers to (each declared effect with its reason,
    or why none)."""
    lines = []
    for c in claims:
        name = f"{c['id']} ({c['source']})" if c.get("source") else c["id"]
        if c.get("tested"):
            name += f", runs of {c['tested']}"
        if c.get("design_check"):
            name += f", a design check ({c['design_check']})"
        tested = [p for p in c["parts"] if p.get("effect_tested")]
        if not tested:
            lines.append(f"{name}: no power: {c['parts'][0].get('power_note', 'no effect declared')}")
            continue
        by_reason: dict[str, list[str]] = {}
        for p in tested:
            effects = by_reason.setdefault(p["effect_tested"]["reason"], [])
            if format_tested(p) not in effects:
                effects.append(format_tested(p))
        lines.append(f"{name}: " + "; ".join(", ".join(effects) + (f": {reason}" if reason else "")
                                                for reason, effects in by_reason.items()))
    return lines


VERDICT_LEGEND = (f"reproduced: the claimed direction at p < {ALPHA}, and where the paper gives a number its interval "
                  f"reaches it (an equivalence: inside its margin by TOST; a non-inferiority: above -margin); "
                  f"weaker than the paper's effect: the direction significant, the interval short of the paper's "
                  f"number; no effect of the paper's size (or of the size of interest): not significant, the interval "
                  f"short of that effect; contradicted: the opposite direction, significant; inconclusive: the "
                  f"interval holds both no effect and the effect tested; not run: a group has no finished run. "
                  f"A claim of several parts is reproduced when every part is at {ALPHA}, and otherwise judged at "
                  f"{ALPHA} / the number of parts, the interval it shows at that level (97.5% for two); its power is "
                  f"the whole claim's, each part's row its own (docs/definitions.md#claims-and-verdicts)")


def render_claims(claims: list[dict[str, Any]], tablefmt: str = "simple") -> list[str]:
    """The claims table: one row per claim (its deciding part), then a row per part when there are several."""
    from tabulate import tabulate

    if not claims:
        return []
    table = [cells for _, cells in claim_rows(claims)]
    return ["", "claims: " + count_verdicts(claims),
            tabulate(table, headers=CLAIM_HEADERS, tablefmt=tablefmt, disable_numparse=True,
                     maxcolwidths=[None, 40, None, 30, None, None, 28, None, None, 44]),
            *(textwrap.fill(line, width=118, subsequent_indent="  ") for line in claim_notes(claims)),
            textwrap.fill(VERDICT_LEGEND, width=118)]
