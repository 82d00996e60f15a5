"""Export and compare through the CLI: planted regressions fail, noise and moves do not, bad input exits 2."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The built-in smoke suite, run once, and its export."""
    root = tmp_path_factory.mktemp("smoke")
    proc = run_cli("run", "--suite", "smoke", "--out", str(root / "run"), "--json")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("export", str(root / "run"), str(root / "base.json"))
    assert proc.returncode == 0, proc.stderr
    return root, json.loads((root / "base.json").read_text())


def _write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def _shift(data: dict, label_target: str, metric: str, by: list[float]) -> dict:
    out = copy.deepcopy(data)
    for config in out["configurations"]:
        if config["label"]["target"] == label_target:
            for run, d in zip(config["runs"], by):
                run["metrics"][metric] += d
    return out


def compare_json(base: str, new: str, *extra: str):
    proc = run_cli("compare", base, new, "--format", "json", *extra)
    return proc.returncode, (json.loads(proc.stdout) if proc.stdout.strip() else None), proc.stderr


def test_export_is_versioned_and_holds_every_seed(smoke):
    _, data = smoke
    assert data["format"] == "gstbench-results" and data["version"] == 1
    assert len(data["configurations"]) == 3 and all(len(c["runs"]) == 3 for c in data["configurations"])
    assert all("best_test_acc" in r["metrics"] for c in data["configurations"] for r in c["runs"])


def test_a_result_set_matches_its_own_export(smoke):
    root, _ = smoke
    code, result, _ = compare_json(str(root / "base.json"), str(root / "run"))
    assert code == 0 and result["counts"]["unchanged"] == 6 and not result["regressed"]


def test_a_planted_regression_fails_with_exit_1(smoke, tmp_path):
    root, data = smoke
    worse = _write(tmp_path / "new.json", _shift(data, "smallest", "best_test_acc", [-0.10, -0.12, -0.11]))
    code, result, _ = compare_json(str(root / "base.json"), worse)
    assert code == 1 and result["regressed"]
    row = next(r for r in result["rows"] if r["label"]["target"] == "smallest" and r["metric"] == "best_test_acc")
    assert row["verdict"] == "regressed" and row["p"] < 0.05 and row["delta"] == pytest.approx(-0.11)
    assert "paired t-test" in result["test"] and row["test"] == "paired"
    plain = run_cli("compare", str(root / "base.json"), worse, "--format", "github")
    assert plain.returncode == 1 and "| regressed" in plain.stdout
    better = _write(tmp_path / "better.json", _shift(data, "smallest", "best_test_acc", [0.10, 0.12, 0.11]))
    code, result, _ = compare_json(str(root / "base.json"), better)
    assert code == 0 and result["counts"]["improved"] == 1


def test_a_change_within_seed_noise_or_tolerance_is_not_a_regression(smoke, tmp_path):
    root, data = smoke
    noisy = _write(tmp_path / "noisy.json", _shift(data, "largest", "best_test_acc", [-0.09, +0.07, -0.01]))
    code, result, _ = compare_json(str(root / "base.json"), noisy)
    row = next(r for r in result["rows"] if r["label"]["target"] == "largest" and r["metric"] == "best_test_acc")
    assert code == 0 and row["verdict"] == "unchanged" and "noise" in row["note"]
    small = _write(tmp_path / "small.json", _shift(data, "largest", "best_test_acc", [-0.003, -0.003, -0.003]))
    assert compare_json(str(root / "base.json"), small)[0] == 0
    # A stricter tolerance for that metric makes the same consistent 0.3-point drop a regression.
    code, result, _ = compare_json(str(root / "base.json"), small, "--tolerance", "best_test_acc=0.001")
    assert code == 1 and result["tolerances"]["best_test_acc"] == 0.001


def test_missing_and_new_configurations_are_reported(smoke, tmp_path):
    root, data = smoke
    moved = copy.deepcopy(data)
    gone = moved["configurations"].pop(0)
    added = copy.deepcopy(gone)
    added["key"], added["label"]["period"] = "0" * 16, "9ep"
    moved["configurations"].append(added)
    moved_file = _write(tmp_path / "moved.json", moved)
    code, result, _ = compare_json(str(root / "base.json"), moved_file)
    assert code == 1 and result["missing_fails"]  # a configuration that went away fails the gate
    assert result["counts"]["missing"] == 2 and result["counts"]["new"] == 2  # two metrics each
    code, result, _ = compare_json(str(root / "base.json"), moved_file, "--allow-missing")
    assert code == 0 and result["counts"]["missing"] == 2 and not result["regressed"]
    plain = run_cli("compare", str(root / "base.json"), moved_file)
    assert plain.returncode == 1 and "a configuration only in BASE fails the gate" in plain.stdout


def _changed_lr(data: dict, drop: list[float]) -> dict:
    """The export as a run with train.lr 0.0005 would store it: new configuration keys, the accuracy moved."""
    out = copy.deepcopy(data)
    for config in out["configurations"]:
        config["config"]["train"]["lr"] = 0.0005
        config["key"] = config["key"][::-1]
        for run, d in zip(config["runs"], drop):
            run["metrics"]["best_test_acc"] += d
    return out


