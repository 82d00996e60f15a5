"""Claims: a paper's finding written as a test on stored runs, and its verdict (REFERENCE.md section 4).

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
- ``bound``: a metric's mean below or above a value (one-sample t-test).

``within = KEY`` repeats a test for each value of a config key. A claim declares the
effect its tests are powered for, in the unit of each test: ``paper_effect`` where the
paper gives a number, otherwise ``effect_of_interest`` with its ``effect_reason`` (on the
claim, or on one test where the units differ); each part gets its test's power there and
the n for 80% (power.py). Verdicts: a part is ``reproduced`` when its effect has the
claimed sign and p < 0.05 (an equivalence: two one-sided tests at 0.05, i.e. its 90%
interval inside the margin), ``contradicted`` when the opposite is significant (an
equivalence: the difference beyond the margin), ``smaller than the paper's effect`` when
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

from gstbench.claim_stats import (ALPHA, VERDICTS, Part, attach_power, bound_part, combine,
                                  correlation_part, format_effect, format_p, format_power, format_tested, is_share,
                                  paired_part, welch_part)
from gstbench.errors import SpecError, closest
from gstbench.selection import in_group, label_at

SIGNS = ("positive", "negative")
STATISTICS = ("pearson", "kendall")
EFFECT_KEYS = {"paper_effect", "effect_of_interest", "effect_reason"}
CLAIM_KEYS = {"id", "source", "statement", "paper", "test"} | EFFECT_KEYS
COMMON_TEST_KEYS = {"kind", "within", "round"} | EFFECT_KEYS
# kind -> (required keys, optional keys); alternatives are checked in _check_test
TEST_KEYS: dict[str, tuple[set[str], set[str]]] = {
    "correlation": ({"x", "y", "sign"}, {"runs", "statistic"}),
    "difference": ({"sign"}, {"metric", "a", "b", "metrics", "runs"}),
    "order": ({"metric", "groups", "sign"}, {"runs"}),
    "trend": ({"metric", "sign"}, {"axis", "groups", "runs"}),
    "equivalence": ({"metric", "a", "b", "margin"}, set()),
    "bound": ({"metric"}, {"below", "above", "runs"}),
}
BUILTIN_GROUPS = ("all", "pruned", "unpruned")
# Core per-run metrics (engine.py) and the report's derived ones; a suite with metric plugins may add others.
CORE_METRICS = {"final_test_acc", "best_test_acc", "final_test_loss", "train_acc", "train_loss", "gap", "n_events",
                "mean_instability", "stability", "iterative_rate", "params", "params_nonzero", "sparsity",
                "lmc_barrier", "weight_distance", "prune_potential_nominal", "prune_potential_shifted"}


# ---- declarations -------------------------------------------------------------------------
def parse_groups(raw: Any, where: str, source: str) -> dict[str, dict[str, list[Any]]]:
    """``[groups]``: name -> {dotted key -> allowed values}."""
    if not isinstance(raw, dict):
        raise SpecError(f"{raw!r} is not a table of group name -> {{key = value(s)}}", source=source, key=where)
    out = {}
    for name, match in raw.items():
        if name in BUILTIN_GROUPS:
            raise SpecError(f"'{name}' is a built-in group ({', '.join(BUILTIN_GROUPS)}); pick another name",
                            source=source, key=f"{where}.{name}")
        if not isinstance(match, dict) or not match:
            raise SpecError(f"{match!r} is not a table of key -> allowed value(s), e.g. "
                            f"{{ \"prune.target\" = \"largest\" }}", source=source, key=f"{where}.{name}")
        out[name] = {k: v if isinstance(v, list) else [v] for k, v in match.items()}
    return out


def parse_claims(raw: Any, source: str) -> list[dict[str, Any]]:
    """``[[claims]]`` as plain data, each test's keys checked (kinds, signs, statistics: closest names)."""
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        raise SpecError("must be a list of tables ([[claims]])", source=source, key="claims")
    claims, seen = [], set()
    for i, c in enumerate(raw):
        where = f"claims[{i}]"
        for k in c:
            if k not in CLAIM_KEYS:
                raise SpecError(f"unknown key '{k}'{closest(k, CLAIM_KEYS)}; known keys: "
                                f"{', '.join(sorted(CLAIM_KEYS))}", source=source, key=f"{where}.{k}")
        for k in ("id", "statement", "test"):
            if k not in c:
                raise SpecError(f"missing key '{k}'", source=source, key=f"{where}.{k}")
        for k in ("id", "source", "statement", "paper"):
            if k in c and not (isinstance(c[k], str) and c[k].strip()):
                raise SpecError(f"{c[k]!r} is not a non-empty string", source=source, key=f"{where}.{k}")
        if c["id"] in seen:
            raise SpecError(f"claim id '{c['id']}' is declared twice", source=source, key=f"{where}.id")
        seen.add(c["id"])
        tests = c["test"] if isinstance(c["test"], list) else [c["test"]]
        if not tests or not all(isinstance(t, dict) for t in tests):
            raise SpecError("must be a table ([claims.test]) or a list of tables ([[claims.test]])",
                            source=source, key=f"{where}.test")
        where_id = f"claims[{i}] ({c['id']})"
        claim_effect = _effect(c, where, source)
        checked = []
        for j, t in enumerate(tests):
            where_test = f"{where_id}.test" + (f"[{j}]" if len(tests) > 1 else "")
            test, own = _check_test(t, where_test, source), _effect(t, where_test, source)
            for k in EFFECT_KEYS:
                test.pop(k, None)
            test["effect"] = dict(own or claim_effect) if (own or claim_effect) else None
            _check_effect(test, where_test if own else where, source)
            checked.append(test)
        claims.append({"id": c["id"], "source": c.get("source", ""), "statement": c["statement"],
                       "paper": c.get("paper", ""), "tests": checked})
    return claims


