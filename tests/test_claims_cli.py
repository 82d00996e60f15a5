"""Claims through the CLI: run and report print verdicts, compare fails on a lost one, claims tabulates every directory."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import DATA, run_cli

FIELDS = {"id", "source", "statement", "paper", "verdict", "effect", "low", "high", "test", "p", "n", "parts",
          "effect_tested", "power", "n_for_power"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny suite with a declared claim, run on seeds 0-2 and on fresh seeds 100-102."""
    root = tmp_path_factory.mktemp("claims")
    suite = root / "tiny_claims.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace('name = "tiny"', 'name = "tinyclaims"') + "\n"
                     + (DATA / "tiny_claims.toml").read_text())
    first = run_cli("run", "--suite", str(suite), "--seeds", "3", "--out", str(root / "s0"))
    assert first.returncode == 0, first.stderr
    fresh = run_cli("run", "--suite", str(suite), "--seeds", "100-102", "--out", str(root / "s100"), "--json")
    assert fresh.returncode == 0, fresh.stderr
    return root, first.stdout, json.loads(fresh.stdout)


def test_run_prints_a_line_per_claim_report_the_claims_table_and_the_json_every_field(runs):
    root, screen, data = runs
    lines = screen.splitlines()
    assert max(map(len, lines)) <= 100
    start = next(i for i, line in enumerate(lines) if line.startswith("claims: "))
    assert lines[start + 1].split()[:5] == ["claim", "verdict", "measured", "[interval]", "power"]
    rows = lines[start + 3:lines.index("", start)]
    assert [row.split()[0] for row in rows] == ["targets", "tradeoff"]
    assert all(any(word.isupper() for word in row.split()) for row in rows)  # each with its verdict
    text = run_cli("report", str(root / "s0")).stdout
    assert "\nclaims: " in text and "per-event drops largest for Prune_L" in text
    assert "\ntargets (GST Fig. 2), runs of scorer " in text  # each claim's source and runs, on its note line
    claim, correlation = data["claims"]
    assert all(FIELDS <= set(c) for c in data["claims"]) and claim["id"] == "targets" and claim["n"] == 3
    assert correlation["test"] == "pearson" and correlation["n"] == 6
    assert claim["verdict"] in ("reproduced", "weaker", "inconclusive", "absent", "contradicted")
    assert claim["test"] == "paired t over seeds"
    # the order claim declares 1 point of interest; the correlation declares nothing: no power, and why
    assert claim["effect_tested"] == {"value": 0.01, "kind": "interest", "reason": "1 point of stability"}
    assert correlation["power"] is None and "no effect declared" in correlation["power_note"]
    assert "tradeoff, runs of scorer l2, effector mask: no power: no effect declared" in text
    assert "1 point of stability" in text


