"""Power: each claim test's power against a Monte Carlo simulation of the same test on planted data (the chance of
``reproduced``, size included where the paper gives a number), the n for 80% power, and the verdicts that tell a
weaker effect and an absent one from an underpowered null."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from gstbench.reports import power as pw
from gstbench.reports.claim_stats import (ABSENT, CONTRADICTED, INCONCLUSIVE, REPRODUCED, WEAKER, EffectTested, Part,
                                          bound_part, combine, correlation_part, paired_part, welch_part)
from gstbench.plan.claims import parse_claims
from gstbench.reports.claims import Run, evaluate_claims, render_claims

SIMS = 4000  # the simulated power's standard error is at most 0.8 points
WITHIN = 0.03  # the bound: 3 points of power


def simulated(test, sims: int = SIMS, seed: int = 0) -> float:
    """The share of simulated data sets on which the part ``test(rng)`` returns is reproduced."""
    rng = np.random.default_rng(seed)
    return sum(test(rng).verdict() == "reproduced" for _ in range(sims)) / sims


def bivariate(rng, rho: float, n: int):
    return rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], n).T


@pytest.mark.parametrize("statistic,rho,n", [("pearson", -0.43, 40), ("pearson", 0.6, 12), ("pearson", 0.8, 6),
                                             ("kendall", -0.43, 40), ("kendall", 0.5, 15)])
def test_correlation_power_matches_a_simulation_of_the_same_test(statistic, rho, n):
    sign = 1 if rho > 0 else -1
    test = lambda rng: correlation_part("c", *bivariate(rng, rho, n), statistic, sign, "m")  # noqa: E731
    if statistic == "pearson":
        computed = pw.pearson_power(abs(rho), n)
    else:  # a bivariate normal's tau (Greiner's relation)
        computed = pw.kendall_power(2 / math.pi * math.asin(abs(rho)), n)
    assert simulated(test) == pytest.approx(computed, abs=WITHIN)


@pytest.mark.parametrize("positions,runs,slope", [(7, 3, 0.3), (7, 3, 0.15), (3, 3, 1.0), (3, 6, 0.8)])
def test_trend_power_matches_a_simulation_of_the_same_test(positions, runs, slope):
    """A rate sweep (7 periods x 3 seeds) and the lottery-ticket k sweep (3 groups x 3 seeds)."""
    x = np.repeat(np.arange(positions), runs).astype(float)
    rng = np.random.default_rng(1)
    # the planted effect in the test's unit: tau-b's mean over many data sets (x fixed, so S's scale is fixed)
    tau = float(np.mean([sps.kendalltau(x, -slope * x + rng.normal(0, 1, x.size)).statistic for _ in range(4000)]))
    test = lambda rng: correlation_part("t", x, -slope * x + rng.normal(0, 1, x.size), "kendall", -1, "m")  # noqa: E731
    assert simulated(test) == pytest.approx(pw.trend_power(-tau, range(positions), [runs] * positions), abs=WITHIN)


def test_paired_and_one_sample_t_power_match_simulations():
    delta, sd, n = 0.01, 0.008, 5  # 1 point of stability, 5 seeds
    paired = lambda rng: paired_part("d", rng.normal(delta, sd, n), np.zeros(n), 1, "stability")  # noqa: E731
    assert simulated(paired) == pytest.approx(pw.t_power(delta, sd / math.sqrt(n), n - 1), abs=WITHIN)
    bound = lambda rng: bound_part("b", rng.normal(0.02 - 0.01, 0.012, 8), 0.02, -1, "lmc_barrier")  # noqa: E731
    assert simulated(bound) == pytest.approx(pw.t_power(0.01, 0.012 / math.sqrt(8), 7), abs=WITHIN)


@pytest.mark.parametrize("delta,sd,n", [(0.01, 0.01, 5), (0.02, 0.01, 4), (0.005, 0.004, 12)])
def test_a_paired_part_powered_at_the_papers_number_must_also_reach_it(delta, sd, n):
    """With the paper's number, reproduced needs the interval to reach it: at the truth, at most 97.5%."""
    def test(rng):
        out = paired_part("d", rng.normal(delta, sd, n), np.zeros(n), 1, "acc")
        out.tested = EffectTested(delta, "paper")
        return out

    computed = pw.t_power(delta, sd / math.sqrt(n), n - 1, size=delta)
    assert computed < pw.t_power(delta, sd / math.sqrt(n), n - 1)
    assert simulated(test) == pytest.approx(computed, abs=WITHIN)


