"""Statistical power of each claim test at a given effect, and the n that would give 80% (scipy).

Power here is the probability that the part's own test comes out ``reproduced``
(claims.py's rule): the effect in the claimed direction, significant at alpha (two-sided,
0.05) with its interval on that side of zero, and, where the claim states the paper's
number (``size``), the interval reaching that number, when the true effect is the one the
claim declares. Reaching the paper's number caps the power at 1 - alpha / 2 when the truth
is exactly the paper's effect: its interval misses it from below that often. Each test's
own model, checked against Monte Carlo simulations of the same test on planted data
(tests/test_power.py):

- Pearson r: Fisher's z, atanh(r) ~ N(atanh(rho) + rho / (2 (n - 1)), 1 / (n - 3)), the
  mean with Fisher's (1921) small-sample term, without which the power runs 4-9 points
  low below 12 runs; the verdict's thresholds (the t-test's critical r, the interval's
  ends) are all thresholds on r, so the power is one normal tail;
- Kendall tau-b between two measured variables: the test rejects beyond its asymptotic
  null critical value (ties in x included; scipy tests exactly below 34 untied runs,
  which the simulations find within 2 points of it), and
  atanh(tau) ~ N(atanh(tau_true), 0.437 c / (n - 4)) under the alternative (Fieller,
  Hartley & Pearson 1957: a bivariate normal; c > 1 the ratio of tau-b's null variance
  with the ties in x to that without, 1 without ties);
- a Kendall trend along an axis (x: the positions, runs tied at each): y = beta * position
  + normal noise, beta set so that the expected tau-b is the effect; Kendall's S is taken
  as normal with its exact mean and variance under that model (pairs and the covariances
  of pairs that share a run, by bivariate normal orthant probabilities), against the
  tie-corrected null variance;
- t-tests (paired, one-sample): the estimate is normal and the estimated standard error a
  scaled chi; the power is the normal tail beyond the verdict's threshold integrated over
  the chi (without a size, exactly the noncentral t);
- Welch's t: the same with both groups' variance estimates integrated out (a grid over the
  two chi-square distributions, each point with its own Welch-Satterthwaite dof), exact
  where the noncentral t with the dof at the true variances runs 5-10 points high at 3
  runs a group;
- TOST and non-inferiority: both (or one) one-sided t-tests at alpha, the estimated se
  integrated out the same way.

The n for 80% keeps what was measured (the spread, the group proportions, the ties of an
axis) and grows the runs; it counts what the part's n counts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import special

from gstbench.reports import ALPHA
from gstbench.reports.distributions import normal_cdf, normal_quantile, t_quantile

TARGET_POWER = 0.8
MAX_N = 1_000_000
KENDALL_ALT_VAR = 0.437  # Fieller et al. 1957: var(atanh tau) ~ 0.437 / (n - 4)


def pearson_threshold(n: float, alpha: float = ALPHA, size: float | None = None) -> float:
    """The atanh(r) above which a Pearson part is reproduced (claimed direction positive): the t-test's critical r,
    the Fisher-z interval clear of zero and, with ``size`` (the paper's r), the interval reaching it."""
    t_crit = t_quantile(1 - alpha / 2, n - 2)
    half = normal_quantile(1 - alpha / 2) / math.sqrt(n - 3)
    threshold = max(math.atanh(t_crit / math.sqrt(n - 2 + t_crit ** 2)), half)
    return max(threshold, math.atanh(size) - half) if size is not None else threshold


def pearson_power(rho: float, n: float, alpha: float = ALPHA, size: float | None = None) -> float | None:
    """P(the part is reproduced) at a true ``rho`` (the claimed direction positive) by Fisher's z; None for n <= 3."""
    if n <= 3:
        return None
    if abs(rho) >= 1:
        return 1.0 if rho > 0 else 0.0
    mean = math.atanh(rho) + rho / (2 * (n - 1))
    return float(normal_cdf((mean - pearson_threshold(n, alpha, size)) * math.sqrt(n - 3)))


def kendall_null_sd(n: float, x_ties: Sequence[float] = ()) -> float:
    """The standard deviation of tau-b under independence, ties in x only (scipy's asymptotic test)."""
    tied = sum(t * (t - 1) * (2 * t + 5) for t in x_ties)
    var_s = (n * (n - 1) * (2 * n + 5) - tied) / 18
    n0, n1 = n * (n - 1) / 2, sum(t * (t - 1) / 2 for t in x_ties)
    return math.sqrt(var_s / ((n0 - n1) * n0))


def kendall_interval_sd(n: float, x_ties: Sequence[float] = ()) -> float:
    """The sd of atanh(tau-b) behind its interval: Fieller et al.'s 0.437 / (n - 4), times the ratio of tau-b's null
    variance with these ties in x to that without (ties widen tau-b's spread; 1 without ties)."""
    ratio = (kendall_null_sd(n, x_ties) / kendall_null_sd(n)) ** 2 if x_ties else 1.0
    return math.sqrt(KENDALL_ALT_VAR * ratio / (n - 4))


def kendall_threshold(n: float, x_ties: Sequence[float] = (), alpha: float = ALPHA,
                      size: float | None = None, critical: float | None = None) -> float | None:
    """The tau-b above which a Kendall part is reproduced (claimed direction positive): the test's critical value
    (``critical``, or the asymptotic one), the interval clear of zero and, with ``size``, the interval reaching it;
    None when no tau-b can reach it."""
    z_crit = normal_quantile(1 - alpha / 2)
    critical = z_crit * kendall_null_sd(n, x_ties) if critical is None else critical
    if critical >= 1:
        return None
    half = z_crit * kendall_interval_sd(n, x_ties)
    threshold = max(math.atanh(critical), half)
    if size is not None:
        threshold = max(threshold, math.atanh(size) - half)
    return math.tanh(threshold)


def kendall_power(tau: float, n: float, x_ties: Sequence[float] = (), alpha: float = ALPHA,
                  size: float | None = None) -> float | None:
    """P(the part is reproduced) at a true ``tau`` (the claimed direction positive); None for n <= 4."""
    if n <= 4:
        return None
    threshold = kendall_threshold(n, x_ties, alpha, size)
    if threshold is None:
        return 0.0
    if abs(tau) >= 1:
        return 1.0 if tau > 0 else 0.0
    return float(normal_cdf((math.atanh(tau) - math.atanh(threshold)) / kendall_interval_sd(n, x_ties)))


def bivariate_normal_cdf(h: np.ndarray, k: np.ndarray, rho: float) -> np.ndarray:
    """P(X < h, Y < k) for a standard bivariate normal with correlation ``rho``, by Owen's T (Owen 1956)."""
    h, k = np.broadcast_arrays(np.asarray(h, dtype=float), np.asarray(k, dtype=float))
    h, k = np.where(h == 0, 1e-12, h), np.where(k == 0, 1e-12, k)
    s = math.sqrt(1 - rho * rho)
    value = 0.5 * (special.ndtr(h) + special.ndtr(k)) - special.owens_t(h, (k - rho * h) / (h * s)) \
        - special.owens_t(k, (h - rho * k) / (k * s))
    return value - np.where(h * k < 0, 0.5, 0.0)


def _trend_s_mean(beta: float, positions: np.ndarray, counts: np.ndarray) -> float:
    """E[S] of Kendall's S between the positions and y = beta * position + N(0, 1)."""
    d = positions[None, :] - positions[:, None]
    e = 2 * special.ndtr(beta * d / math.sqrt(2)) - 1  # E sgn(y_b - y_a)
    return float(np.sum(np.triu(counts[:, None] * counts[None, :] * e, 1)))


def _trend_s_var(beta: float, positions: np.ndarray, counts: np.ndarray) -> float:
    """Var[S]: every pair's variance plus the covariance of every two pairs that share a run."""
    d = positions[None, :] - positions[:, None]  # [a, b]: position b - position a
    h = beta * d / math.sqrt(2)  # y_b - y_a has mean beta * d and variance 2
    e = 2 * special.ndtr(h) - 1
    pairs = np.sum(np.triu(counts[:, None] * counts[None, :] * (1 - e ** 2), 1))
    h1, h2 = h[:, :, None], h[:, None, :]  # two differences from the same run at a: correlation 1/2
    agree = bivariate_normal_cdf(h1, h2, 0.5) + bivariate_normal_cdf(-h1, -h2, 0.5)
    cov = (2 * agree - 1) - e[:, :, None] * e[:, None, :]
    k = counts.size
    sign = np.sign(d)
    weight = counts[:, None, None] * counts[None, :, None] * (counts[None, None, :] - np.eye(k)[None, :, :]) \
        * sign[:, :, None] * sign[:, None, :]
    return float(pairs + np.sum(weight * cov))


def trend_power(tau: float, positions: Sequence[float], counts: Sequence[float], alpha: float = ALPHA,
                size: float | None = None) -> float | None:
    """P(a Kendall trend part along ``positions`` (``counts`` runs at each) is reproduced) at a true ``tau`` (the
    claimed direction positive)."""
    x, m = np.asarray(positions, dtype=float), np.asarray(counts, dtype=float)
    n = float(m.sum())
    if n <= 4 or x.size < 2:
        return None
    ties = [c for c in m if c > 1]
    threshold = kendall_threshold(n, ties, alpha, size)
    if threshold is None:
        return 0.0
    beta = trend_beta(tau, x, m)
    if beta is None:
        return 1.0 if tau > 0 else 0.0
    return float(normal_cdf((_trend_s_mean(beta, x, m) - threshold * _trend_denominator(m))
                            / math.sqrt(_trend_s_var(beta, x, m))))


def _trend_denominator(counts: np.ndarray) -> float:
    """tau-b = S / this, with ``counts`` runs tied at each position (no ties in y)."""
    n = float(counts.sum())
    n0, n1 = n * (n - 1) / 2, float(np.sum(counts * (counts - 1) / 2))
    return math.sqrt((n0 - n1) * n0)


def trend_beta(tau: float, positions: Sequence[float], counts: Sequence[float]) -> float | None:
    """The slope beta of y = beta * position + N(0, 1) whose expected tau-b is ``tau``; None beyond the largest
    tau-b the positions allow."""
    from scipy import optimize

    x, m = np.asarray(positions, dtype=float), np.asarray(counts, dtype=float)
    denominator = _trend_denominator(m)
    if tau == 0:
        return 0.0
    if abs(tau) >= _trend_s_mean(1e6, x, m) / denominator:
        return None
    return math.copysign(optimize.brentq(lambda b: _trend_s_mean(b, x, m) / denominator - abs(tau), 0.0, 1e6,
                                         xtol=1e-10), tau)


CHI_NODES = 400  # points of each chi-square distribution the t-test powers integrate over (midpoints in probability)


def _chi_scale(dof: float, nodes: int = CHI_NODES) -> np.ndarray:
    """s / sigma at ``nodes`` equally likely points of its distribution (dof s^2 / sigma^2 ~ chi2(dof))."""
    return np.sqrt(special.chdtri(dof, 1 - (np.arange(nodes) + 0.5) / nodes) / dof)


def t_power(effect: float, se: float, dof: float, alpha: float = ALPHA, size: float | None = None) -> float | None:
    """P(a t-test part is reproduced) at a true ``effect`` (the claimed direction positive): the estimate beyond
    t se-hat and, with ``size``, its interval reaching ``size``; the estimated se integrated out."""
    from scipy import stats  # its import takes a second: only where a test needs it

    if se <= 0 or dof < 1:
        return None
    t_crit = t_quantile(1 - alpha / 2, dof)
    if size is None:  # exactly the noncentral t
        return float(stats.nct.sf(t_crit, dof, effect / se))
    se_hat = se * _chi_scale(dof)
    threshold = np.maximum(t_crit * se_hat, size - t_crit * se_hat)
    return float(np.mean(special.ndtr((effect - threshold) / se)))


def tost_power(true_difference: float, margin: float, se: float, dof: float, alpha: float = ALPHA) -> float | None:
    """P(both one-sided t-tests reject at alpha), i.e. the (1 - 2 alpha) interval inside (-margin, margin).

    Exact for a t statistic: given the estimated se (se * u, dof * u^2 ~ chi2(dof)), the
    estimate must fall in (-margin + t se u, margin - t se u); averaged over equally likely
    points of u's distribution (a quadrature over x would miss chi2's narrow peak at large dof).
    """
    if se <= 0 or dof < 1 or margin <= 0:
        return None
    t_crit = t_quantile(1 - alpha, dof)
    half = margin - t_crit * se * _chi_scale(dof)
    band = special.ndtr((half - true_difference) / se) - special.ndtr((-half - true_difference) / se)
    return float(np.mean(np.where(half > 0, band, 0.0)))


WELCH_NODES = 160  # points of each group's variance estimate (160 x 160 in all)


def welch_power(effect: float, var_a: float, n_a: float, var_b: float, n_b: float, alpha: float = ALPHA,
                size: float | None = None, margin: float | None = None, one_sided: bool = False) -> float | None:
    """P(a Welch part is reproduced) at a true difference ``effect`` (the claimed direction positive), both groups'
    variance estimates integrated out: at each point of the grid, Welch's se and dof from the estimates, and the
    normal estimate's chance to land where the verdict is ``reproduced`` (beyond t se-hat and reaching ``size``; with
    ``margin``, inside the TOST band, or above -margin + t se-hat for a non-inferiority)."""
    if n_a < 2 or n_b < 2 or var_a + var_b <= 0:
        return None
    va = (var_a / n_a * _chi_scale(n_a - 1, WELCH_NODES) ** 2)[:, None]
    vb = (var_b / n_b * _chi_scale(n_b - 1, WELCH_NODES) ** 2)[None, :]
    se_hat = np.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    se = math.sqrt(var_a / n_a + var_b / n_b)
    if margin is None:
        t_crit = special.stdtrit(dof, 1 - alpha / 2)
        low = t_crit * se_hat if size is None else np.maximum(t_crit * se_hat, size - t_crit * se_hat)
        return float(np.mean(special.ndtr((effect - low) / se)))
    t_crit = special.stdtrit(dof, 1 - alpha)
    low = -margin + t_crit * se_hat
    if one_sided:
        return float(np.mean(special.ndtr((effect - low) / se)))
    high = margin - t_crit * se_hat
    band = special.ndtr((high - effect) / se) - special.ndtr((low - effect) / se)
    return float(np.mean(np.where(high > low, band, 0.0)))


def welch_se_dof(var_a: float, n_a: float, var_b: float, n_b: float) -> tuple[float, float]:
    """Welch's standard error of mean(a) - mean(b) and its Welch-Satterthwaite degrees of freedom."""
    va, vb = var_a / n_a, var_b / n_b
    dof = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1)) if va + vb > 0 else 1.0
    return math.sqrt(va + vb), dof