def test_a_changed_configuration_is_matched_across_the_change_and_its_regression_fails(smoke, tmp_path):
    root, data = smoke
    changed = _write(tmp_path / "lr.json", _changed_lr(data, [-0.30, -0.27, -0.29]))
    code, result, _ = compare_json(str(root / "base.json"), changed)
    assert code == 1 and result["counts"]["missing"] == 6 and result["counts"]["new"] == 6  # unmatched: all moved
    code, result, _ = compare_json(str(root / "base.json"), changed, "--match", "train.lr=0.003:0.0005")
    assert code == 1 and result["counts"]["missing"] == 0 and result["counts"]["new"] == 0
    rows = [r for r in result["rows"] if r["metric"] == "best_test_acc"]
    assert len(rows) == 3 and all(r["verdict"] == "regressed" and r["matched"] for r in rows)
    assert all(r["verdict"] == "unchanged" for r in result["rows"] if r["metric"] == "stability")
    code, bare, _ = compare_json(str(root / "base.json"), changed, "--match", "train.lr")  # the axis left out
    assert code == 1 and bare["rows"] == result["rows"]
    plain = run_cli("compare", str(root / "base.json"), changed, "--match", "train.lr=3e-3:5e-4")
    assert plain.returncode == 1 and "(base: bn-gamma smallest mask 4ep)" in plain.stdout
    code, result, _ = compare_json(str(root / "base.json"), changed, "--match", "train.lr=0.1:0.0005")
    assert code == 1 and result["counts"]["missing"] == 6  # OLD matches nothing: nothing is paired


def test_labels_read_back_from_an_export_print_in_one_order(smoke, tmp_path):
    root, data = smoke
    resorted = copy.deepcopy(data)
    for config in resorted["configurations"]:
        config["label"] = dict(sorted(config["label"].items()))  # as a JSON writer that sorts keys leaves it
    proc = run_cli("compare", _write(tmp_path / "sorted.json", resorted), str(root / "run"))
    assert proc.returncode == 0 and "bn-gamma largest mask 4ep" in proc.stdout and "mask 4ep bn-gamma" not in proc.stdout


def test_bad_input_exits_2_and_names_it(smoke, tmp_path):
    root, data = smoke
    other = _write(tmp_path / "other.json", {"hello": 1})
    proc = run_cli("compare", str(root / "base.json"), other)
    assert proc.returncode == 2 and "other.json is not a gstbench export" in proc.stderr
    future = _write(tmp_path / "future.json", {**data, "version": 99, "gstbench": "9.1.0"})
    proc = run_cli("compare", future, str(root / "run"))
    assert proc.returncode == 2 and "version 99" in proc.stderr and "upgrade gstbench to 9.1.0" in proc.stderr
    base, run = str(root / "base.json"), str(root / "run")
    for extra, said in ((["--tolerance", "much"], "--tolerance"), (["--tolerance", "-0.1"], "--tolerance"),
                        (["--tolerance", "foo=0.1"], "foo is not a compared metric"),
                        (["--metric", "stabilty"], "did you mean: stability"),
                        (["--match", "train.lr=0.003"], "--match"), (["--match", "=1:2"], "--match")):
        proc = run_cli("compare", base, run, *extra)
        assert proc.returncode == 2 and said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, \
            (extra, proc.stderr)
    assert run_cli("compare", base, str(tmp_path / "absent")).returncode == 2


def test_csv_export_has_one_row_per_cell_and_a_column_per_axis_and_metric(smoke, tmp_path):
    import csv

    root, data = smoke
    proc = run_cli("export", str(root / "run"), str(tmp_path / "runs.csv"))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
    assert len(rows) == 9 and {"seed", "status", "target", "period", "best_test_acc", "stability"} <= set(rows[0])
    by_hash = {r["hash"]: r for c in data["configurations"] for r in c["runs"]}
    for row in rows:
        assert float(row["best_test_acc"]) == by_hash[row["hash"]]["metrics"]["best_test_acc"]


def test_a_metric_plugin_declares_which_way_is_better_and_compare_asks_it(smoke, tmp_path):
    """A key the registry has no direction for is only "changed"; a plugin's ``better`` makes it regress."""
    root, data = smoke
    for config in data["configurations"]:
        for run in config["runs"]:
            run["metrics"]["weight_norm"] = 1.0 + 0.01 * run["seed"]
    base = _write(tmp_path / "base.json", data)
    larger = _write(tmp_path / "larger.json", _shift(data, "smallest", "weight_norm", [0.10, 0.12, 0.11]))
    code, result, _ = compare_json(base, larger, "--metric", "weight_norm")
    row = next(r for r in result["rows"] if r["label"]["target"] == "smallest")
    assert code == 0 and row["verdict"] == "changed"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "norms.py").write_text(
        "import gstbench\n\n\nclass WeightNorm:\n    def compute(self, ctx):\n        return {}\n\n\n"
        "@gstbench.hookimpl\ndef register_metrics(register):\n"
        "    register('weight-norm', WeightNorm, better={'weight_norm': 'lower'})\n")
    proc = run_cli("--plugins-dir", str(plugins), "compare", base, larger, "--metric", "weight_norm", "--format", "json")
    row = next(r for r in json.loads(proc.stdout)["rows"] if r["label"]["target"] == "smallest")
    assert proc.returncode == 1 and row["verdict"] == "regressed"
    (plugins / "norms.py").write_text((plugins / "norms.py").read_text().replace("'lower'", "'smaller'"))
    proc = run_cli("--plugins-dir", str(plugins), "list", "metrics")
    assert "weight_norm" in proc.stderr and "higher" in proc.stderr and "Traceback" not in proc.stderr


def test_the_summary_and_the_claims_table_fit_100_columns_off_a_terminal(smoke):
    root, _ = smoke
    proc = run_cli("compare", str(root / "base.json"), str(root / "run"))
    assert proc.returncode == 0, proc.stderr
    table, rest = proc.stdout.split("\n\n", 1)
    assert "gst-targets" in rest and max(len(line) for line in rest.splitlines()) <= 100, rest
    github = run_cli("compare", str(root / "base.json"), str(root / "run"), "--format", "github")
    assert all(line.startswith("|") for line in github.stdout.split("\n\n")[2].splitlines()), github.stdout
