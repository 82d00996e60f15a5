"""Leaderboard statistics: interval coverage, correlations against scipy, small samples said so."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from gstbench.reports import distributions as dist
from gstbench.reports.stats import correlation, fisher_interval, mean_interval


@pytest.mark.parametrize("n", [5, 30])
def test_the_default_interval_covers_the_true_mean_about_95_percent(n):
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(1000):
        r = mean_interval(rng.normal(2.0, 1.5, n))
        covered += r["low"] <= 2.0 <= r["high"]
    # 1000 trials: the binomial standard error at 95% is 0.7 points.
    assert 0.93 <= covered / 1000 <= 0.975, covered
    assert r["method"].startswith("bootstrap-t")


def test_the_t_interval_is_scipys():
    x = [0.91, 0.93, 0.92, 0.95, 0.90]
    r = mean_interval(x, method="t")
    ci = sps.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=sps.sem(x))
    assert (r["low"], r["high"]) == pytest.approx(ci) and r["method"] == "student-t"


def test_small_samples_get_no_interval_and_say_so():
    for values in ([], [0.9], [0.9, 0.95]):
        r = mean_interval(values)
        assert r["low"] is None and r["high"] is None and r["note"]
    assert mean_interval([0.9, 0.95])["note"] == "n < 3: no interval"
    same = mean_interval([0.5, 0.5, 0.5])
    assert (same["low"], same["high"]) == (0.5, 0.5)
    assert mean_interval([1.0, 2.0, 4.0]) == mean_interval([4.0, 1.0, 2.0])  # seeded, whatever the runs' order


def test_pearson_and_kendall_match_scipy_with_a_fisher_interval_for_r():
    x = [0.95, 0.91, 0.88, 0.97, 0.85, 0.90, 0.93]
    y = [0.90, 0.92, 0.93, 0.89, 0.94, 0.91, 0.92]
    c = correlation(x, y)
    assert c["pearson_r"] == pytest.approx(sps.pearsonr(x, y).statistic)
    assert c["pearson_p"] == pytest.approx(sps.pearsonr(x, y).pvalue)
    assert c["kendall_tau"] == pytest.approx(sps.kendalltau(x, y).statistic)
    assert c["kendall_p"] == pytest.approx(sps.kendalltau(x, y).pvalue)
    ci = sps.pearsonr(x, y).confidence_interval(0.95)  # scipy's Fisher z interval
    assert (c["pearson_low"], c["pearson_high"]) == pytest.approx((ci.low, ci.high))
    assert fisher_interval(0.5, 3) == {"pearson_low": None, "pearson_high": None}
    assert math.isclose(fisher_interval(0.0, 7)["pearson_low"], -fisher_interval(0.0, 7)["pearson_high"])
    assert correlation([1, 2], [2, 1])["pearson_r"] is None and "fewer than 3" in correlation([1, 2], [2, 1])["note"]


def _same_bits(ours, theirs) -> bool:
    return np.array_equal(np.asarray(ours), np.asarray(theirs), equal_nan=True) and type(ours) is type(theirs)


@given(q=st.one_of(st.floats(0, 1), st.sampled_from([-0.5, 1.5, math.nan])),
       x=st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.just(math.inf)),
       dof=st.one_of(st.integers(1, 10_000), st.floats(0.5, 1e6), st.sampled_from([0, -1, math.nan, math.inf])))
@settings(max_examples=300, deadline=None)
def test_the_t_and_normal_functions_give_scipy_stats_values_bit_for_bit(q, x, dof):
    """reports.distributions stands in for scipy.stats.t and .norm (a second less to start `report`)."""
    assert _same_bits(dist.t_quantile(q, dof), sps.t.ppf(q, dof))
    assert _same_bits(dist.t_cdf(x, dof), sps.t.cdf(x, dof))
    assert _same_bits(dist.t_sf(x, dof), sps.t.sf(x, dof))
    assert _same_bits(dist.normal_quantile(q), sps.norm.ppf(q))
    assert _same_bits(dist.normal_cdf(x), sps.norm.cdf(x))