@dataclass(frozen=True)
class PowerModel:
    """How one part's test behaves at any n: ``power(n)`` at the effect, and the smallest n it is defined at."""

    power: Callable[[float], float | None]
    min_n: int

    def n_for(self, target: float = TARGET_POWER) -> int | None:
        """The smallest n with power >= ``target``; None when even MAX_N runs do not reach it."""
        def reaches(n: int) -> bool:
            p = self.power(n)
            return p is not None and p >= target

        low, high = self.min_n - 1, self.min_n  # power below target (or undefined) at low, searched up to high
        while not reaches(high):
            if high >= MAX_N:
                return None
            low, high = high, min(2 * high, MAX_N)
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (low, mid) if reaches(mid) else (mid, high)
        return high


def pearson_model(rho: float, alpha: float = ALPHA, size: float | None = None) -> PowerModel:
    return PowerModel(lambda n: pearson_power(rho, n, alpha, size), 4)


def kendall_model(tau: float, n_now: int, x_ties: Sequence[int] = (), alpha: float = ALPHA,
                  size: float | None = None) -> PowerModel:
    """``x_ties``: the sizes of the tied groups of x at ``n_now`` (a trend's positions); they grow with n."""
    return PowerModel(lambda n: kendall_power(tau, n, [t * n / n_now for t in x_ties], alpha, size), 5)


