"""The verdict scale on planted data: size told from direction, one level per row, the whole claim's power against a
simulation of the whole claim, "not run" for a group without runs, and a small fixed-seed budget of the calibration."""

from __future__ import annotations

import numpy as np
import pytest

from gstbench.plan.claims import parse_claims
from gstbench.reports.calibration import calibrate, correlation_design, designs
from gstbench.reports.claim_stats import ABSENT, NOT_RUN, REPRODUCED, WEAKER
from gstbench.reports.claims import Run, evaluate_claims, render_claims

PAPER_R = {"paper_effect": -0.43, "effect_reason": "ResNet18 (Fig. 2)"}


def tradeoff(statistics: list[str]) -> dict:
    return parse_claims([{"id": "gst-tradeoff", "statement": "s", **PAPER_R,
                          "test": {"kind": "correlation", "x": "stability", "y": "best_test_acc", "sign": "negative",
                                   "statistic": statistics, "runs": "all"}}], "planted.toml")[0]


def runs_at(r: float, n: int, seed: int = 0) -> list[Run]:
    """n runs whose sample correlation is exactly ``r``."""
    x = np.random.default_rng(seed).standard_normal(n)
    x = (x - x.mean()) / x.std()
    z = np.random.default_rng(seed + 1).standard_normal(n)
    z -= z.mean()
    z -= (z @ x) / (x @ x) * x
    z /= z.std()
    y = r * x + np.sqrt(1 - r * r) * z
    return [Run({"g": "x"}, i, {"stability": a, "best_test_acc": b}) for i, (a, b) in enumerate(zip(x, y))]


def test_more_runs_never_turn_an_effect_weaker_than_the_papers_into_reproduced():
    """r = -0.15 exactly against the paper's -0.43: at 100 runs no effect of the paper's size, at 400 the direction
    holds but the effect is weaker; never reproduced, since both intervals exclude -0.43."""
    few = evaluate_claims([tradeoff(["pearson"])], {}, runs_at(-0.15, 100), {})[0]
    many = evaluate_claims([tradeoff(["pearson"])], {}, runs_at(-0.15, 400), {})[0]
    assert (few["verdict"], few["verdict_label"]) == (ABSENT, "no effect of the paper's size")
    assert few["low"] > -0.43 and few["high"] > 0 and few["p"] > 0.05
    assert (many["verdict"], many["verdict_label"]) == (WEAKER, "weaker than the paper's effect")
    assert -0.43 < many["low"] < many["high"] < 0 and many["p"] < 0.05
    at_paper = evaluate_claims([tradeoff(["pearson"])], {}, runs_at(-0.43, 400), {})[0]
    assert at_paper["verdict"] == REPRODUCED and at_paper["low"] < -0.43 < at_paper["high"]


def test_a_two_part_claim_shows_the_interval_and_verdict_at_the_level_it_decided():
    """r = +0.33 at 42 runs against a negative claim: each part contradicts at 0.05 but not at 0.025, so the claim
    does not contradict, and its row says what the 97.5% interval shows: no effect of the paper's size, with no
    direction named."""
    c = evaluate_claims([tradeoff(["pearson", "kendall"])], {}, runs_at(0.33, 42), {})[0]
    assert [p["verdict"] for p in c["parts"]] == ["contradicted", "contradicted"]
    assert all(0.025 < p["p"] < 0.05 for p in c["parts"])
    assert c["verdict"] == ABSENT and c["level"] == pytest.approx(0.975)
    assert c["low"] < 0 < c["high"]  # the row's interval holds 0: no direction, and none is named
    pearson = c["parts"][0]
    assert pearson["low"] > 0 and c["low"] < pearson["low"]  # the part's own row at 95%, the claim's at 97.5%
    text = "\n".join(render_claims([c]))
    assert "NO EFFECT OF THE PAPER'S SIZE" in text and "97.5%" in text and "WEAKER" not in text


