"""The non-inferiority claim test (a - b > -margin, one side of an equivalence): its p against scipy's one-sided
t-test, its verdicts, and its power against a simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gstbench.reports.claim_stats import attach_power, paired_part
from gstbench.reports.power import noninferiority_power

A = [0.91, 0.88, 0.90, 0.93, 0.89, 0.92]


def _part(shift: float, margin: float = 0.01):
    b = [x - shift + 0.004 * (-1) ** i for i, x in enumerate(A)]
    part = paired_part("a - b", A, b, 1, "final_test_acc")
    part.as_noninferiority(margin)
    return part, np.array(A) - np.array(b)


def test_p_is_scipys_one_sided_t_test_of_the_difference_above_minus_margin():
    part, d = _part(-0.005)
    reference = stats.ttest_1samp(d + 0.01, 0.0, alternative="greater").pvalue
    assert part.p == pytest.approx(reference, rel=1e-10)
    assert part.one_sided and part.as_json()["one_sided"]


@pytest.mark.parametrize("shift, verdict", [(0.0, "reproduced"), (0.03, "reproduced"), (-0.03, "contradicted"),
                                            (-0.009, "inconclusive")])
def test_verdicts_read_the_90_percent_interval_against_minus_margin(shift, verdict):
    part, _ = _part(shift)
    assert part.verdict() == verdict  # far better than b is still not inferior: only the lower side is claimed


def test_power_matches_a_simulation_of_the_one_sided_test():
    rng = np.random.default_rng(0)
    n, sd, true, margin = 8, 0.02, 0.0, 0.015
    sims = rng.normal(true, sd, size=(20000, n))
    t = (sims.mean(1) + margin) / (sims.std(1, ddof=1) / np.sqrt(n))
    simulated = float((t > stats.t.ppf(0.95, n - 1)).mean())
    assert noninferiority_power(true, margin, sd / np.sqrt(n), n - 1) == pytest.approx(simulated, abs=0.01)
    part, _ = _part(0.0)
    attach_power(part, {"value": 0.0, "kind": "interest", "reason": "equal"})
    assert 0 < part.power < 1 and part.n_for_power is not None