def trend_model(tau: float, positions: Sequence[float], counts: Sequence[int], alpha: float = ALPHA,
                size: float | None = None) -> PowerModel:
    """A trend along ``positions`` with ``counts`` runs at each today; the counts grow in proportion with n."""
    n_now = sum(counts)
    return PowerModel(lambda n: trend_power(tau, positions, [c * n / n_now for c in counts], alpha, size), 5)


def noninferiority_power(true_difference: float, margin: float, se: float, dof: float,
                         alpha: float = ALPHA) -> float | None:
    """P(the one-sided t-test of a - b > -margin rejects at alpha): the noncentral t at (difference + margin) / se."""
    from scipy import stats

    if se <= 0 or dof < 1 or margin <= 0:
        return None
    return float(stats.nct.sf(t_quantile(1 - alpha, dof), dof, (true_difference + margin) / se))


def one_sample_model(effect: float, sd: float, alpha: float = ALPHA, margin: float | None = None,
                     one_sided: bool = False, size: float | None = None) -> PowerModel:
    """A paired or one-sample t (n pairs or values, spread ``sd``); with ``margin``, its TOST at ``effect``
    (``one_sided``: its non-inferiority test)."""
    if margin is not None:
        test = noninferiority_power if one_sided else tost_power
        return PowerModel(lambda n: test(effect, margin, sd / math.sqrt(n), n - 1, alpha), 3)
    return PowerModel(lambda n: t_power(effect, sd / math.sqrt(n), n - 1, alpha, size), 3)