def test_a_direction_only_claim_names_its_effect_of_interest_not_the_papers():
    claim = parse_claims([{"id": "c", "statement": "s", "effect_of_interest": -0.3, "effect_reason": "Cohen",
                           "test": {"kind": "correlation", "x": "stability", "y": "best_test_acc",
                                    "sign": "negative", "runs": "all"}}], "planted.toml")[0]
    c = evaluate_claims([claim], {}, runs_at(0.0, 300), {})[0]
    assert c["verdict"] == ABSENT and c["verdict_label"] == "no effect of the size of interest"
    weak = evaluate_claims([claim], {}, runs_at(-0.15, 400), {})[0]
    assert weak["verdict"] == REPRODUCED  # the paper claimed a direction, and it held
    assert "paper's" not in "\n".join(render_claims([c])).split("claims:")[1].split("\n")[3]


def test_a_group_without_finished_runs_is_not_run_and_says_which():
    claim = parse_claims([{"id": "c", "statement": "s", "effect_of_interest": 0.01, "effect_reason": "1 point",
                           "test": {"kind": "difference", "metric": "m", "a": "a", "b": "b", "sign": "positive"}}],
                         "planted.toml")[0]
    runs = [Run({"group": "b"}, s, {"m": 0.5}) for s in range(5)]
    groups = {"a": {"group": ["a"]}, "b": {"group": ["b"]}}
    c = evaluate_claims([claim], groups, runs, {})[0]
    assert c["verdict"] == NOT_RUN and c["p"] is None and c["effect"] is None
    assert c["missing"] == "group 'a' has no finished run" and c["power"] is None
    assert "NOT RUN" in "\n".join(render_claims([c]))


@pytest.mark.parametrize("name", ["pearson + kendall", "order of 3, paired", "order of 3, welch",
                                  "paired within 3 levels"])
def test_a_claims_power_is_within_3_points_of_a_simulation_of_the_whole_claim(name):
    """The parts share runs (Pearson and Kendall of the same runs; adjacent differences sharing a group): the claim's
    power is the chance that every part reproduces, simulated through the real pipeline on planted data."""
    design = next(d for d in designs() if d.name.startswith(name))
    result = calibrate(design, simulations=1500, seed=7, truths=(1.0,))
    assert result.parts > 1
    rate = result.frequencies[1.0][REPRODUCED]
    assert rate == pytest.approx(result.power, abs=0.03 + result.error(result.power)), (rate, result.power)


def test_the_joint_power_is_below_each_parts_and_matches_the_issue():
    c = evaluate_claims([tradeoff(["pearson", "kendall"])], {}, runs_at(-0.43, 42), {})[0]
    assert c["power_of"] == "claim"
    assert c["power"] < min(p["power"] for p in c["parts"])
    assert c["power"] == pytest.approx(0.753, abs=0.02)  # both parts at n = 42 (each alone: 0.83 and 0.77)
    assert c["n_for_power"] > max(p["n_for_power"] for p in c["parts"]) - 1


def test_the_calibration_small_budget_meets_every_goal():
    """A fixed-seed slice of benchmarks/verdict_calibration.py: every design, every truth, 120 data sets each."""
    missed = []
    for design in designs():
        result = calibrate(design, simulations=120, seed=3)
        missed += [f"{design.name}: {goal}" for goal, ok in result.goals().items() if not ok]
    assert not missed, missed


def test_the_calibration_detects_a_miscalibrated_rule(monkeypatch):
    """The goals can fail: a direction-only Pearson claim judged at 0.2 instead of 0.05 reproduces far too often
    under no effect."""
    from gstbench.reports import claim_stats

    design = correlation_design("pearson at 0.2", ["pearson"], -0.3, 42, paper=False)
    monkeypatch.setattr(claim_stats.Part.verdict, "__defaults__", (0.2,))
    result = calibrate(design, simulations=300, seed=1, truths=(0.0, 1.0))
    assert result.frequencies[0.0][REPRODUCED] > 0.05
    assert not result.goals()["reproduced at 0 <= alpha"]


def test_the_calibration_benchmark_runs_as_documented():
    """`python benchmarks/verdict_calibration.py`, at a tiny budget: every design, a table, exit 0 when goals hold."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "verdict_calibration.py"
    proc = subprocess.run([sys.executable, str(script), "--simulations", "30", "--seed", "2", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == len(designs()) and all(set(r["frequencies"]) == {"0.0", "0.5", "1.0", "2.0", "-1.0"}
                                               for r in rows)