def _effect(table: dict[str, Any], where: str, source: str) -> dict[str, Any] | None:
    """``paper_effect`` or ``effect_of_interest`` (with its ``effect_reason``) of a claim or a test, or None."""
    given = [k for k in ("paper_effect", "effect_of_interest") if k in table]
    if len(given) > 1:
        raise SpecError("give paper_effect (the paper's number) or effect_of_interest (where the paper gives only a "
                        "direction), not both", source=source, key=f"{where}.effect_of_interest")
    reason = table.get("effect_reason")
    if reason is not None and not (isinstance(reason, str) and reason.strip()):
        raise SpecError(f"{reason!r} is not a non-empty string", source=source, key=f"{where}.effect_reason")
    if not given:
        if reason is not None:
            raise SpecError("effect_reason goes with paper_effect or effect_of_interest", source=source,
                            key=f"{where}.effect_reason")
        return None
    key = given[0]
    value = table[key]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise SpecError(f"{value!r} is not a number (the effect in the unit of the test: r or tau for correlations "
                        f"and trends, the metric's own unit for differences and bounds)", source=source,
                        key=f"{where}.{key}")
    if key == "effect_of_interest" and reason is None:
        raise SpecError("an effect of interest needs its reason: effect_reason = \"why this size\" (the paper gives "
                        "no number)", source=source, key=f"{where}.effect_reason")
    return {"value": float(value), "kind": "paper" if key == "paper_effect" else "interest", "reason": reason or ""}


def _check_effect(test: dict[str, Any], where: str, source: str) -> None:
    """The declared effect fits the test: the claimed sign, |r| or |tau| < 1, inside an equivalence's margin."""
    effect = test["effect"]
    if effect is None:
        return
    key = f"{where}.{'paper_effect' if effect['kind'] == 'paper' else 'effect_of_interest'}"
    value, kind = effect["value"], test["kind"]
    if kind == "equivalence":
        if not abs(value) < test["margin"]:
            raise SpecError(f"{value:g} is not inside the margin ±{test['margin']:g}: an equivalence is powered at a "
                            f"true difference inside it (0: the two are equal)", source=source, key=key)
        return
    claimed = {"below": -1, "above": 1}[next(k for k in ("below", "above") if k in test)] if kind == "bound" \
        else (1 if test["sign"] == "positive" else -1)
    if value == 0 or (value > 0) != (claimed > 0):
        raise SpecError(f"{value:g} does not have the claimed direction "
                        f"({'positive' if claimed > 0 else 'negative'}{', mean - bound' if kind == 'bound' else ''})",
                        source=source, key=key)
    if kind in ("correlation", "trend") and abs(value) >= 1:
        raise SpecError(f"{value:g} is not a correlation (|r| or |tau| < 1)", source=source, key=key)
    effect["statistic"] = {"correlation": "pearson", "trend": "kendall"}.get(kind, "")


