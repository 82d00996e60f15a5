"""The gate's power and its smallest detectable change, checked by planting changes and counting how often compare
calls them regressed."""

from __future__ import annotations

import numpy as np
import pytest

from gstbench.reports.compare import compare
from gstbench.reports.power import detectable_change, gate_power

DRAWS = 2000


def planted(rng, n_base: int, n_new: int, sd: float, change: float, paired: bool) -> tuple[dict, dict]:
    """Two exports of DRAWS configurations each: every seed's accuracy drawn independently on each side (a change
    that moves training decorrelates a seed's runs), NEW's lower by ``change``."""
    def export(n: int, shift: float, first_seed: int) -> dict:
        configs = [{"key": f"{i:016x}", "label": {"scorer": f"s{i}"},
                    "runs": [{"seed": first_seed + s, "status": "ok",
                              "metrics": {"best_test_acc": float(0.6 + shift + sd * rng.standard_normal())}}
                             for s in range(n)]} for i in range(DRAWS)]
        return {"suite": {"rank": "best_test_acc"}, "configurations": configs, "claims": []}
    return export(n_base, 0.0, 0), export(n_new, -change, 0 if paired else 100)


def regressed_share(base: dict, new: dict) -> float:
    result = compare(base, new, metrics=["best_test_acc"])
    return np.mean([r["verdict"] == "regressed" for r in result["rows"]])


@pytest.mark.parametrize("n_base,n_new,sd,change,paired", [
    (3, 3, 0.02, 0.03, True), (8, 8, 0.01, 0.008, True), (4, 4, 0.001, 0.006, True), (3, 5, 0.02, 0.04, False)])
def test_the_gate_power_matches_a_simulation_of_compare(n_base, n_new, sd, change, paired):
    rng = np.random.default_rng(n_base * 100 + n_new)
    simulated = regressed_share(*planted(rng, n_base, n_new, sd, change, paired))
    predicted = gate_power(change, sd, n_base, sd, n_new, 0.005, paired)
    # 2000 draws: a binomial SE of at most 0.011; Welch's dof is taken at the true variances (within 0.03)
    assert simulated == pytest.approx(predicted, abs=0.03 if paired else 0.04)


@pytest.mark.parametrize("n,sd", [(3, 0.02), (10, 0.03), (6, 0.0005)])
def test_the_smallest_detectable_change_is_caught_four_times_in_five(n, sd):
    change = detectable_change(sd, n, sd, n, 0.005, paired=True)
    assert change >= 0.005
    rng = np.random.default_rng(n)
    assert regressed_share(*planted(rng, n, n, sd, change, True)) == pytest.approx(0.8, abs=0.03)
    smaller = regressed_share(*planted(rng, n, n, sd, 0.7 * change, True))
    assert smaller < 0.8 - 0.05 or change == pytest.approx(0.005, rel=0.05)


def test_compare_states_per_metric_what_its_seeds_can_see():
    rng = np.random.default_rng(7)
    base, new = planted(rng, 3, 3, 0.02, 0.0, True)
    base["configurations"], new["configurations"] = base["configurations"][:3], new["configurations"][:3]
    result = compare(base, new, metrics=["best_test_acc"])
    rows = [r["detectable"] for r in result["rows"]]
    assert result["detectable"]["best_test_acc"] == max(rows) and min(rows) > 0.005
    from gstbench.reports.compare import render_comparison
    assert f"cannot see changes under {max(rows):.4g}" in render_comparison(result)
