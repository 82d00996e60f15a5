"""Claim kinds: each kind of claim test as one class, registered once (``CLAIM_KINDS``, ``register_claim_kind``).

A kind holds everything that is its own: the keys a suite declares for it and their checks,
what its declared effect must satisfy (direction, range) and in which statistic it is given,
the groups its runs come from, and how its parts are computed from the runs of one split.
The statistics themselves (each part's estimate, interval, p, power model and rendering) are
the reports stage's, one per test family (correlation, paired, Welch, one-sample), reached
through the ``Split`` the report hands a kind: so a kind is declared and checked before
anything runs (plan/claims.py) and evaluated after (reports/claims.py) from this one class.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from gstbench.errors import closest
from gstbench.plan.selection import group_predicate, label_at

SIGNS = ("positive", "negative")
STATISTICS = ("pearson", "kendall")
Need = Callable[[bool, str, str], None]  # need(condition, key, message): a refused key, in one line


class Split(Protocol):
    """What a kind computes its parts with (built by reports/claims.py for each split of ``within``): the runs,
    the test's round and sign, and the statistics of each family, each part with its interval and power model."""

    prefix: str  # "period=1ep: " within a split, else ""
    runs: list[Any]  # the split's finished runs (reports.claims.Run: spec, seed, value(metric, round))
    round: int | None
    sign: int  # +1 or -1: the claimed direction
    axis_labels: dict[str, list[str]]
    groups: dict[str, dict[str, list[Any]]]

    def pick(self, ref: str | list[str], runs: list[Any] | None = None) -> list[Any]: ...
    def correlation(self, label: str, x: list[float], y: list[float], statistic: str, metric: str) -> Any: ...
    def paired(self, label: str, a: list[float], b: list[float], metric: str, how: str, sign: int) -> Any: ...
    def difference(self, label: str, a: list[Any], b: list[Any], metric: str, sign: int) -> Any: ...
    def bound(self, label: str, values: list[float], bound: float, sign: int, metric: str) -> Any: ...
    def within_margin(self, part: Any, margin: float, one_sided: bool) -> None: ...
    def joint_correlations(self, parts: list[Any]) -> None: ...
    def joint_order(self, parts: list[Any], chosen: list[list[Any]], metric: str) -> None: ...


class ClaimKind:
    """One kind of claim test. Subclasses set ``name``, ``required`` and ``optional`` keys and implement
    ``parts``; ``check`` adds the kind's own checks and defaults."""

    name = ""
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    # the statistic a declared effect is given in (pearson r, kendall tau), "" for values, None: none recorded
    effect_statistic: str | None = ""
    # the test families its parts come from, each with its interval and power model (reports/claim_stats.py Part)
    families: tuple[str, ...] = ()

    def check(self, t: dict[str, Any], out: dict[str, Any], need: Need) -> None:
        """Kind-specific checks of the declared test ``t``; defaults go into ``out``."""

    def claimed(self, test: dict[str, Any]) -> int:
        """The claimed direction of the tested effect: +1 or -1."""
        return 1 if test.get("sign", "positive") == "positive" else -1

    def effect_problem(self, value: float, test: dict[str, Any]) -> str | None:
        """Why a declared effect of ``value`` cannot be this test's (None: it can)."""
        claimed = self.claimed(test)
        if value == 0 or (value > 0) != (claimed > 0):
            return f"{value:g} does not have the claimed direction ({'positive' if claimed > 0 else 'negative'})"
        return None

    def compared(self, test: dict[str, Any]) -> list[str | list[str]]:
        """The groups the test draws runs from: each must hold a finished run for the test to run."""
        refs = [test[k] for k in ("a", "b") if k in test]
        if "runs" in test and test["runs"] != "all":
            refs.append(test["runs"])
        return refs or ["all"]

    def parts(self, test: dict[str, Any], split: Split) -> list[Any]:
        raise NotImplementedError


CLAIM_KINDS: dict[str, ClaimKind] = {}


def register_claim_kind(cls: type[ClaimKind]) -> type[ClaimKind]:
    """Add a kind (a class decorator); a second kind of one name is refused."""
    if not cls.name or cls.name in CLAIM_KINDS:
        raise ValueError(f"claim kind {cls.name!r} is unnamed or registered twice")
    CLAIM_KINDS[cls.name] = cls()
    return cls


def name_of(ref: str | list[str]) -> str:
    return "&".join(ref) if isinstance(ref, list) else ref


