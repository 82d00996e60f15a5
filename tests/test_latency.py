"""The latency metric through the CLI: stated settings, a speed-up leaderboards rank by and claims can test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli

TINY = Path(__file__).parent / "data" / "tiny.toml"
CLAIM = """
[groups]
small = { "prune.target" = "smallest" }
large = { "prune.target" = "largest" }

[[claims]]
id = "faster"
statement = "removing the smallest filters speeds inference up as much as removing the largest"
test = { kind = "order", metric = "latency_large_speedup", groups = ["small", "large"], sign = "positive" }
"""


@pytest.fixture(scope="module")
def timed(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency")
    suite = root / "tiny_latency.toml"
    suite.write_text(TINY.read_text() + CLAIM)
    proc = run_cli("run", "--suite", str(suite), "--seeds", "1", "--metric", "latency", "--out", str(root / "run"),
                   "--json")
    assert proc.returncode == 0, proc.stderr
    return root / "run"


def test_latency_times_the_slim_network_against_its_parent_and_says_how(timed):
    results = [json.loads(p.read_text()) for p in timed.glob("cells/*/result.json")]
    assert len(results) == 3
    removed = []
    for result in results:
        m = result["metrics"]
        settings = m["latency_settings"]
        assert settings["threads"] == 1 and settings["device"] == "cpu" and settings["device_name"]
        assert settings["batches"] == {"batch1": 1, "large": 256}
        assert settings["warmup"] == 5 and settings["repeats"] == 25
        for label in ("batch1", "large"):
            assert m[f"latency_{label}_ms"] > 0 and m[f"latency_{label}_parent_ms"] > 0
            assert m[f"latency_{label}_speedup"] == pytest.approx(m[f"latency_{label}_parent_ms"] /
                                                                  m[f"latency_{label}_ms"])
            spread = m["latency_spread_ms"][label]
            assert 0 <= spread["pruned_iqr"] and 0 < spread["pruned_min"] <= m[f"latency_{label}_ms"]
        removed.append(settings["dead_filters_removed"])
    # the two pruned cells (half of conv2 and conv3: 8 + 8 filters) and the unpruned one
    assert sorted(removed) == [0, 16, 16]


def test_leaderboards_rank_by_latency_and_claims_test_it(timed):
    proc = run_cli("report", str(timed), "--sort", "latency_large_speedup", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["rows"]
    means = [row["latency_large_speedup"]["mean"] for row in rows]
    assert means == sorted(means, reverse=True) and len(means) == 3
    proc = run_cli("claims", str(timed), "--json")
    assert proc.returncode == 0, proc.stderr
    row, = [r for r in json.loads(proc.stdout)["rows"] if r["id"] == "faster"]
    measured = row["results"]["quick, seeds 0"]
    assert measured["metric"] == "latency_large_speedup" and measured["n"] == 1
    assert measured["parts"][0]["verdict"] == "inconclusive"  # one seed: too few to test, and it says so