@pytest.mark.parametrize("n_a,sd_a,n_b,sd_b,delta", [(6, 0.01, 9, 0.02, 0.015), (3, 1.0, 3, 1.0, 1.0),
                                                     (3, 1.0, 3, 1.0, 3.0)])
def test_welch_power_matches_a_simulation_even_at_three_runs_a_group(n_a, sd_a, n_b, sd_b, delta):
    """The noncentral t at the true variances' dof ran 5-10 points high at 3 runs a group; the grid is exact."""
    test = lambda rng: welch_part("w", rng.normal(delta, sd_a, n_a), rng.normal(0, sd_b, n_b), 1, "acc")  # noqa: E731
    assert simulated(test) == pytest.approx(pw.welch_power(delta, sd_a ** 2, n_a, sd_b ** 2, n_b), abs=WITHIN)


def test_the_kendall_interval_covers_with_ties_in_x():
    """Two positions x 21 runs: the untied variance covered 90%; widened for the ties, 95% within 2 points."""
    x = np.repeat([0.0, 1.0], 21)
    rng = np.random.default_rng(3)
    true = float(np.mean([sps.kendalltau(x, 0.5 * x + rng.normal(0, 1, x.size)).statistic for _ in range(6000)]))
    parts = [correlation_part("t", x, 0.5 * x + rng.normal(0, 1, x.size), "kendall", 1, "m") for _ in range(2000)]
    coverage = np.mean([p.low <= true <= p.high for p in parts])
    assert coverage == pytest.approx(0.95, abs=0.02)


@pytest.mark.parametrize("true_difference,margin,sd,n", [(0.0, 0.01, 0.008, 6), (0.0, 0.01, 0.01, 12),
                                                         (0.004, 0.01, 0.006, 10)])
def test_tost_power_matches_a_simulation_of_two_one_sided_tests(true_difference, margin, sd, n):
    def test(rng):
        part = paired_part("e", rng.normal(true_difference, sd, n), np.zeros(n), 0, "acc")
        part.as_equivalence(margin)
        return part

    computed = pw.tost_power(true_difference, margin, sd / math.sqrt(n), n - 1)
    assert simulated(test) == pytest.approx(computed, abs=WITHIN)


def test_welch_tost_power_matches_a_simulation():
    def test(rng):
        part = welch_part("e", rng.normal(0, 0.006, 8), rng.normal(0, 0.012, 12), 0, "acc")
        part.as_equivalence(0.01)
        return part

    se, dof = pw.welch_se_dof(0.006 ** 2, 8, 0.012 ** 2, 12)
    assert simulated(test) == pytest.approx(pw.tost_power(0.0, 0.01, se, dof), abs=WITHIN)


MODELS = {
    "pearson r = -0.43": pw.pearson_model(0.43),
    "pearson r = -0.43, the paper's": pw.pearson_model(0.43, size=0.43),
    "kendall tau = -0.28": pw.kendall_model(0.28, 40),
    "trend tau = -0.19, 7 x 3": pw.trend_model(0.19, range(7), [3] * 7),
    "paired 1 point, sd 2 points": pw.one_sample_model(0.01, 0.02),
    "welch 0.19 points": pw.welch_model(0.0019, 0.01 ** 2, 5, 0.012 ** 2, 5),
    "welch 0.19 points, the paper's": pw.welch_model(0.0019, 0.01 ** 2, 5, 0.012 ** 2, 5, size=0.0019),
    "TOST at 0 in ±1 point": pw.one_sample_model(0.0, 0.015, margin=0.01),
}