def is_group_ref(ref: Any) -> bool:
    return (isinstance(ref, str) and bool(ref)) or (isinstance(ref, list) and bool(ref)
                                                    and all(isinstance(g, str) for g in ref))


def _correlation_problem(value: float) -> str | None:
    """An effect given as r or tau must be one."""
    return f"{value:g} is not a correlation (|r| or |tau| < 1)" if abs(value) >= 1 else None


def _values(split: Split, runs: list[Any], *metrics: str) -> list[tuple[float, ...]]:
    """Each run's values of ``metrics`` at the split's round, where it has them all."""
    rows = [tuple(r.value(m, split.round) for m in metrics) for r in runs]
    return [row for row in rows if all(v is not None for v in row)]


@register_claim_kind
class Correlation(ClaimKind):
    """Pearson r and/or Kendall tau between two per-run metrics, with a sign."""

    name, required, optional = "correlation", frozenset({"x", "y", "sign"}), frozenset({"runs", "statistic"})
    effect_statistic, families = "pearson", ("pearson", "kendall")

    def check(self, t, out, need):
        chosen = t.get("statistic", "pearson")
        chosen = chosen if isinstance(chosen, list) else [chosen]
        for s in chosen:
            need(s in STATISTICS, "statistic", f"{s!r} must be one of {', '.join(STATISTICS)}"
                 f"{closest(str(s), STATISTICS)} (or a list of them)")
        out["statistic"] = chosen
        out.setdefault("runs", "pruned")

    def effect_problem(self, value, test):
        return _correlation_problem(value) or ClaimKind.effect_problem(self, value, test)

    def parts(self, test, split):
        pairs = _values(split, split.pick(test["runs"]), test["x"], test["y"])
        parts = [split.correlation(f"{split.prefix}{test['x']} vs {test['y']}", [x for x, _ in pairs],
                                   [y for _, y in pairs], statistic, test["y"]) for statistic in test["statistic"]]
        if len(parts) > 1:  # Pearson and Kendall of the same runs: their outcomes move together
            split.joint_correlations(parts)
        return parts


@register_claim_kind
class Difference(ClaimKind):
    """A metric between two groups (paired over seeds when both ran the same seeds, Welch otherwise), or two metrics
    of the same runs (paired per run), with a sign."""

    name, required, optional = "difference", frozenset({"sign"}), frozenset({"metric", "a", "b", "metrics", "runs"})
    families = ("paired", "welch")

    def check(self, t, out, need):
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

    def parts(self, test, split):
        return [_difference(test, split, split.sign)]


def _difference(test: dict[str, Any], split: Split, sign: int) -> Any:
    """a - b between two groups, or m1 - m2 of the same runs."""
    if "metrics" in test:
        m1, m2 = test["metrics"]
        pairs = _values(split, split.pick(test["runs"]), m1, m2)
        return split.paired(f"{split.prefix}{m1} - {m2}", [a for a, _ in pairs], [b for _, b in pairs], m1,
                            "per run", sign)
    return split.difference(f"{split.prefix}{name_of(test['a'])} - {name_of(test['b'])}", split.pick(test["a"]),
                            split.pick(test["b"]), test["metric"], sign)


@register_claim_kind
class Order(ClaimKind):
    """Groups in a claimed order on a metric, each adjacent pair a difference (the rise, for a positive sign)."""

    name, required, optional = "order", frozenset({"metric", "groups", "sign"}), frozenset({"runs"})
    families = ("paired", "welch")

    def check(self, t, out, need):
        if "groups" in t:
            need(isinstance(t["groups"], list) and len(t["groups"]) >= 2 and all(is_group_ref(g) for g in t["groups"]),
                 "groups", f"{t['groups']!r} is not a list of at least two group names")
        out.setdefault("runs", "all")

    def compared(self, test):
        return [*super().compared(test), *test.get("groups", [])]

    def parts(self, test, split):
        seq, pool = test["groups"], split.pick(test["runs"])
        chosen = [split.pick(g, pool) for g in seq]
        parts = [split.difference(f"{split.prefix}{name_of(hi)} - {name_of(lo)}", chosen[j + 1], chosen[j],
                                  test["metric"], split.sign) for j, (lo, hi) in enumerate(zip(seq, seq[1:]))]
        if len(parts) > 1 and all(p.effect is not None for p in parts):
            split.joint_order(parts, chosen, test["metric"])
        return parts


