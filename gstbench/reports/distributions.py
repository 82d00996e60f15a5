"""Student t and normal quantiles and tails from scipy.special: scipy.stats' values bit for bit, without its second of import.

``scipy.stats.t`` and ``scipy.stats.norm`` compute these with the same special functions
(``stdtr``, ``stdtrit``, ``ndtr``, ``ndtri``) inside the support; at its edges (q of 0 or 1,
an infinite x, dof <= 0, NaN) these hand over to scipy.stats itself. A report that shows
intervals needs nothing else, so `gstbench report` and `gstbench claims` load scipy.stats
only for a run whose claims or correlations need its tests. tests/test_stats.py checks the
equality.
"""

from __future__ import annotations

import math

from scipy import special


def _stats():
    from scipy import stats

    return stats


def t_quantile(q: float, dof: float) -> float:
    """``scipy.stats.t.ppf(q, dof)``."""
    return special.stdtrit(dof, q) if 0 < q < 1 and dof > 0 else _stats().t.ppf(q, dof)


def t_cdf(x: float, dof: float) -> float:
    """``scipy.stats.t.cdf(x, dof)``."""
    return special.stdtr(dof, x) if math.isfinite(x) and dof > 0 else _stats().t.cdf(x, dof)


def t_sf(x: float, dof: float) -> float:
    """``scipy.stats.t.sf(x, dof)``."""
    return special.stdtr(dof, -x) if math.isfinite(x) and dof > 0 else _stats().t.sf(x, dof)


def normal_quantile(q: float) -> float:
    """``scipy.stats.norm.ppf(q)``."""
    return special.ndtri(q) if 0 < q < 1 else _stats().norm.ppf(q)


def normal_cdf(x: float) -> float:
    """``scipy.stats.norm.cdf(x)``."""
    return special.ndtr(x) if math.isfinite(x) else _stats().norm.cdf(x)
