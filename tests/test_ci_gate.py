"""The `ci` suite's gate catches what it was chosen to catch: a sign-flipped scorer and a 5-point accuracy drop,
planted in its committed baseline, each make `gstbench compare` exit 1 naming the rows that regressed; the
baseline is the suite's current matrix and decides its claim."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from gstbench.plan.suite import load_suite
from gstbench.plugins import Registry

from conftest import run_cli

BASELINE = Path(__file__).parents[1] / "benchmarks" / "baselines" / "ci.json"


def _by_target(data: dict) -> dict[str, dict]:
    return {c["label"].get("target", "unpruned"): c for c in data["configurations"]}


def sign_flipped(data: dict) -> dict:
    """What a scorer whose sign flipped computes: `smallest` removes what `largest` removed and the other way round,
    seed for seed, so each seed's metrics trade places between the two configurations (docs/ci.md compares this
    with a real flipped run). The stored claims are left as they were: the metric rows alone must fail the gate."""
    out = copy.deepcopy(data)
    configs = _by_target(out)
    small, large = configs["smallest"]["runs"], configs["largest"]["runs"]
    assert [r["seed"] for r in small] == [r["seed"] for r in large]
    for a, b in zip(small, large):
        a["metrics"], b["metrics"] = b["metrics"], a["metrics"]
    return out


def accuracy_dropped(data: dict, by: float = 0.05) -> dict:
    out = copy.deepcopy(data)
    for config in out["configurations"]:
        for run in config["runs"]:
            for metric in ("best_test_acc", "final_test_acc"):
                run["metrics"][metric] -= by
    return out


def compare(tmp_path: Path, new: dict, *extra: str) -> tuple[int, dict]:
    path = tmp_path / "new.json"
    path.write_text(json.dumps(new))
    proc = run_cli("compare", str(BASELINE), str(path), "--format", "json", *extra)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_the_baseline_is_the_ci_suites_matrix_and_decides_its_claim():
    data = json.loads(BASELINE.read_text())
    suite = load_suite(Registry(), "ci", placeholders=True, build_models=False)
    assert sorted(r["hash"] for c in data["configurations"] for r in c["runs"]) == sorted(
        c.short_hash for c in suite.cells), "benchmarks/baselines/ci.json is stale: regenerate it (docs/ci.md)"
    assert all(r["status"] == "ok" for c in data["configurations"] for r in c["runs"])
    (claim,) = data["claims"]
    assert claim["id"] == "gst-targets" and claim["verdict"] not in ("inconclusive", "not run")


def test_a_sign_flipped_scorer_fails_the_gate_on_the_stability_it_lost(tmp_path):
    code, result = compare(tmp_path, sign_flipped(json.loads(BASELINE.read_text())))
    assert code == 1
    regressed = {(r["label"]["target"], r["metric"]) for r in result["rows"] if r["verdict"] == "regressed"}
    assert ("smallest", "stability") in regressed
    improved = {(r["label"]["target"], r["metric"]) for r in result["rows"] if r["verdict"] == "improved"}
    assert ("largest", "stability") in improved


def test_a_five_point_accuracy_drop_fails_the_gate_in_every_configuration(tmp_path):
    data = json.loads(BASELINE.read_text())
    code, result = compare(tmp_path, accuracy_dropped(data))
    assert code == 1
    regressed = {(r["label"].get("target", "unpruned"), r["metric"]) for r in result["rows"]
                 if r["verdict"] == "regressed"}
    assert regressed == {(target, "best_test_acc") for target in _by_target(data)}
    plain = run_cli("compare", str(BASELINE), str(tmp_path / "new.json"), "--format", "plain")
    assert plain.returncode == 1 and plain.stdout.count("regressed") >= len(_by_target(data))


def test_a_drop_within_the_tolerance_passes(tmp_path):
    data = json.loads(BASELINE.read_text())
    code, result = compare(tmp_path, accuracy_dropped(data, by=0.004))
    assert code == 0 and not result["regressed"]


def test_a_claim_not_run_on_either_side_is_unchanged_not_new():
    from gstbench.reports.compare import compare_claims

    (claim,) = json.loads(BASELINE.read_text())["claims"]
    not_run = {**claim, "verdict": "not run"}
    assert [r["change"] for r in compare_claims([not_run], [dict(not_run)])] == ["unchanged"]
    assert [r["change"] for r in compare_claims([claim], [not_run])] == ["missing"]
    assert [r["change"] for r in compare_claims([not_run], [claim])] == ["new"]