def _check_test(t: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    kind = t.get("kind")
    if not isinstance(kind, str) or kind not in TEST_KEYS:
        raise SpecError(f"{kind!r} is not a test kind{closest(str(kind), TEST_KEYS)}; kinds: "
                        f"{', '.join(TEST_KEYS)}", source=source, key=f"{where}.kind")
    required, optional = TEST_KEYS[kind]
    allowed = required | optional | COMMON_TEST_KEYS
    for k in t:
        if k not in allowed:
            raise SpecError(f"unknown key '{k}' for a {kind} test{closest(k, allowed)}; its keys: "
                            f"{', '.join(sorted(allowed))}", source=source, key=f"{where}.{k}")
    for k in sorted(required):
        if k not in t:
            raise SpecError(f"a {kind} test needs '{k}'", source=source, key=f"{where}.{k}")

    def need(condition: bool, key: str, message: str) -> None:
        if not condition:
            raise SpecError(message, source=source, key=f"{where}.{key}")

    if "sign" in t:
        need(t["sign"] in SIGNS, "sign", f"{t['sign']!r} must be one of {', '.join(SIGNS)}"
             f"{closest(str(t['sign']), SIGNS)}")
    for k in ("x", "y", "metric"):
        if k in t:
            need(isinstance(t[k], str) and bool(t[k]), k, f"{t[k]!r} is not a metric name")
    for k in ("within", "axis", "runs"):
        if k in t:
            need(isinstance(t[k], str) and bool(t[k]), k, f"{t[k]!r} is not a {'group' if k == 'runs' else 'key'}")
    for k in ("a", "b"):
        if k in t:
            need(_is_group_ref(t[k]), k, f"{t[k]!r} is not a group name (or a list of names: their intersection)")
    if "round" in t:
        need(isinstance(t["round"], int) and not isinstance(t["round"], bool), "round",
             f"{t['round']!r} is not a round number (0: the parent; -1: the last round)")
    out = dict(t)
    if kind == "correlation":
        chosen = t.get("statistic", "pearson")
        chosen = chosen if isinstance(chosen, list) else [chosen]
        for s in chosen:
            need(s in STATISTICS, "statistic", f"{s!r} must be one of {', '.join(STATISTICS)}"
                 f"{closest(str(s), STATISTICS)} (or a list of them)")
        out["statistic"] = chosen
        out.setdefault("runs", "pruned")
    elif kind == "difference":
        by_groups, by_metrics = "a" in t or "b" in t or "metric" in t, "metrics" in t
        need(by_groups != by_metrics, "metrics", "a difference compares one metric between groups a and b "
             "(metric, a, b) or two metrics of the same runs (metrics = [m1, m2], runs); give one form")
        if by_groups:
            for k in ("metric", "a", "b"):
                need(k in t, k, f"a difference between groups needs '{k}'")
            need("runs" not in t, "runs", "'runs' goes with metrics = [m1, m2]; groups a and b choose the runs")
        else:
            need(isinstance(t["metrics"], list) and len(t["metrics"]) == 2
                 and all(isinstance(m, str) for m in t["metrics"]), "metrics",
                 f"{t['metrics']!r} is not a list of two metric names")
            out.setdefault("runs", "pruned")
    elif kind in ("order", "trend"):
        if kind == "trend":
            need(("axis" in t) != ("groups" in t), "axis", "a trend runs along one axis (axis = KEY) or one "
                 "ordered list of groups (groups = [...]); give one")
        if "groups" in t:
            need(isinstance(t["groups"], list) and len(t["groups"]) >= 2 and all(_is_group_ref(g) for g in t["groups"]),
                 "groups", f"{t['groups']!r} is not a list of at least two group names")
        out.setdefault("runs", "all")
    elif kind == "equivalence":
        m = t["margin"]
        need(isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0, "margin",
             f"{m!r} must be a number > 0 (the largest difference that counts as equal, in the metric's units)")
    elif kind == "bound":
        need(("below" in t) != ("above" in t), "below", "a bound needs one of below = VALUE or above = VALUE")
        value = t.get("below", t.get("above"))
        need(isinstance(value, (int, float)) and not isinstance(value, bool), "below" if "below" in t else "above",
             f"{value!r} is not a number")
        out.setdefault("runs", "all")
    return out


def _is_group_ref(ref: Any) -> bool:
    return (isinstance(ref, str) and bool(ref)) or (isinstance(ref, list) and bool(ref)
                                                    and all(isinstance(g, str) for g in ref))


def _group_names(test: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, group name) for every group a test names."""
    out = []
    for key in ("a", "b", "runs"):
        if key in test:
            out += [(key, g) for g in (test[key] if isinstance(test[key], list) else [test[key]])]
    for i, ref in enumerate(test.get("groups", [])):
        out += [(f"groups[{i}]", g) for g in (ref if isinstance(ref, list) else [ref])]
    return out


def check_claims(claims: list[dict[str, Any]], groups: dict[str, dict[str, list[Any]]], specs: list[dict[str, Any]],
                 axes: dict[str, list[str]], source: str, scale: str, has_plugin_metrics: bool) -> None:
    """Checks that need the suite's cells: every group names a configuration, every key has values."""
    for i, claim in enumerate(claims):
        for j, test in enumerate(claim["tests"]):
            where = f"claims[{i}] ({claim['id']}).test" + (f"[{j}]" if len(claim["tests"]) > 1 else "")
            for key, name in _group_names(test):
                if name not in groups and name not in BUILTIN_GROUPS:
                    known = [*BUILTIN_GROUPS, *groups]
                    raise SpecError(f"unknown group '{name}'{closest(name, known)}; groups: {', '.join(known)} "
                                    f"(declare it under [groups])", source=source, key=f"{where}.{key}")
                if not any(group_predicate(name, groups)(s) for s in specs):
                    raise SpecError(f"group '{name}' matches no configuration of this suite at scale '{scale}' "
                                    f"({groups.get(name)}); fix [groups] or [scales.{scale}.groups]",
                                    source=source, key=f"{where}.{key}")
            for key in ("within", "axis"):
                if key in test and all(label_at(s, test[key]) == "-" for s in specs):
                    raise SpecError(f"no configuration of this suite has a value at '{test[key]}'"
                                    f"{closest(test[key], axes)}; the suite's axes: {', '.join(axes) or 'none'}",
                                    source=source, key=f"{where}.{key}")
            if "axis" in test and test["axis"] not in axes:
                raise SpecError(f"a trend runs along one of the suite's axes (their declared order)"
                                f"{closest(test['axis'], axes)}; axes: {', '.join(axes) or 'none'}",
                                source=source, key=f"{where}.axis")
            if not has_plugin_metrics:
                for key in ("x", "y", "metric"):
                    if key in test and test[key] not in CORE_METRICS:
                        raise SpecError(f"unknown metric '{test[key]}'{closest(test[key], CORE_METRICS)}; "
                                        f"this suite's runs report: {', '.join(sorted(CORE_METRICS))}",
                                        source=source, key=f"{where}.{key}")


def group_predicate(ref: str | list[str], groups: dict[str, dict[str, list[Any]]]) -> Callable[[dict], bool]:
    """A group name (built-in or declared), or a list of names meaning their intersection."""
    names = ref if isinstance(ref, list) else [ref]

    def one(name: str, spec: dict[str, Any]) -> bool:
        if name == "all":
            return True
        if name in ("pruned", "unpruned"):
            return (spec.get("prune") is not None) == (name == "pruned")
        return in_group(spec, groups[name])

    return lambda spec: all(one(n, spec) for n in names)


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
                    axis_labels: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Every claim's verdict from the finished runs, as plain data (``parts`` holds each tested statement)."""
    out = []
    for claim in claims:
        parts: list[Part] = []
        for test in claim["tests"]:
            parts += _test_parts(test, groups, runs, axis_labels)
        verdict, deciding = combine(parts)
        out.append({"id": claim["id"], "source": claim["source"], "statement": claim["statement"],
                    "paper": claim["paper"], "verdict": verdict, "test": deciding.test,
                    "statistic": deciding.statistic, "metric": deciding.metric, "effect": deciding.effect,
                    "low": deciding.low, "high": deciding.high, "p": deciding.p, "n": deciding.n,
                    "deciding": deciding.label, "parts": [p.as_json() for p in parts],
                    **({"margin": deciding.margin} if deciding.margin is not None else {}),
                    **deciding.power_json()})
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


def _test_parts(test: dict[str, Any], groups: dict, runs: list[Run], axis_labels: dict[str, list[str]]) -> list[Part]:
    kind, rnd = test["kind"], test.get("round")
    sign = 1 if test.get("sign", "positive") == "positive" else -1
    pick = lambda ref, rs: [r for r in rs if group_predicate(ref, groups)(r.spec)]  # noqa: E731
    parts: list[Part] = []
    for split, members in _splits(test, runs, axis_labels):
        prefix = f"{split}: " if split else ""
        if kind == "correlation":
            pool = pick(test["runs"], members)
            pairs = [(r.value(test["x"], rnd), r.value(test["y"], rnd)) for r in pool]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            for statistic in test["statistic"]:
                parts.append(correlation_part(f"{prefix}{test['x']} vs {test['y']}", [x for x, _ in pairs],
                                              [y for _, y in pairs], statistic, sign, test["y"]))
        elif kind in ("difference", "equivalence"):
            if "metrics" in test:
                m1, m2 = test["metrics"]
                pool = pick(test["runs"], members)
                pairs = [(r.value(m1, rnd), r.value(m2, rnd)) for r in pool]
                pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
                parts.append(paired_part(f"{prefix}{m1} - {m2}", [a for a, _ in pairs], [b for _, b in pairs],
                                         sign, m1, "per run"))
            else:
                parts.append(group_difference(f"{prefix}{_name(test['a'])} - {_name(test['b'])}",
                                              pick(test["a"], members), pick(test["b"], members), test["metric"],
                                              rnd, sign if kind == "difference" else 0))
                if kind == "equivalence":
                    part = parts[-1]
                    part.as_equivalence(float(test["margin"]))
                    width = f"{100 * part.margin:g} pts" if is_share(test["metric"]) else f"{part.margin:g}"
                    part.test = f"TOST ±{width} ({part.test}; 90% interval)"
        elif kind == "order":
            seq = test["groups"]
            pool = pick(test["runs"], members)
            for lo, hi in zip(seq, seq[1:]):  # sign positive: the metric rises along the list
                parts.append(group_difference(f"{prefix}{_name(hi)} - {_name(lo)}", pick(hi, pool), pick(lo, pool),
                                              test["metric"], rnd, sign))
        elif kind == "trend":
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
            part = correlation_part(f"{prefix}{test['metric']} along {along}", [x for x, _ in pairs],
                                    [y for _, y in pairs], "kendall", sign, test["metric"])
            part.test, part.family = "kendall trend", "trend"
            parts.append(part)
        elif kind == "bound":
            pool = pick(test["runs"], members)
            values = [v for v in (r.value(test["metric"], rnd) for r in pool) if v is not None]
            bound, below = test.get("below", test.get("above")), "below" in test
            parts.append(bound_part(f"{prefix}{test['metric']} {'<' if below else '>'} {bound:g}"
                                    + (f" ({_name(test['runs'])})" if test["runs"] != "all" else ""),
                                    values, float(bound), -1 if below else 1, test["metric"]))
    if not parts:
        parts.append(Part(f"{test.get('within')}: no values", kind, "-", test.get("metric", ""), sign,
                          note="no finished run has a value at the 'within' key"))
    return [attach_power(part, test.get("effect")) for part in parts]


def _name(ref: str | list[str]) -> str:
    return "&".join(ref) if isinstance(ref, list) else ref


# ---- pairing runs by seed -------------------------------------------------------------------
def group_difference(label: str, a: list[Run], b: list[Run], metric: str, round_index: int | None,
                     sign: int) -> Part:
    """a - b on ``metric``: paired over seeds (each group's mean per seed) when both ran the same seeds, else Welch."""
    def by_seed(runs: list[Run]) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        for r in runs:
            v = r.value(metric, round_index)
            if v is not None:
                out.setdefault(r.seed, []).append(v)
        return out

    sa, sb = by_seed(a), by_seed(b)
    if sa and set(sa) == set(sb):
        seeds = sorted(sa)
        return paired_part(label, [float(np.mean(sa[s])) for s in seeds], [float(np.mean(sb[s])) for s in seeds],
                           sign, metric)
    return welch_part(label, [v for vs in sa.values() for v in vs], [v for vs in sb.values() for v in vs], sign,
                      metric)


# ---- display ------------------------------------------------------------------------------
CLAIM_HEADERS = ["claim", "paper's figure", "measured [95% interval]", "test", "p", "n", "effect tested", "power",
                 "n for 80%", "verdict"]


def claim_rows(claims: list[dict[str, Any]], mark: Callable[[str], Any] = str.upper) -> list[tuple[str, list[Any]]]:
    """("claim" or "part", cells) for every claim (its deciding part) and, when it has several, each part;
    ``mark`` renders a verdict (upper case in text, a badge in HTML)."""
    rows: list[tuple[str, list[Any]]] = []
    for c in claims:
        rows.append(("claim", [c["id"], c["paper"], format_effect(c), c["test"], format_p(c["p"]), c["n"],
                               format_tested(c), *format_power(c), mark(c["verdict"])]))
        if len(c["parts"]) > 1:  # each part, the one that decides marked
            for p in c["parts"]:
                decides = " <- decides" if p["label"] == c["deciding"] and p["test"] == c["test"] else ""
                rows.append(("part", ["", f"  · {p['label']}", format_effect(p), p["test"], format_p(p["p"]), p["n"],
                                      format_tested(p), *format_power(p),
                                      p["verdict"] + decides + (f" ({p['note']})" if p.get("note") else "")]))
    return rows


def count_verdicts(claims: list[dict[str, Any]]) -> str:
    """``1 reproduced, 2 inconclusive``, in the fixed order of VERDICTS."""
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)


