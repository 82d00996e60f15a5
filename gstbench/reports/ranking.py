"""Ranking methods across blocks (one block: a compression level, regime and seed): average ranks, Friedman's
test, and the post-hoc comparisons, Nemenyi's critical difference and Wilcoxon signed-rank tests with Holm's
correction (Demsar 2006, "Statistical comparisons of classifiers over multiple data sets").

``scores`` is a blocks x methods array, higher better; rank 1 is the best method of a block, ties share
their mean rank. Friedman's statistic carries the correction for ties that scipy's has.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass
class RankSummary:
    methods: list[str]
    blocks: int
    mean_ranks: list[float]  # per method, 1 = best
    friedman_chi2: float
    friedman_p: float
    alpha: float
    critical_difference: float  # Nemenyi's CD at alpha
    nemenyi_p: list[list[float]]  # methods x methods
    holm_wilcoxon_p: list[list[float]]  # methods x methods, Holm-adjusted over all pairs

    def as_json(self) -> dict:
        return {"methods": self.methods, "blocks": self.blocks, "mean_ranks": self.mean_ranks,
                "friedman": {"chi2": self.friedman_chi2, "df": len(self.methods) - 1, "p": self.friedman_p},
                "alpha": self.alpha, "nemenyi_critical_difference": self.critical_difference,
                "nemenyi_p": self.nemenyi_p, "holm_wilcoxon_p": self.holm_wilcoxon_p,
                "method": "ranks per block (1 = best, ties share their mean); Friedman's chi-square with the tie "
                          "correction; Nemenyi CD = q_alpha * sqrt(k(k+1) / 6N), q_alpha the studentized range "
                          "quantile over sqrt(2); two-sided Wilcoxon signed-rank per pair, Holm-adjusted"}


def block_ranks(scores: np.ndarray) -> np.ndarray:
    """Each block's ranks, 1 = the highest score; ties share their mean rank."""
    return np.vstack([stats.rankdata(-row) for row in np.asarray(scores, dtype=float)])


def friedman(scores: np.ndarray) -> tuple[float, float]:
    """Friedman's chi-square (with the correction for ties) and its p-value, df = k - 1."""
    ranks = block_ranks(scores)
    n, k = ranks.shape
    rank_sums = ranks.sum(0)
    chi2 = 12.0 / (n * k * (k + 1)) * float((rank_sums ** 2).sum()) - 3.0 * n * (k + 1)
    ties = sum(float((counts ** 3 - counts).sum()) for counts in
               (np.unique(row, return_counts=True)[1] for row in ranks))
    correction = 1.0 - ties / (n * (k ** 3 - k))
    if correction <= 0:  # every block a full tie: nothing to tell apart
        return 0.0, 1.0
    chi2 /= correction
    return chi2, float(stats.chi2.sf(chi2, k - 1))


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """The critical difference of mean ranks for k methods over n blocks."""
    q_alpha = float(stats.studentized_range.ppf(1 - alpha, k, np.inf)) / math.sqrt(2)
    return q_alpha * math.sqrt(k * (k + 1) / (6.0 * n))


def nemenyi_p(mean_ranks: np.ndarray, n: int) -> np.ndarray:
    """Nemenyi's p-value for every pair of methods (1 on the diagonal)."""
    k = len(mean_ranks)
    q = np.abs(mean_ranks[:, None] - mean_ranks[None, :]) / math.sqrt(k * (k + 1) / (6.0 * n))
    p = stats.studentized_range.sf(q * math.sqrt(2), k, np.inf)
    np.fill_diagonal(p, 1.0)
    return p


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (family-wise error)."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[j]))
        adjusted[j] = running
    return adjusted.tolist()


def holm_wilcoxon_p(scores: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-value of every pair of methods over the blocks, Holm-adjusted."""
    scores = np.asarray(scores, dtype=float)
    k = scores.shape[1]
    pairs = list(itertools.combinations(range(k), 2))
    raw = []
    for i, j in pairs:
        diff = scores[:, i] - scores[:, j]
        raw.append(1.0 if not np.any(diff != 0) else float(stats.wilcoxon(scores[:, i], scores[:, j]).pvalue))
    p = np.ones((k, k))
    for (i, j), value in zip(pairs, holm(raw)):
        p[i, j] = p[j, i] = value
    return p


def rank_summary(methods: list[str], scores: np.ndarray, alpha: float = 0.05) -> RankSummary:
    """Everything a critical-difference diagram and the rank table need, for blocks x methods ``scores``."""
    scores = np.asarray(scores, dtype=float)
    n, k = scores.shape
    if k < 2 or n < 2:
        raise ValueError(f"ranking needs at least 2 methods and 2 blocks, got {k} and {n}")
    mean = block_ranks(scores).mean(0)
    chi2, p = friedman(scores)
    return RankSummary(list(methods), n, mean.tolist(), chi2, p, alpha, nemenyi_cd(k, n, alpha),
                       nemenyi_p(mean, n).tolist(), holm_wilcoxon_p(scores).tolist())


def cliques(mean_ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last), in the order of mean rank, whose mean ranks lie within ``cd``: the bars of a
    critical-difference diagram (indices into the sorted order)."""
    ordered = sorted(mean_ranks)
    runs = []
    for i in range(len(ordered)):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return runs
