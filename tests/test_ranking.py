"""The rank statistics of the methods comparison against scipy and scikit-posthocs on fixed data: Friedman's
chi-square (with ties), Nemenyi's pairwise p-values and critical difference, Wilcoxon with Holm's correction."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gstbench.reports.ranking import block_ranks, cliques, friedman, holm, nemenyi_cd, rank_summary

sp = pytest.importorskip("scikit_posthocs")  # the reference implementation (the test extra installs it)

# 12 blocks x 5 methods with ties inside blocks, as accuracies at several levels and seeds give them
SCORES = np.array([
    [0.91, 0.90, 0.85, 0.91, 0.70], [0.88, 0.89, 0.80, 0.86, 0.66], [0.84, 0.84, 0.79, 0.83, 0.61],
    [0.90, 0.87, 0.86, 0.88, 0.72], [0.75, 0.74, 0.70, 0.75, 0.55], [0.93, 0.92, 0.90, 0.91, 0.80],
    [0.81, 0.83, 0.77, 0.80, 0.60], [0.86, 0.86, 0.86, 0.84, 0.69], [0.79, 0.78, 0.71, 0.77, 0.58],
    [0.92, 0.90, 0.88, 0.93, 0.75], [0.70, 0.69, 0.66, 0.68, 0.50], [0.87, 0.88, 0.81, 0.85, 0.67]])


def test_friedman_equals_scipy_with_ties():
    chi2, p = friedman(SCORES)
    ref = stats.friedmanchisquare(*SCORES.T)
    assert chi2 == pytest.approx(ref.statistic, rel=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9)


def test_ranks_give_one_to_the_best_and_share_ties():
    ranks = block_ranks(SCORES)
    assert ranks[0].tolist() == [1.5, 3.0, 4.0, 1.5, 5.0]
    assert ranks[7].tolist() == [2.0, 2.0, 2.0, 4.0, 5.0]


def test_nemenyi_p_values_equal_scikit_posthocs():
    summary = rank_summary(list("ABCDE"), SCORES)
    reference = sp.posthoc_nemenyi_friedman(SCORES).to_numpy()
    assert np.allclose(np.array(summary.nemenyi_p), reference, rtol=1e-9, atol=1e-12)
    # the critical difference is where Nemenyi's p crosses alpha
    k, n = SCORES.shape[1], SCORES.shape[0]
    cd = nemenyi_cd(k, n, 0.05)
    q = cd / np.sqrt(k * (k + 1) / (6 * n)) * np.sqrt(2)
    assert stats.studentized_range.sf(q, k, np.inf) == pytest.approx(0.05, rel=1e-6)
    assert cd == pytest.approx(2.728 * np.sqrt(k * (k + 1) / (6 * n)), rel=1e-3)  # Demsar's q_0.05, k=5


def test_holm_wilcoxon_equals_scikit_posthocs():
    summary = rank_summary(list("ABCDE"), SCORES)
    reference = sp.posthoc_wilcoxon(list(SCORES.T), p_adjust="holm").to_numpy()
    assert np.allclose(np.array(summary.holm_wilcoxon_p), reference, rtol=1e-9, atol=1e-12)


def test_holm_is_the_step_down_adjustment():
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_cliques_join_methods_within_the_critical_difference():
    assert cliques([1.0, 1.5, 2.9, 4.0, 4.2], 1.0) == [(0, 1), (3, 4)]
    assert cliques([1.0, 1.5, 2.4], 1.5) == [(0, 2)]