def test_report_shows_the_same_verdicts(runs):
    root, _, data = runs
    proc = run_cli("report", str(root / "s100"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["claims"] == data["claims"]
    text = run_cli("report", str(root / "s100")).stdout
    assert data["claims"][0]["verdict_label"].upper() in text


def test_a_plugin_scorers_runs_in_the_same_directory_leave_the_suites_claims_as_they_were(runs, tmp_path):
    """`--scorer` adds runs of another configuration: the claim keeps testing the suite's own, and the plugin's runs
    get claim rows of their own that say which scorer they tested."""
    root, _, _ = runs
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "s0", mixed)
    before = json.loads(run_cli("report", str(mixed), "--json").stdout)["claims"]
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flipped.py").write_text('''"""l2 with its sign flipped: prunes the largest filters as the smallest."""
from gstbench import hookimpl


class Flipped:
    def score(self, layer, ctx):
        return -layer.conv.weight.detach().flatten(1).norm(dim=1).reshape(layer.alive.shape)


@hookimpl
def register_scorers(register):
    register("flipped", Flipped)
''')
    added = run_cli("--plugins-dir", str(plugins), "run", "--suite", str(root / "tiny_claims.toml"), "--scorer",
                    "flipped:flipped", "--seeds", "3", "--out", str(mixed))
    assert added.returncode == 0, added.stderr
    after = json.loads(run_cli("--plugins-dir", str(plugins), "report", str(mixed), "--json").stdout)["claims"]
    assert [c for c in after if "[" not in c["id"]] == before
    theirs = {c["id"]: c for c in after if "[" in c["id"]}
    assert "targets [scorer=flipped]" in theirs
    assert theirs["targets [scorer=flipped]"]["tested"] == "scorer=flipped"
    assert theirs["targets [scorer=flipped]"]["n"] == 3


def _plant(directory, stability: dict[str, float], noise: float = 0.004) -> None:
    """Overwrite the stored stability of every run by its target (a code change that moved the numbers)."""
    for result_path in directory.glob("cells/*/result.json"):
        spec = json.loads((result_path.parent / "spec.json").read_text())["spec"]
        if spec["prune"] is None:
            continue
        result = json.loads(result_path.read_text())
        seed, target = spec["seed"], spec["prune"]["target"]["id"].split(":")[-1]
        # a little noise that differs by target: a paired t-test needs differences that vary
        result["metrics"]["stability"] = stability[target] + noise * ((seed + len(target)) % 3)
        result_path.write_text(json.dumps(result))


def _base_and_new(runs, tmp_path, new_stability: dict[str, float], noise: float = 0.004):
    """Two copies of the seeds-0-2 run: BASE where the order claim reproduces, NEW with ``new_stability``."""
    base, new = tmp_path / "base", tmp_path / "new"
    shutil.copytree(runs[0] / "s0", base)
    shutil.copytree(runs[0] / "s0", new)
    _plant(base, {"smallest": 0.90, "largest": 0.50})
    _plant(new, new_stability, noise)
    return base, new


def test_a_reproduced_claim_that_is_lost_is_a_regression_exit_1(runs, tmp_path):
    base, new = _base_and_new(runs, tmp_path, {"smallest": 0.70, "largest": 0.70})
    # a tolerance no metric change exceeds: only the claim can fail the comparison
    proc = run_cli("compare", str(base), str(new), "--tolerance", "1", "--format", "json")
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["counts"]["regressed"] == 0
    claim = result["claims"][0]
    assert claim["id"] == "targets" and (claim["base"]["verdict"], claim["new"]["verdict"], claim["change"]) == (
        "reproduced", "inconclusive", "regressed")
    back = run_cli("compare", str(new), str(base), "--tolerance", "1")
    assert back.returncode == 0 and "improved" in back.stdout and "moves down the scale" in back.stdout
    # an export carries the verdicts: the same comparison from a committed baseline file
    assert run_cli("export", str(base), str(tmp_path / "base.json")).returncode == 0
    assert json.loads((tmp_path / "base.json").read_text())["claims"][0]["verdict"] == "reproduced"
    assert run_cli("compare", str(tmp_path / "base.json"), str(new), "--tolerance", "1").returncode == 1


def test_a_reproduced_claim_that_finds_no_effect_of_the_size_of_interest_is_a_regression_exit_1(runs, tmp_path):
    # the same stability for both targets, measured precisely: the interval excludes the 1 point of interest
    base, new = _base_and_new(runs, tmp_path, {"smallest": 0.70, "largest": 0.70}, noise=0.0002)
    proc = run_cli("compare", str(base), str(new), "--tolerance", "1", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    claim = json.loads(proc.stdout)["claims"][0]
    assert (claim["base"]["verdict"], claim["new"]["verdict"], claim["change"]) == ("reproduced", "absent", "regressed")
    assert claim["new"]["effect_tested"]["value"] == 0.01 and claim["new"]["power"] is not None
    text = run_cli("compare", str(base), str(new), "--tolerance", "1").stdout
    assert "no effect of the size of interest" in text and "power" in text
    report = run_cli("report", str(new)).stdout
    assert "NO EFFECT OF THE SIZE OF INTEREST" in report and "+1.00 pts (of interest)" in report
    assert "the paper's" not in report.split("NO EFFECT")[0].splitlines()[-1]  # a direction-only claim's row


def test_claims_puts_seed_sets_side_by_side_and_lists_what_no_run_tests(runs, tmp_path):
    root, _, _ = runs
    proc = run_cli("claims", str(root / "s0"), str(root / "s100"), "--json")
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    # a suite file outside the registry: its columns name the seeds
    assert table["columns"][:2] == ["quick, seeds 0-2", "quick, seeds 100-102"] and "paper" in table["columns"]
    rows = {(r["suite"], r["id"]): r for r in table["rows"]}
    assert set(rows[("tinyclaims", "targets")]["results"]) == {"quick, seeds 0-2", "quick, seeds 100-102"}
    assert rows[("tradeoff", "gst-tradeoff")]["results"] == {}  # declared by a built-in suite, not run here
    text = run_cli("claims", str(root / "s0"), str(root / "s100")).stdout
    assert "not run" in text and "quick, seeds 100-102" in text
    for line in text.splitlines():  # each column's summary counts the verdicts in one fixed order
        if line.startswith(("quick", "paper")) and ": " in line:
            words = [w for w in ("reproduced", "weaker than the paper's effect", "inconclusive", "no effect of",
                                 "contradicted", "not run") if w in line]
            assert sorted(words, key=line.index) == words, line
    # by default: every suite directory under ./gstbench-results/
    shutil.copytree(root / "s0", tmp_path / "gstbench-results" / "tinyclaims")
    default = run_cli("claims", "--json", cwd=tmp_path)
    assert json.loads(default.stdout)["columns"][0] == "quick, seeds 0-2"
