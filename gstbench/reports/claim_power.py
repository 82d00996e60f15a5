"""A whole claim's power: the chance that every part comes out reproduced, parts that share runs simulated together.

A claim is reproduced only when every part is, so its power is that of the intersection,
not of any one part. Parts computed from different runs (different values of ``within``,
different tests) are taken as independent: the claim's power is the product of its
blocks'. Within one block the parts share runs, and their outcomes move together:

- a ``correlation`` test with both statistics: Pearson's r and Kendall's tau of the same
  runs, planted as a bivariate normal at the tested r (the tau tested is Greiner's);
- an ``order`` test: each adjacent difference shares a group with the next; paired over
  seeds, the per-seed differences are planted as a multivariate normal with the covariance
  the runs measured; by Welch, each group as a normal with its measured variance.

A block of one part uses that part's closed-form model (power.py). A block of several is
simulated: SIMULATIONS planted data sets, each judged by the parts' own rules
(claim_stats.Part.verdict: significance, the interval's side of zero, and reaching the
paper's number where the claim states one), from a fixed seed so the same runs give the
same figure. The t-test blocks draw the sufficient statistics (means, and the sample
covariance by Bartlett's decomposition of the Wishart), so any n costs the same; the
correlation block draws the runs up to DIRECT_RUNS and beyond that joins the parts' exact
marginal powers by a normal copula whose correlation is simulated at DIRECT_RUNS
(atanh r and atanh tau are jointly normal as n grows).

The claim's n for 80% grows every block in proportion and is counted in the unit of the
part that decides the claim's row.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import special

from gstbench.reports import ALPHA
from gstbench.reports import power as pw
from gstbench.reports.claim_stats import Part, power_model

SIMULATIONS = 4000  # the simulated power's standard error is at most 0.8 points
DIRECT_RUNS = 60  # correlation blocks: runs simulated one by one up to here, a normal copula beyond
SEED = 20261206


@dataclass(eq=False)
class Block:
    """Parts of one test at one value of ``within``: computed from the same runs, so not independent."""

    kind: str  # "correlation", "paired-order", "welch-order", or "single" (a part alone)
    parts: list[Part] = field(default_factory=list)
    cov: np.ndarray | None = None  # paired-order: the covariance of the adjacent differences over seeds
    variances: tuple[float, ...] = ()  # welch-order: each group's variance, in the order of the claim
    sizes: tuple[int, ...] = ()  # welch-order: each group's runs

    def n(self) -> int:
        return self.parts[0].n


def claim_power(parts: list[Part], unit: Part) -> tuple[float | None, int | None, str]:
    """(power, n for 80%, why there is none) of the whole claim, with ``unit``'s n as the claim's n."""
    if any(p.tested is None for p in parts):
        return None, None, "no effect declared for every part"
    if any(p.effect is None or power_model(p) is None for p in parts):
        return None, None, "a part has no test, so the claim has no power"
    blocks = {id(p.block or p): p.block or Block("single", [p]) for p in parts}.values()
    factors = [_block_power(b) for b in blocks]
    n_unit = unit.n

    def power(n: float) -> float | None:
        total = 1.0
        for f in factors:
            v = f(n / n_unit)
            if v is None:
                return None
            total *= v
        return total

    now = power(n_unit)
    if now is None:
        return None, None, f"n = {n_unit}: too few for a part's power model"
    needed = pw.PowerModel(power, 3).n_for()
    return now, needed, "" if needed is not None else f"80% needs more than {pw.MAX_N:,} runs"


def _block_power(block: Block) -> Callable[[float], float | None]:
    """The block's power at its n times a factor: a part alone by its closed form, several by simulation."""
    if len(block.parts) == 1:
        model, n = power_model(block.parts[0]), block.n()
        return lambda factor: model.power(n * factor)
    simulate = {"correlation": _correlation_block, "paired-order": _paired_block, "welch-order": _welch_block}[
        block.kind]
    return functools.lru_cache(maxsize=None)(lambda factor: simulate(block, factor))


def _size(part: Part) -> float | None:
    """The size a reproduced part must reach (the paper's number, in the claimed direction), else None."""
    return (1 if part.sign >= 0 else -1) * part.tested.value if part.sized() else None