@pytest.mark.parametrize("name", MODELS)
def test_the_n_for_80_percent_gives_at_least_80_percent_and_one_less_does_not(name):
    model = MODELS[name]
    n = model.n_for()
    assert n is not None and model.power(n) >= 0.8
    assert n == model.min_n or model.power(n - 1) is None or model.power(n - 1) < 0.8


def test_pearson_at_the_papers_effect_needs_40_runs_and_a_simulation_agrees():
    n = pw.pearson_model(0.43, size=0.43).n_for()
    assert n == 40  # 39 runs give 0.798
    test = lambda rng: correlation_part("c", *bivariate(rng, -0.43, n), "pearson", -1, "m")  # noqa: E731
    assert simulated(test, seed=5) >= 0.8 - WITHIN


# ---- the verdicts ----------------------------------------------------------------------------
def claim(test: dict, effect: dict | None) -> dict:
    declared = {"id": "c", "statement": "s", "test": test, **(effect or {})}
    return parse_claims([declared], "planted.toml")[0]


def runs_with(x, y) -> list[Run]:
    return [Run({"prune": {"target": {"id": "gstbench:smallest"}}}, i, {"stability": a, "best_test_acc": b})
            for i, (a, b) in enumerate(zip(x, y))]


CORRELATION = {"kind": "correlation", "x": "stability", "y": "best_test_acc", "sign": "negative"}
PAPER = {"paper_effect": -0.43, "effect_reason": "ResNet18"}


def no_correlation(n: int, seed: int = 0) -> list[Run]:
    """n runs whose stability and accuracy are independent, with a sample r near 0 (|r| < 0.05)."""
    rng = np.random.default_rng(seed)
    while True:
        x, y = rng.normal(size=n), rng.normal(size=n)
        if abs(np.corrcoef(x, y)[0, 1]) < 0.05:
            return runs_with(x, y)


def test_a_null_whose_interval_excludes_the_papers_effect_is_no_effect_of_the_papers_size():
    c = evaluate_claims([claim(CORRELATION, PAPER)], {}, no_correlation(120), {})[0]
    assert c["verdict"] == ABSENT and c["verdict_label"] == "no effect of the paper's size"
    assert c["high"] > 0 > c["low"] > -0.43
    assert c["effect_tested"] == {"value": -0.43, "kind": "paper", "reason": "ResNet18"}
    assert c["power"] == pytest.approx(pw.pearson_power(0.43, 120, size=0.43)) and c["n_for_power"] == 40


def test_a_null_whose_interval_holds_the_papers_effect_is_inconclusive_with_its_power():
    c = evaluate_claims([claim(CORRELATION, PAPER)], {}, no_correlation(12), {})[0]
    assert c["verdict"] == "inconclusive" and c["low"] < -0.43 < 0 < c["high"]
    assert c["power"] == pytest.approx(pw.pearson_power(0.43, 12, size=0.43)) and c["power"] < 0.8
    text = "\n".join(render_claims([c]))
    assert "r = -0.43 (paper)" in text and f"{c['power']:.2f}" in text and " 40 " in text


def test_kendall_parts_are_powered_at_the_papers_r_as_tau():
    test = {**CORRELATION, "statistic": ["pearson", "kendall"]}
    c = evaluate_claims([claim(test, PAPER)], {}, no_correlation(30), {})[0]
    pearson, kendall = c["parts"]
    assert pearson["effect_tested"]["value"] == -0.43
    assert kendall["effect_tested"]["value"] == pytest.approx(2 / math.pi * math.asin(-0.43))
    assert kendall["effect_tested"]["derived"].startswith("tau = (2/pi) asin r")


