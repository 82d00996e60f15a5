"""Claims: a paper's finding written as a test on stored runs, and its verdict (REFERENCE.md section 4).

What a suite declares is parsed and checked in plan/claims.py; this module computes each
test's parts from the finished runs, one function per test kind, and renders the verdicts.
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

``within = KEY`` repeats a test for each value of a config key. A claim declares the
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

import functools
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from gstbench.reports.claim_power import Block, claim_power
from gstbench.reports.claim_stats import (ALPHA, NOT_RUN, VERDICTS, Part, attach_power, bound_part, combine,
                                          correlation_part, format_effect, format_p, format_power, format_tested,
                                          is_share, paired_part, verdict_label, welch_part)
from gstbench.plan.claims import group_predicate
from gstbench.plan.selection import label_at

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


def _correlation(test, prefix, members, pick, groups, axis_labels, rnd, sign) -> list[Part]:
    pool = pick(test["runs"], members)
    pairs = [(r.value(test["x"], rnd), r.value(test["y"], rnd)) for r in pool]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    parts = [correlation_part(f"{prefix}{test['x']} vs {test['y']}", [x for x, _ in pairs], [y for _, y in pairs],
                              statistic, sign, test["y"]) for statistic in test["statistic"]]
    if len(parts) > 1:  # Pearson and Kendall of the same runs: their outcomes move together
        _join(Block("correlation", parts))
    return parts


def _difference(test, prefix, members, pick, groups, axis_labels, rnd, sign) -> list[Part]:
    if "metrics" in test:
        m1, m2 = test["metrics"]
        pool = pick(test["runs"], members)
        pairs = [(r.value(m1, rnd), r.value(m2, rnd)) for r in pool]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        return [paired_part(f"{prefix}{m1} - {m2}", [a for a, _ in pairs], [b for _, b in pairs], sign, m1,
                            "per run")]
    return [group_difference(f"{prefix}{_name(test['a'])} - {_name(test['b'])}", pick(test["a"], members),
                             pick(test["b"], members), test["metric"], rnd, sign)]


def _equivalence(test, prefix, members, pick, groups, axis_labels, rnd, sign, one_sided=False) -> list[Part]:
    """TOST inside (-margin, margin); ``one_sided``: the non-inferiority test a - b > -margin."""
    part = _difference(test, prefix, members, pick, groups, axis_labels, rnd, 1 if one_sided else 0)[0]
    (part.as_noninferiority if one_sided else part.as_equivalence)(float(test["margin"]))
    width = f"{100 * part.margin:g} pts" if is_share(test["metric"]) else f"{part.margin:g}"
    part.test = (f"non-inferiority > -{width} ({part.test}; one-sided, 90% interval)" if one_sided
                 else f"TOST ±{width} ({part.test}; 90% interval)")
    return [part]


def _order(test, prefix, members, pick, groups, axis_labels, rnd, sign) -> list[Part]:
    seq = test["groups"]
    pool = pick(test["runs"], members)
    chosen = [pick(g, pool) for g in seq]
    parts = [group_difference(f"{prefix}{_name(hi)} - {_name(lo)}", chosen[j + 1], chosen[j], test["metric"], rnd,
                              sign) for j, (lo, hi) in enumerate(zip(seq, seq[1:]))]  # sign positive: rises
    if len(parts) > 1 and all(p.effect is not None for p in parts):
        by_seed = [_by_seed(runs, test["metric"], rnd) for runs in chosen]
        if all(p.family == "paired" for p in parts) and all(set(b) == set(by_seed[0]) for b in by_seed):
            seeds = sorted(by_seed[0])
            means = np.array([[np.mean(b[s]) for b in by_seed] for s in seeds])
            _join(Block("paired-order", parts, cov=np.atleast_2d(np.cov(np.diff(means, axis=1).T, ddof=1))))
        elif all(p.family == "welch" for p in parts):
            values = [[v for vs in b.values() for v in vs] for b in by_seed]
            _join(Block("welch-order", parts, variances=tuple(float(np.var(v, ddof=1)) for v in values),
                        sizes=tuple(len(v) for v in values)))
    return parts


def _join(block: Block) -> None:
    for part in block.parts:
        part.block = block


def _trend(test, prefix, members, pick, groups, axis_labels, rnd, sign) -> list[Part]:
    pool = pick(test["runs"], members)
    if "axis" in test:
        order = axis_labels.get(test["axis"], [])
        position = lambda r: (order.index(label_at(r.spec, test["axis"]))  # noqa: E731
                              if label_at(r.spec, test["axis"]) in order else None)
        along = test["axis"].rsplit(".", 1)[-1]  # prune.period -> period
    else:
        preds = [group_predicate(g, groups) for g in test["groups"]]
        position = lambda r: next((i for i, p in enumerate(preds) if p(r.spec)), None)  # noqa: E731
        along = " < ".join(_name(g) for g in test["groups"])
    pairs = [(position(r), r.value(test["metric"], rnd)) for r in pool]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    part = correlation_part(f"{prefix}{test['metric']} along {along}", [x for x, _ in pairs], [y for _, y in pairs],
                            "kendall", sign, test["metric"])
    part.test, part.family = "kendall trend", "trend"
    return [part]


def _bound(test, prefix, members, pick, groups, axis_labels, rnd, sign) -> list[Part]:
    pool = pick(test["runs"], members)
    values = [v for v in (r.value(test["metric"], rnd) for r in pool) if v is not None]
    bound, below = test.get("below", test.get("above")), "below" in test
    return [bound_part(f"{prefix}{test['metric']} {'<' if below else '>'} {bound:g}"
                       + (f" ({_name(test['runs'])})" if test["runs"] != "all" else ""),
                       values, float(bound), -1 if below else 1, test["metric"])]


# What each test kind (plan/claims.py TEST_KINDS) computes from the runs of one split.
PARTS_OF_KIND = {"correlation": _correlation, "difference": _difference, "equivalence": _equivalence,
                 "noninferiority": functools.partial(_equivalence, one_sided=True),
                 "order": _order, "trend": _trend, "bound": _bound}


def _test_parts(test: dict[str, Any], groups: dict, runs: list[Run], axis_labels: dict[str, list[str]],
                power: bool = True) -> list[Part]:
    kind, rnd = test["kind"], test.get("round")
    sign = 1 if test.get("sign", "positive") == "positive" else -1
    pick = lambda ref, rs: [r for r in rs if group_predicate(ref, groups)(r.spec)]  # noqa: E731
    parts: list[Part] = []
    for split, members in _splits(test, runs, axis_labels):
        prefix = f"{split}: " if split else ""
        empty = [ref for ref in _compared(test) if not pick(ref, members)]
        if empty:  # no verdict from no runs: the claim says which group and why
            parts.append(Part(f"{prefix}{_name(empty[0])}", kind, "-", test.get("metric", test.get("y", "")), sign,
                              missing=f"group '{_name(empty[0])}' has no finished run"))
            continue
        parts += PARTS_OF_KIND[kind](test, prefix, members, pick, groups, axis_labels, rnd, sign)
    if not parts:
        parts.append(Part(f"{test.get('within')}: no values", kind, "-", test.get("metric", ""), sign,
                          missing="no finished run has a value at the 'within' key"))
    return [attach_power(part, test.get("effect"), power) for part in parts]


def _compared(test: dict[str, Any]) -> list[str | list[str]]:
    """The groups a test draws runs from: each must hold a finished run for the test to run."""
    refs = [test[k] for k in ("a", "b") if k in test] + list(test.get("groups", []) if test["kind"] == "order" else [])
    if test["kind"] == "trend" and "groups" in test:
        refs += list(test["groups"])
    if "runs" in test and test["runs"] != "all":
        refs.append(test["runs"])
    return refs or ["all"]


def _name(ref: str | list[str]) -> str:
    return "&".join(ref) if isinstance(ref, list) else ref


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
