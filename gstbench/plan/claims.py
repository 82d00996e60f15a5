"""Claims as a suite declares them: ``[[claims]]`` and ``[groups]`` parsed and checked before anything runs.

A claim is a paper's finding written as a test on stored runs (REFERENCE.md section 4); each
kind of test is one class in plan/claim_kinds.py (its keys, checks, effect and parts). What the
tests compute, and the verdicts, are in reports/claims.py.
"""

from __future__ import annotations

import math
from typing import Any

from gstbench.errors import SpecError, closest
from gstbench.plan.claim_kinds import CLAIM_KINDS, SIGNS, is_group_ref
from gstbench.plan.selection import group_predicate, label_at

EFFECT_KEYS = {"paper_effect", "effect_of_interest", "effect_reason"}
CLAIM_KEYS = {"id", "source", "statement", "paper", "test", "design_check"} | EFFECT_KEYS
COMMON_TEST_KEYS = {"kind", "within", "round"} | EFFECT_KEYS
BUILTIN_GROUPS = ("all", "pruned", "unpruned")
# Core per-run metrics (engine/cell.py) and the report's derived ones; a suite with metric plugins may add others.
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
        for k in ("id", "source", "statement", "paper", "design_check"):
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
                       "paper": c.get("paper", ""), "tests": checked,
                       # a claim the suite's design was chosen to meet: a check of the design, not a reproduction
                       **({"design_check": c["design_check"]} if "design_check" in c else {})})
    return claims


def check_stored_claims(stored: Any, source: str) -> None:
    """Claims as suite.json stores them (``parse_claims``' output) pass ``parse_claims`` again once turned back
    into the declared form; SpecError names the first key at fault (a damaged record, never a traceback)."""
    if not isinstance(stored, list) or not all(isinstance(c, dict) for c in stored):
        raise SpecError("must be a list of tables", source=source, key="claims")
    declared = []
    for i, c in enumerate(stored):
        tests = c.get("tests")
        if not isinstance(tests, list) or not tests or not all(isinstance(t, dict) for t in tests):
            raise SpecError("must be a non-empty list of tables", source=source, key=f"claims[{i}].tests")
        declared.append({**{k: v for k, v in c.items() if k != "tests" and v != ""},
                         "test": [_declared_test(t, f"claims[{i}].tests[{j}]", source) for j, t in enumerate(tests)]})
    parse_claims(declared, source)


def _declared_test(test: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    out = {k: v for k, v in test.items() if k != "effect"}
    effect = test.get("effect")
    if effect is None:
        return out
    if not (isinstance(effect, dict) and effect.get("kind") in ("paper", "interest") and "value" in effect):
        raise SpecError(f"{effect!r} is not an effect table (kind paper or interest, value)", source=source,
                        key=f"{where}.effect")
    out["paper_effect" if effect["kind"] == "paper" else "effect_of_interest"] = effect["value"]
    if effect.get("reason"):
        out["effect_reason"] = effect["reason"]
    return out


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
    """The declared effect fits the test (its kind says how: the claimed sign, |r| or |tau| < 1, a margin)."""
    effect = test["effect"]
    if effect is None:
        return
    kind = CLAIM_KINDS[test["kind"]]
    problem = kind.effect_problem(effect["value"], test)
    if problem:
        raise SpecError(problem, source=source,
                        key=f"{where}.{'paper_effect' if effect['kind'] == 'paper' else 'effect_of_interest'}")
    if kind.effect_statistic is not None:
        effect["statistic"] = kind.effect_statistic


def _check_test(t: dict[str, Any], where: str, source: str) -> dict[str, Any]:
    kind = t.get("kind")
    if not isinstance(kind, str) or kind not in CLAIM_KINDS:
        raise SpecError(f"{kind!r} is not a test kind{closest(str(kind), CLAIM_KINDS)}; kinds: "
                        f"{', '.join(CLAIM_KINDS)}", source=source, key=f"{where}.kind")
    declared = CLAIM_KINDS[kind]
    allowed = declared.required | declared.optional | COMMON_TEST_KEYS
    for k in t:
        if k not in allowed:
            raise SpecError(f"unknown key '{k}' for a {kind} test{closest(k, allowed)}; its keys: "
                            f"{', '.join(sorted(allowed))}", source=source, key=f"{where}.{k}")
    for k in sorted(declared.required):
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
            need(is_group_ref(t[k]), k, f"{t[k]!r} is not a group name (or a list of names: their intersection)")
    if "round" in t:
        need(isinstance(t["round"], int) and not isinstance(t["round"], bool), "round",
             f"{t['round']!r} is not a round number (0: the parent; -1: the last round)")
    out = dict(t)
    declared.check(t, out, need)
    return out


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