@register_claim_kind
class Trend(Order):
    """Kendall tau between the position along an axis (or an ordered list of groups) and a metric."""

    name, required, optional = "trend", frozenset({"metric", "sign"}), frozenset({"axis", "groups", "runs"})
    effect_statistic, families = "kendall", ("trend",)

    def check(self, t, out, need):
        need(("axis" in t) != ("groups" in t), "axis", "a trend runs along one axis (axis = KEY) or one "
             "ordered list of groups (groups = [...]); give one")
        super().check(t, out, need)

    def effect_problem(self, value, test):
        return _correlation_problem(value) or ClaimKind.effect_problem(self, value, test)

    def parts(self, test, split):
        pool = split.pick(test["runs"])
        if "axis" in test:
            order = split.axis_labels.get(test["axis"], [])
            position = lambda r: (order.index(label_at(r.spec, test["axis"]))  # noqa: E731
                                  if label_at(r.spec, test["axis"]) in order else None)
            along = test["axis"].rsplit(".", 1)[-1]  # prune.period -> period
        else:
            preds = [group_predicate(g, split.groups) for g in test["groups"]]
            position = lambda r: next((i for i, p in enumerate(preds) if p(r.spec)), None)  # noqa: E731
            along = " < ".join(name_of(g) for g in test["groups"])
        pairs = [(position(r), r.value(test["metric"], split.round)) for r in pool]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        part = split.correlation(f"{split.prefix}{test['metric']} along {along}", [x for x, _ in pairs],
                                 [y for _, y in pairs], "kendall", test["metric"])
        part.test, part.family = "kendall trend", "trend"
        return [part]


@register_claim_kind
class Equivalence(ClaimKind):
    """A difference inside a declared margin: two one-sided tests (its 90% interval inside the margin)."""

    name, required = "equivalence", frozenset({"metric", "a", "b", "margin"})
    effect_statistic, families = None, ("paired", "welch")
    one_sided = False

    def check(self, t, out, need):
        m = t["margin"]
        need(isinstance(m, (int, float)) and not isinstance(m, bool) and m > 0, "margin",
             f"{m!r} must be a number > 0 (the largest difference that counts as equal, in the metric's units)")

    def effect_problem(self, value, test):
        if not abs(value) < test["margin"]:
            return (f"{value:g} is not inside the margin ±{test['margin']:g}: an equivalence is powered at a true "
                    f"difference inside it (0: the two are equal)")
        return None

    def parts(self, test, split):
        part = _difference(test, split, 1 if self.one_sided else 0)
        split.within_margin(part, float(test["margin"]), self.one_sided)
        return [part]


@register_claim_kind
class Noninferiority(Equivalence):
    """a is not worse than b by more than ``margin``: one side of an equivalence (a paper's "comparable or better")."""

    name, one_sided = "noninferiority", True

    def effect_problem(self, value, test):
        if not value > -test["margin"]:
            return (f"{value:g} is not above -{test['margin']:g}: a non-inferiority test is powered at a true "
                    f"difference above -margin (0: the two are equal)")
        return None


@register_claim_kind
class Bound(ClaimKind):
    """A metric's mean below or above a value (one-sample t-test)."""

    name, required, optional = "bound", frozenset({"metric"}), frozenset({"below", "above", "runs"})
    families = ("one-sample",)

    def check(self, t, out, need):
        need(("below" in t) != ("above" in t), "below", "a bound needs one of below = VALUE or above = VALUE")
        value = t.get("below", t.get("above"))
        need(isinstance(value, (int, float)) and not isinstance(value, bool), "below" if "below" in t else "above",
             f"{value!r} is not a number")
        out.setdefault("runs", "all")

    def claimed(self, test):
        return -1 if "below" in test else 1

    def effect_problem(self, value, test):
        problem = super().effect_problem(value, test)
        return None if problem is None else problem[:-1] + ", mean - bound)"

    def parts(self, test, split):
        values = [v for (v,) in _values(split, split.pick(test["runs"]), test["metric"])]
        bound, below = test.get("below", test.get("above")), "below" in test
        return [split.bound(f"{split.prefix}{test['metric']} {'<' if below else '>'} {bound:g}"
                            + (f" ({name_of(test['runs'])})" if test["runs"] != "all" else ""),
                            values, float(bound), -1 if below else 1, test["metric"])]