def power_notes(claims: list[dict[str, Any]]) -> list[str]:
    """One line per claim on the effect its power refers to: each declared effect with its reason, or why none."""
    lines = []
    for c in claims:
        tested = [p for p in c["parts"] if p.get("effect_tested")]
        if not tested:
            lines.append(f"{c['id']}: no power: {c['parts'][0].get('power_note', 'no effect declared')}")
            continue
        by_reason: dict[str, list[str]] = {}
        for p in tested:
            effects = by_reason.setdefault(p["effect_tested"]["reason"], [])
            if format_tested(p) not in effects:
                effects.append(format_tested(p))
        lines.append(f"{c['id']}: " + "; ".join(", ".join(effects) + (f": {reason}" if reason else "")
                                                for reason, effects in by_reason.items()))
    return lines


VERDICT_LEGEND = (f"reproduced: the paper's direction at p < {ALPHA} (an equivalence: inside its margin by TOST); "
                  f"smaller than the paper's effect: not significant, and the 95% interval excludes the effect tested; "
                  f"contradicted: the opposite direction, significant; inconclusive: the interval holds both no effect "
                  f"and the effect tested (the power says how likely this n was to decide, n for 80% how many runs "
                  f"would). The effect tested is the paper's number, or an effect of interest where the paper gives "
                  f"only a direction. A claim of several parts is reproduced when every part is, contradicted or smaller "
                  f"when a part is at 0.05 / the number of parts; each part's row shows its own verdict at 0.05 "
                  f"(docs/definitions.md#claims-and-verdicts)")


def render_claims(claims: list[dict[str, Any]], tablefmt: str = "simple") -> list[str]:
    """The claims table: one row per claim (its deciding part), then a row per part when there are several."""
    from tabulate import tabulate

    if not claims:
        return []
    table = [cells for _, cells in claim_rows(claims)]
    return ["", "claims (REFERENCE.md section 4): " + count_verdicts(claims),
            tabulate(table, headers=CLAIM_HEADERS, tablefmt=tablefmt, disable_numparse=True,
                     maxcolwidths=[None, 40, None, 30, None, None, 28, None, None, 44]),
            *(textwrap.fill(line, width=118, subsequent_indent="  ") for line in power_notes(claims)),
            textwrap.fill(VERDICT_LEGEND, width=118)]
