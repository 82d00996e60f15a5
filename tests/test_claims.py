"""Claims: each test kind gives the right verdict on planted data, equals scipy, and says when n is too small."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from gstbench.reports.claim_stats import format_effect
from gstbench.plan.claims import parse_claims
from gstbench.reports.claims import Run, evaluate_claims

TARGETS = ("smallest", "random", "largest")


def spec(target: str | None, period: str = "2ep", effector: str = "mask") -> dict:
    """A stored spec as the store writes it: unpruned when ``target`` is None."""
    if target is None:
        return {"prune": None, "seed": 0}
    comp = lambda name: {"id": f"gstbench:{name}", "options": {}}  # noqa: E731
    return {"prune": {"scorer": comp("bn-gamma"), "target": comp(target), "effector": comp(effector),
                      "layers": {"conv3": {"fraction": 0.3, "period": period}, "conv4": {"fraction": 0.9,
                                                                                       "period": period}}}}


def verdicts(tests, runs, groups=None, axis_labels=None) -> dict:
    claims = parse_claims([{"id": "c", "statement": "s", "test": tests}], "planted.toml")
    return evaluate_claims(claims, groups or {}, runs, axis_labels or {})[0]


def corr_runs(x, y) -> list[Run]:
    return [Run(spec("smallest"), i, {"stability": a, "best_test_acc": b}) for i, (a, b) in enumerate(zip(x, y))]


RNG = np.random.default_rng(3)
X = RNG.uniform(0.5, 1.0, 30)
NEGATIVE = corr_runs(X, 0.95 - 0.2 * X + RNG.normal(0, 0.01, 30))
NOISE = corr_runs(X, RNG.normal(0.9, 0.01, 30))


@pytest.mark.parametrize("statistic", ["pearson", "kendall"])
def test_a_planted_negative_correlation_reproduces_a_negative_claim_and_contradicts_a_positive_one(statistic):
    test = {"kind": "correlation", "x": "stability", "y": "best_test_acc", "statistic": statistic}
    assert verdicts({**test, "sign": "negative"}, NEGATIVE)["verdict"] == "reproduced"
    assert verdicts({**test, "sign": "positive"}, NEGATIVE)["verdict"] == "contradicted"
    assert verdicts({**test, "sign": "negative"}, NOISE)["verdict"] == "inconclusive"


def test_correlations_equal_scipys_statistic_and_p():
    x = [r.metrics["stability"] for r in NOISE]
    y = [r.metrics["best_test_acc"] for r in NOISE]
    c = verdicts({"kind": "correlation", "x": "stability", "y": "best_test_acc", "sign": "negative",
                  "statistic": ["pearson", "kendall"]}, NOISE)
    pearson, kendall = c["parts"]
    assert (pearson["effect"], pearson["p"]) == pytest.approx(tuple(sps.pearsonr(x, y)))
    assert (kendall["effect"], kendall["p"]) == pytest.approx(tuple(sps.kendalltau(x, y)))
    z, half = np.arctanh(pearson["effect"]), 1.959964 / np.sqrt(27)
    assert (pearson["low"], pearson["high"]) == pytest.approx((np.tanh(z - half), np.tanh(z + half)), rel=1e-5)


def group_runs(means: dict[str, float], seeds=range(5), sd: float = 0.002, metric: str = "stability",
               period: str = "2ep") -> list[Run]:
    rng = np.random.default_rng(11)
    return [Run(spec(t, period), s, {metric: m + rng.normal(0, sd)}) for t, m in means.items() for s in seeds]


GROUPS = {t: {"prune.target": [t]} for t in TARGETS}


def test_a_difference_over_the_same_seeds_is_paired_and_equals_scipys_ttest_rel():
    runs = group_runs({"largest": 0.90, "smallest": 0.80})
    c = verdicts({"kind": "difference", "metric": "stability", "a": "largest", "b": "smallest", "sign": "positive"},
                 runs, GROUPS)
    a = [r.metrics["stability"] for r in runs if r.spec["prune"]["target"]["id"].endswith("largest")]
    b = [r.metrics["stability"] for r in runs if r.spec["prune"]["target"]["id"].endswith("smallest")]
    assert c["verdict"] == "reproduced" and c["test"].startswith("paired t")
    assert c["effect"] == pytest.approx(np.mean(a) - np.mean(b)) and c["p"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    flipped = verdicts({"kind": "difference", "metric": "stability", "a": "largest", "b": "smallest",
                        "sign": "negative"}, runs, GROUPS)
    assert flipped["verdict"] == "contradicted"


def test_a_difference_over_other_seeds_is_welch_and_equals_scipys():
    runs = group_runs({"largest": 0.90}, seeds=range(5)) + group_runs({"smallest": 0.899}, seeds=range(10, 14))
    c = verdicts({"kind": "difference", "metric": "stability", "a": "largest", "b": "smallest", "sign": "positive"},
                 runs, GROUPS)
    a = [r.metrics["stability"] for r in runs if r.seed < 10]
    b = [r.metrics["stability"] for r in runs if r.seed >= 10]
    assert c["test"] == "welch t" and c["n"] == 9
    assert c["p"] == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue)


def test_two_metrics_of_the_same_runs_are_paired_per_run():
    rng = np.random.default_rng(5)
    runs = [Run(spec("smallest"), s, {"shifted": v - 0.2 + rng.normal(0, 0.01), "nominal": v})
            for s, v in enumerate(rng.uniform(0.3, 0.6, 8))]
    c = verdicts({"kind": "difference", "metrics": ["shifted", "nominal"], "sign": "negative"}, runs)
    assert c["verdict"] == "reproduced" and c["n"] == 8 and c["effect"] == pytest.approx(-0.2, abs=0.02)
    assert c["p"] == pytest.approx(sps.ttest_rel([r.metrics["shifted"] for r in runs],
                                                 [r.metrics["nominal"] for r in runs]).pvalue)


def test_an_order_tests_each_adjacent_pair_and_needs_all_of_them():
    order = {"kind": "order", "metric": "stability", "groups": ["largest", "random", "smallest"], "sign": "positive"}
    good = verdicts(order, group_runs({"largest": 0.5, "random": 0.7, "smallest": 0.9}), GROUPS)
    assert good["verdict"] == "reproduced" and [p["label"] for p in good["parts"]] == [
        "random - largest", "smallest - random"]
    # random and smallest tie: one pair is reproduced, the other is noise
    tie = verdicts(order, group_runs({"largest": 0.5, "random": 0.9, "smallest": 0.9}, sd=0.02), GROUPS)
    assert tie["verdict"] == "inconclusive" and tie["deciding"] == "smallest - random"
    reversed_ = verdicts(order, group_runs({"largest": 0.9, "random": 0.7, "smallest": 0.5}), GROUPS)
    assert reversed_["verdict"] == "contradicted"


def test_within_repeats_the_test_for_each_value_of_the_key():
    runs = (group_runs({"largest": 0.5, "smallest": 0.9}, period="2ep")
            + group_runs({"largest": 0.9, "smallest": 0.5}, period="8ep"))
    c = verdicts({"kind": "difference", "metric": "stability", "a": "smallest", "b": "largest", "sign": "positive",
                  "within": "prune.period"}, runs, GROUPS, {"prune.period": ["2ep", "8ep"]})
    assert [(p["label"], p["verdict"]) for p in c["parts"]] == [
        ("period=2ep: smallest - largest", "reproduced"),
        ("period=8ep: smallest - largest", "contradicted")]
    assert c["verdict"] == "contradicted"


def test_within_tests_only_the_values_a_claims_groups_take_and_a_missing_side_is_not_run():
    """posttrain's voita-scratch compares two of the suite's three levels: the third is no part of it. Where one
    group has runs at a value and the other none, the part is there and says which group has no run."""
    runs = (group_runs({"largest": 0.5, "smallest": 0.9}, period="2ep")
            + group_runs({"random": 0.7}, period="4ep")  # another configuration at a value of its own
            + group_runs({"largest": 0.9, "smallest": 0.5}, period="8ep"))
    test = {"kind": "difference", "metric": "stability", "a": "smallest", "b": "largest", "sign": "positive",
            "within": "prune.period"}
    c = verdicts(test, runs, GROUPS, {"prune.period": ["2ep", "4ep", "8ep"]})
    assert [p["label"] for p in c["parts"]] == ["period=2ep: smallest - largest", "period=8ep: smallest - largest"]
    one_sided = verdicts(test, runs + group_runs({"largest": 0.5}, period="4ep"), GROUPS,
                         {"prune.period": ["2ep", "4ep", "8ep"]})
    assert [(p["label"], p["verdict"]) for p in one_sided["parts"]][1] == ("period=4ep: smallest", "not run")


def test_a_trend_along_an_axis_follows_the_declared_order():
    periods = ["1ep", "2ep", "4ep", "8ep"]
    runs = [r for i, p in enumerate(periods) for r in group_runs({"smallest": 0.95 - 0.05 * i}, period=p)]
    trend = {"kind": "trend", "metric": "stability", "axis": "prune.period", "sign": "negative"}
    c = verdicts(trend, runs, GROUPS, {"prune.period": periods})
    x = [periods.index(r.spec["prune"]["layers"]["conv3"]["period"]) for r in runs]
    assert c["verdict"] == "reproduced" and c["test"] == "kendall trend"
    assert (c["effect"], c["p"]) == pytest.approx(tuple(sps.kendalltau(x, [r.metrics["stability"] for r in runs])))
    backwards = verdicts(trend, runs, GROUPS, {"prune.period": periods[::-1]})
    assert backwards["verdict"] == "contradicted"


def test_equivalence_needs_the_interval_inside_the_margin():
    test = {"kind": "equivalence", "metric": "best_test_acc", "a": "largest", "b": "smallest", "margin": 0.01}
    same = group_runs({"largest": 0.930, "smallest": 0.931}, metric="best_test_acc", sd=0.001)
    c = verdicts(test, same, GROUPS)
    assert c["verdict"] == "reproduced" and c["test"] == "TOST ±1 pts (paired t over seeds; 90% interval)"
    d = np.array([r.metrics["best_test_acc"] for r in same[:5]]) - [r.metrics["best_test_acc"] for r in same[5:]]
    tost = max(sps.ttest_1samp(d, -0.01, alternative="greater").pvalue,
               sps.ttest_1samp(d, 0.01, alternative="less").pvalue)
    assert c["p"] == pytest.approx(tost) and c["p"] < 0.05
    assert c["margin"] == 0.01 and format_effect(c).endswith(" in ±1.00")  # the interval reads against its margin
    apart = group_runs({"largest": 0.95, "smallest": 0.90}, metric="best_test_acc", sd=0.001)
    assert verdicts(test, apart, GROUPS)["verdict"] == "contradicted"
    noisy = group_runs({"largest": 0.93, "smallest": 0.93}, metric="best_test_acc", sd=0.03)
    assert verdicts(test, noisy, GROUPS)["verdict"] == "inconclusive"


def test_a_bound_is_a_one_sample_t_test_and_equals_scipys():
    values = [0.004, 0.006, 0.009, 0.003, 0.007]
    runs = [Run(spec("smallest"), i, {"lmc_barrier": v}) for i, v in enumerate(values)]
    c = verdicts({"kind": "bound", "metric": "lmc_barrier", "below": 0.02}, runs)
    assert c["verdict"] == "reproduced" and c["p"] == pytest.approx(sps.ttest_1samp(values, 0.02).pvalue)
    assert verdicts({"kind": "bound", "metric": "lmc_barrier", "above": 0.02}, runs)["verdict"] == "contradicted"


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_runs_give_no_test_and_say_so(n):
    c = verdicts({"kind": "correlation", "x": "stability", "y": "best_test_acc", "sign": "negative"}, NEGATIVE[:n])
    assert c["verdict"] == "inconclusive" and c["p"] is None and c["effect"] is None
    assert "too few" in c["parts"][0]["note"]
    pairs = verdicts({"kind": "difference", "metric": "stability", "a": "largest", "b": "smallest",
                      "sign": "positive"}, group_runs({"largest": 0.9, "smallest": 0.1}, seeds=range(n)), GROUPS)
    assert pairs["verdict"] == "inconclusive" and pairs["p"] is None and "too few" in pairs["parts"][0]["note"]


def test_several_parts_need_every_one_and_a_contradiction_must_pass_bonferroni():
    # part 1 clearly reproduced; part 2 in the opposite direction with 0.025 < p < 0.05
    x = np.linspace(0, 1, 12)
    weak = x + 0.7 * np.array([0.9, -0.4, 0.2, -0.8, 0.5, 0.1, -0.3, 0.6, -0.9, 0.4, -0.1, 0.2])
    p = sps.pearsonr(x, weak).pvalue
    assert 0.025 < p < 0.05, p
    runs = [Run(spec("smallest"), i, {"stability": a, "best_test_acc": -a, "gap": b})
            for i, (a, b) in enumerate(zip(x, weak))]
    tests = [{"kind": "correlation", "x": "stability", "y": "best_test_acc", "sign": "negative"},
             {"kind": "correlation", "x": "stability", "y": "gap", "sign": "negative"}]
    c = verdicts(tests, runs)
    assert [q["verdict"] for q in c["parts"]] == ["reproduced", "contradicted"]
    assert c["verdict"] == "inconclusive"  # the contradiction does not survive 0.05 / 2
    assert verdicts(tests[1:], runs)["verdict"] == "contradicted"  # alone it does


def test_a_metric_no_run_reports_leaves_the_claim_inconclusive():
    c = verdicts({"kind": "correlation", "x": "stability", "y": "hessian_trace", "sign": "positive"}, NEGATIVE)
    assert c["verdict"] == "inconclusive" and c["n"] == 0


def test_claim_table_columns_line_a_replication_up_beside_the_suites_own_seeds():
    from gstbench.reports.claim_table import column_of

    own = (0, 1, 2, 3, 4)
    assert column_of("quick", [0, 1, 2, 3, 4], own) == "quick"
    assert column_of("quick", [100, 101, 102], (0, 1, 2)) == "quick, fresh seeds"
    assert column_of("quick", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], own) == "quick, seeds 0-9"
    assert column_of("paper", [3, 7], None) == "paper, seeds 3, 7"


# One declared test per claim kind: a kind registered without an example here fails the test below.
KIND_EXAMPLES = {
    "correlation": {"x": "stability", "y": "best_test_acc", "sign": "negative", "statistic": ["pearson", "kendall"],
                    "paper_effect": -0.4},
    "difference": {"metric": "best_test_acc", "a": "small", "b": "large", "sign": "positive",
                   "effect_of_interest": 0.01, "effect_reason": "a point"},
    "order": {"metric": "best_test_acc", "groups": ["large", "rand", "small"], "sign": "positive",
              "effect_of_interest": 0.01, "effect_reason": "a point"},
    "trend": {"metric": "best_test_acc", "groups": ["large", "rand", "small"], "sign": "positive",
              "effect_of_interest": 0.3, "effect_reason": "a moderate tau"},
    "equivalence": {"metric": "best_test_acc", "a": "small", "b": "rand", "margin": 0.05,
                    "effect_of_interest": 0.0, "effect_reason": "equal"},
    "noninferiority": {"metric": "best_test_acc", "a": "small", "b": "rand", "margin": 0.05,
                       "effect_of_interest": 0.0, "effect_reason": "equal"},
    "bound": {"metric": "best_test_acc", "above": 0.5, "effect_of_interest": 0.05, "effect_reason": "five points"},
}


def test_every_registered_claim_kind_declares_evaluates_renders_and_has_power():
    """The kind registry is the only list of kinds: each one parses, gives a verdict on planted runs, renders in the
    claims table and run's screen, and has power at its declared effect."""
    from gstbench.plan.claim_kinds import CLAIM_KINDS
    from gstbench.reports.claim_stats import VERDICTS
    from gstbench.reports.claims import _test_parts, render_claims

    assert set(KIND_EXAMPLES) == set(CLAIM_KINDS)
    rng = np.random.default_rng(5)
    groups = {"small": {"prune.target": ["smallest"]}, "rand": {"prune.target": ["random"]},
              "large": {"prune.target": ["largest"]}}
    means = {"smallest": 0.9, "random": 0.89, "largest": 0.85}
    runs = [Run(spec(t), s, {"best_test_acc": m + rng.normal(0, 0.01), "stability": 1 - m + rng.normal(0, 0.01)})
            for t, m in means.items() for s in range(8)]
    for name, example in KIND_EXAMPLES.items():
        claims = parse_claims([{"id": f"k-{name}", "statement": "s", "test": {"kind": name, **example}}], "k.toml")
        c = evaluate_claims(claims, groups, runs, {})[0]
        assert c["verdict"] in VERDICTS and not c.get("missing"), (name, c)
        assert c["effect"] is not None and c["low"] is not None, name
        assert c["power"] is not None and 0 < c["power"] <= 1 and c["n_for_power"], (name, c.get("power_note"))
        text = "\n".join(render_claims([c]))
        assert f"k-{name}" in text and c["verdict_label"].upper() in text, name
        families = {p.family for p in _test_parts(claims[0]["tests"][0], groups, runs, {})}
        assert families <= set(CLAIM_KINDS[name].families), (name, families)