def welch_model(effect: float, var_a: float, n_a: int, var_b: float, n_b: int, alpha: float = ALPHA,
                margin: float | None = None, one_sided: bool = False, size: float | None = None) -> PowerModel:
    """Welch's t (n: the runs of both groups, in today's proportions); with ``margin``, its TOST at ``effect``
    (``one_sided``: its non-inferiority test)."""
    share = n_a / (n_a + n_b)

    def power(n: float) -> float | None:
        a, b = n * share, n * (1 - share)
        if a < 3 or b < 3:
            return None
        return welch_power(effect, var_a, a, var_b, b, alpha, size, margin, one_sided)

    return PowerModel(power, math.ceil(3 / min(share, 1 - share)))


def gate_power(change: float, sd_base: float, n_base: int, sd_new: float, n_new: int, tolerance: float,
               paired: bool, alpha: float = ALPHA) -> float | None:
    """P(``compare`` calls a true change of ``change`` (> 0, in the metric's bad direction) regressed): the t-test
    significant at alpha (two-sided) and the estimate beyond the tolerance. Each seed's value has SD ``sd_base`` and
    ``sd_new``; a change that moves training decorrelates the two sides' runs of a seed, so a paired difference
    has variance sd_base^2 + sd_new^2 (the conservative case: seeds that stay correlated make it smaller). Paired
    (the same n seeds on both sides): the noncentral t with the threshold max(t se-hat, tolerance) and the
    estimated se integrated out; Welch: the same at the Welch-Satterthwaite dof of the true variances."""
    if paired:
        if n_base < 2 or n_base != n_new:
            return None
        se, dof = math.sqrt((sd_base ** 2 + sd_new ** 2) / n_base), n_base - 1
    else:
        if n_base < 2 or n_new < 2:
            return None
        se, dof = welch_se_dof(sd_base ** 2, n_base, sd_new ** 2, n_new)
    if se <= 0:  # no spread: compare counts any change as deterministic
        return 1.0 if change > tolerance else 0.0
    threshold = np.maximum(_t_chi(dof, alpha) * se, tolerance)
    return float(np.mean(special.ndtr((change - threshold) / se)))


@functools.lru_cache(maxsize=256)
def _t_chi(dof: float, alpha: float) -> np.ndarray:
    """The two-sided critical t times s / sigma at CHI_NODES equally likely points (what a t-test's threshold is,
    in units of the true se)."""
    return t_quantile(1 - alpha / 2, dof) * _chi_scale(dof)


def detectable_change(sd_base: float, n_base: int, sd_new: float, n_new: int, tolerance: float, paired: bool,
                      target: float = TARGET_POWER) -> float | None:
    """The smallest change ``compare`` calls regressed with probability ``target`` (``gate_power``); None where the
    test is undefined (one seed on a side)."""
    def power(change: float) -> float | None:
        return gate_power(change, sd_base, n_base, sd_new, n_new, tolerance, paired)

    if power(tolerance) is None:
        return None
    low, high = tolerance, tolerance + max(sd_base, sd_new, 1e-12)
    while power(high) < target:
        low, high = high, 2 * high
    while high - low > 1e-4 * high:
        mid = (low + high) / 2
        low, high = (low, mid) if power(mid) >= target else (mid, high)
    return high