def test_a_claim_without_a_declared_effect_has_no_power_and_says_why():
    c = evaluate_claims([claim(CORRELATION, None)], {}, no_correlation(12), {})[0]
    assert c["verdict"] == "inconclusive" and c["power"] is None and c["n_for_power"] is None
    assert c["effect_tested"] is None and "no effect declared" in c["power_note"]
    text = "\n".join(render_claims([c]))
    assert "c: no power: no effect declared" in text


def test_an_effect_of_interest_is_marked_as_such_with_its_reason():
    interest = {"effect_of_interest": -0.3, "effect_reason": "a medium correlation (Cohen 1988)"}
    c = evaluate_claims([claim(CORRELATION, interest)], {}, no_correlation(12), {})[0]
    assert c["effect_tested"]["kind"] == "interest"
    text = "\n".join(render_claims([c]))
    assert "r = -0.30 (of interest)" in text and "a medium correlation (Cohen 1988)" in text


def part(verdict_effect: float, low: float, high: float, p: float, tested: float) -> Part:
    """A part with a t interval around ``verdict_effect`` (se from the 95% half width, 9 dof)."""
    from scipy import stats

    from gstbench.reports.claim_stats import EffectTested

    half = (high - low) / 2
    out = Part("p", "paired t", "difference", "acc", 1, effect=verdict_effect, low=low, high=high, p=p, n=10,
               se=half / stats.t.ppf(0.975, 9), dof=9, family="paired")
    out.tested = EffectTested(tested, "paper")
    return out


def test_parts_combine_on_the_five_step_scale_at_one_level_per_row():
    reproduced = part(0.02, 0.01, 0.03, 0.001, 0.01)
    weaker = part(0.004, 0.003, 0.005, 1e-6, 0.01)  # significant, short of the paper's 0.01
    absent = part(0.0, -0.004, 0.004, 0.99, 0.01)
    inconclusive = part(0.0, -0.02, 0.02, 0.99, 0.01)
    contradicted = part(-0.03, -0.04, -0.02, 1e-5, 0.01)
    assert [x.verdict() for x in (reproduced, weaker, absent, inconclusive, contradicted)] == [
        REPRODUCED, WEAKER, ABSENT, INCONCLUSIVE, CONTRADICTED]
    assert combine([reproduced, reproduced])[0] == REPRODUCED and combine([reproduced])[2] == 0.05
    assert combine([reproduced, weaker])[:2] == (WEAKER, weaker) and combine([reproduced, weaker])[2] == 0.025
    assert combine([weaker, inconclusive])[:2] == (ABSENT, weaker)  # the direction did not hold for every part
    assert combine([absent, inconclusive])[:2] == (ABSENT, absent)
    assert combine([absent, contradicted])[:2] == (CONTRADICTED, contradicted)
    assert combine([reproduced, inconclusive])[0] == INCONCLUSIVE
    # excluded at 95% but not at the Bonferroni level of two parts (97.5%): the claim stays inconclusive
    edge = part(0.0, -0.0095, 0.0095, 0.99, 0.01)
    assert edge.verdict() == ABSENT and combine([edge, inconclusive])[0] == INCONCLUSIVE
    assert edge.at_level(0.025)["verdict"] == INCONCLUSIVE and edge.at_level(0.025)["high"] > 0.01


def test_tost_power_stays_right_at_large_n():
    """A quadrature over chi2's density missed its narrow peak at large dof (power 0 at 100 pairs); the
    equally likely points of the grid do not."""
    powers = [pw.tost_power(0.0, 0.01, 0.001 / math.sqrt(n), n - 1) for n in (3, 10, 100, 1000, 100_000)]
    assert powers == pytest.approx([1.0] * 5, abs=1e-6)
    rising = [pw.tost_power(0.0, 0.01, 0.046 / math.sqrt(n), n - 1) for n in (3, 100, 1000, 100_000)]
    assert rising == sorted(rising) and rising[-1] == pytest.approx(1.0)