# ---- correlation: Pearson and Kendall of the same runs ------------------------------------------
def _correlation_block(block: Block, factor: float) -> float | None:
    n = int(round(block.n() * factor))
    if n <= 4:
        return None
    if n <= DIRECT_RUNS:
        return float(np.mean(np.all(_correlation_draws(block, n), axis=0)))
    marginals = [power_model(p).power(n) for p in block.parts]
    if any(m is None for m in marginals):
        return None
    if len(marginals) != 2:
        return float(np.prod(marginals))
    rho = _estimator_correlation(block)
    edge = 1 - 1e-12
    h, k = (float(special.ndtri(min(max(m, 1e-12), edge))) for m in marginals)
    return float(pw.bivariate_normal_cdf(np.array(h), np.array(k), rho))


def _planted_r(block: Block) -> float:
    pearson = next((p for p in block.parts if p.family == "pearson"), None)
    if pearson is not None:
        return pearson.tested.value
    tau = block.parts[0].tested.value
    return math.sin(math.pi / 2 * tau)  # Greiner's relation, inverted


def _draw_pairs(rho: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """SIMULATIONS planted data sets of n runs from a bivariate normal at ``rho`` (the fixed seed)."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((SIMULATIONS, n))
    y = rho * x + math.sqrt(1 - rho * rho) * rng.standard_normal((SIMULATIONS, n))
    return x, y


def _pearson_r(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    return np.clip(np.sum(xc * yc, 1) / np.sqrt(np.sum(xc * xc, 1) * np.sum(yc * yc, 1)), -1, 1)


def _kendall_tau(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau of each row (no ties: continuous draws)."""
    n = x.shape[1]
    out = np.empty(x.shape[0])
    for start in range(0, x.shape[0], 500):
        xs, ys = x[start:start + 500], y[start:start + 500]
        s = np.sign(xs[:, None, :] - xs[:, :, None]) * np.sign(ys[:, None, :] - ys[:, :, None])
        out[start:start + 500] = np.sum(np.triu(s, 1), axis=(1, 2))
    return out / (n * (n - 1) / 2)


def _correlation_draws(block: Block, n: int) -> np.ndarray:
    """(parts, simulations): whether each part is reproduced on each planted data set."""
    x, y = _draw_pairs(_planted_r(block), n)
    out = []
    for part in block.parts:
        s = 1 if part.sign >= 0 else -1
        if part.family == "pearson":
            r = s * _pearson_r(x, y)
            out.append(np.arctanh(np.clip(r, -1 + 1e-15, 1 - 1e-15)) > pw.pearson_threshold(n, ALPHA, _size(part)))
        else:
            tau = s * _kendall_tau(x, y)
            out.append(tau > kendall_reproduce_threshold(n, _size(part)))
    return np.array(out)


def kendall_reproduce_threshold(n: int, size: float | None = None) -> float:
    """The tau above which an untied Kendall part is reproduced, with scipy's exact test below 34 runs."""
    exact = _kendall_exact_critical(n, ALPHA) if n <= 33 else None
    threshold = pw.kendall_threshold(n, (), ALPHA, size, critical=exact)
    return 1.0 if threshold is None else threshold


@functools.lru_cache(maxsize=None)
def _kendall_exact_critical(n: int, alpha: float) -> float:
    """The largest tau that scipy's exact two-sided test does not call significant at ``alpha`` (n <= 33, no ties)."""
    from scipy import stats

    total = n * (n - 1) // 2

    def p_at(inversions: int) -> float:
        return float(stats.kendalltau(np.arange(n), _with_inversions(n, inversions)).pvalue)

    low, high = 0, total // 2  # p(low) < alpha (all concordant); p(high) >= alpha (tau near 0)
    if p_at(low) >= alpha:
        return 1.0
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if p_at(mid) < alpha else (low, mid)
    return 1 - 2 * high / total  # tau at the first count of inversions that is not significant


def _with_inversions(n: int, inversions: int) -> np.ndarray:
    """A permutation of 0..n-1 with exactly ``inversions`` inverted pairs (a Lehmer code, filled greedily)."""
    remaining, code = inversions, []
    for i in range(n):
        c = min(remaining, n - 1 - i)
        code.append(c)
        remaining -= c
    pool, out = list(range(n)), []
    for c in code:
        out.append(pool.pop(c))
    return np.array(out)


@functools.lru_cache(maxsize=64)
def _copula_rho(rho: float) -> float:
    """The correlation of atanh r and atanh tau over runs of a bivariate normal at ``rho``, simulated at DIRECT_RUNS."""
    x, y = _draw_pairs(rho, DIRECT_RUNS)
    r, tau = _pearson_r(x, y), _kendall_tau(x, y)
    return float(np.corrcoef(np.arctanh(np.clip(r, -0.999999, 0.999999)), np.arctanh(np.clip(tau, -0.999999, 0.999999)))[0, 1])


def _estimator_correlation(block: Block) -> float:
    return _copula_rho(round(_planted_r(block), 6))


# ---- order: adjacent differences sharing a group -------------------------------------------------
def _wishart_bartlett(cov: np.ndarray, dof: float, rng: np.random.Generator) -> np.ndarray:
    """SIMULATIONS sample covariances (dof * S ~ Wishart(dof, cov)), by Bartlett's decomposition."""
    k = cov.shape[0]
    chol = np.linalg.cholesky(cov + 1e-12 * np.trace(cov) * np.eye(k))
    a = np.zeros((SIMULATIONS, k, k))
    for i in range(k):
        a[:, i, i] = np.sqrt(rng.chisquare(dof - i, SIMULATIONS))
        a[:, i, :i] = rng.standard_normal((SIMULATIONS, i))
    la = chol[None] @ a
    return la @ np.transpose(la, (0, 2, 1)) / dof


def _reproduced_t(part: Part, estimate: np.ndarray, se: np.ndarray, dof: np.ndarray | float) -> np.ndarray:
    """Whether a t-test part is reproduced: beyond t se-hat in the claimed direction, reaching the paper's size."""
    s = 1 if part.sign >= 0 else -1
    size = _size(part)
    t_crit = special.stdtrit(dof, 1 - ALPHA / 2)
    low = t_crit * se if size is None else np.maximum(t_crit * se, size - t_crit * se)
    return s * estimate > low


def _paired_block(block: Block, factor: float) -> float | None:
    n = block.n() * factor
    k = len(block.parts)
    if n < 3 or block.cov is None or n - 1 < k:
        return None
    rng = np.random.default_rng(SEED)
    mean = np.array([p.tested.value for p in block.parts])  # the effects tested, signed as the effects
    chol = np.linalg.cholesky(block.cov / n + 1e-12 * np.trace(block.cov) * np.eye(k))
    estimates = mean[None] + rng.standard_normal((SIMULATIONS, k)) @ chol.T
    spreads = _wishart_bartlett(block.cov, n - 1, rng)
    ok = np.ones(SIMULATIONS, dtype=bool)
    for j, part in enumerate(block.parts):
        se = np.sqrt(np.maximum(spreads[:, j, j], 0) / n)
        ok &= _reproduced_t(part, estimates[:, j], se, n - 1)
    return float(np.mean(ok))


def _welch_block(block: Block, factor: float) -> float | None:
    sizes = np.array(block.sizes, dtype=float) * factor
    if np.any(sizes < 2):
        return None
    rng = np.random.default_rng(SEED)
    variances = np.array(block.variances)
    # group means rising along the claim by each adjacent difference tested
    steps = np.array([p.tested.value for p in block.parts])
    means = np.concatenate([[0.0], np.cumsum(steps)])
    drawn_means = means[None] + rng.standard_normal((SIMULATIONS, means.size)) * np.sqrt(variances / sizes)[None]
    drawn_vars = variances[None] * rng.chisquare(sizes - 1, (SIMULATIONS, means.size)) / (sizes - 1)[None]
    ok = np.ones(SIMULATIONS, dtype=bool)
    for j, part in enumerate(block.parts):  # part j: group j + 1 - group j
        va, vb = drawn_vars[:, j + 1] / sizes[j + 1], drawn_vars[:, j] / sizes[j]
        se = np.sqrt(va + vb)
        dof = (va + vb) ** 2 / np.maximum(va ** 2 / (sizes[j + 1] - 1) + vb ** 2 / (sizes[j] - 1), 1e-300)
        ok &= _reproduced_t(part, drawn_means[:, j + 1] - drawn_means[:, j], se, dof)
    return float(np.mean(ok))
