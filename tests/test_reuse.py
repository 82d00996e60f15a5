"""Training and measurement apart: stored trainings, `run --reuse`, `gstbench measure`, old directories, --no-models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import gstbench
from gstbench.plugins import get_registry
from gstbench.store.reader import load_results
from gstbench.testing.files import stored_results

from conftest import run_cli

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny.toml")
STORED = DATA / "stored-eb9532a"


def builtin_metrics() -> list[str]:
    return sorted(c.name for c in get_registry().components("metrics") if c.plugin == "gstbench")


def _measured(results: dict) -> dict:
    """Latency is wall time, never bitwise: its keys are left out of a comparison (their presence is checked)."""
    def strip(metrics):
        return None if metrics is None else {k: v for k, v in metrics.items() if not k.startswith("latency_")}

    return {h: {**r, "metrics": strip(r["metrics"]), "rounds": [{**x, "metrics": strip(x["metrics"])}
                                                                  for x in r["rounds"]]}
            for h, r in results.items()}


def _run(suite: str, out: Path, *args: str, env: dict | None = None):
    proc = run_cli("run", "--suite", suite, "--seeds", "1", "--out", str(out), *args, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("suite", ["tiny.toml", "tiny_rounds.toml"])
def test_every_builtin_metric_on_a_stored_training_is_bitwise_what_training_afresh_stores(suite, tmp_path):
    """A cell measured on a training stored by a run without metrics stores what the same cell trained with
    its metrics stores: every built-in metric (the parent- and twin-needing ones too), at one thread."""
    # speed compiles and exports each network in several runtimes (seconds a cell): tests/test_runtimes.py runs it
    flags = [x for name in builtin_metrics() if name != "speed" for x in ("--metric", name)]
    assert {"excess-error", "functional-distance", "independent-agreement", "latency"} <= set(builtin_metrics())
    suite = str(DATA / suite)
    _run(suite, tmp_path / "fresh", *flags)
    _run(suite, tmp_path / "plain")
    proc = _run(suite, tmp_path / "reused", *flags, "--reuse", str(tmp_path / "plain"))
    assert "3 cells measured on stored trainings, without training" in proc.stderr
    fresh, reused = stored_results(tmp_path / "fresh"), stored_results(tmp_path / "reused")
    assert len(fresh) == 3 and fresh.keys() == reused.keys()
    assert _measured(reused) == _measured(fresh)
    for result in reused.values():
        metrics = result["metrics"] if not result["rounds"] else result["rounds"][-1]["metrics"]
        assert {"hessian_trace", "excess_error_mean", "latency_batch1_ms"} <= set(metrics)
    for cell in (tmp_path / "reused" / "cells").iterdir():  # measured, not trained, and said so
        data = json.loads((cell / "result.json").read_text())
        assert data["training_from"].startswith(str((tmp_path / "plain" / "trainings").resolve()))
        if "rounds" in data:
            assert all(set(r["metrics"]) >= {"hessian_trace", "metric_wall_s"} for r in data["rounds"])
    # the reusing directory holds the trainings it measured (linked), so its models outlive the other run
    model = next((tmp_path / "reused" / "trainings").glob("*/model.safetensors"))
    assert model.stat().st_nlink >= 2
    # gstbench measure adds the same values in place (a parent-needing metric and one that is not)
    proc = run_cli("measure", str(tmp_path / "plain"), "--metric", "functional-distance", "--metric", "cost")
    assert proc.returncode == 0, proc.stderr
    fresh_cells = {c.spec.training_hash: c.result for c in load_results(tmp_path / "fresh").cells}
    for cell in load_results(tmp_path / "plain").cells:
        keys = [k for keys in cell.result.measured_later.values() for k in keys]
        assert "softmax_l2_mean" in keys and "macs" in keys
        other = fresh_cells[cell.spec.training_hash]
        for mine, theirs in [(cell.result.metrics, other.metrics),
                             *((a.metrics, b.metrics) for a, b in zip(cell.result.rounds, other.rounds))]:
            assert {k: mine[k] for k in keys} == {k: theirs[k] for k in keys}


def test_cells_differing_only_in_metrics_share_one_stored_training(tmp_path):
    out = tmp_path / "run"
    _run(TINY, out)
    entries = sorted((out / "trainings").iterdir())
    assert len(entries) == 3 and all((e / "model.safetensors").is_file() for e in entries)
    proc = _run(TINY, out, "--metric", "cost", "--json")  # into the same directory: its own trainings serve
    assert json.loads(proc.stdout)["run"]["reused"] == 3
    assert sorted((out / "trainings").iterdir()) == entries  # no second training
    cells = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    with_cost = [c for c in cells if "macs" in c["metrics"]]
    assert len(with_cost) == 3 and all(c["training_from"] for c in with_cost)
    # the model of a cell is found through its training: load_model takes the cell's directory
    cell = next(p.parent for p in out.glob("cells/*/result.json")
                if "macs" in json.loads(p.read_text())["metrics"])
    assert gstbench.load_model(cell).gstbench_spec.metrics == ()


CLAIM = """
[[claims]]
id = "curvature"
statement = "less stable runs end in sharper minima"
test = { kind = "correlation", x = "stability", y = "hessian_trace", sign = "positive" }
"""


def test_measure_adds_a_metric_that_report_claims_plots_the_page_and_results_see(tmp_path):
    suite = tmp_path / "tiny_claim.toml"
    suite.write_text(Path(TINY).read_text() + CLAIM)
    out = tmp_path / "run"
    # with a metric in the suite, a claim may name any metric's key (metrics name their own)
    proc = run_cli("run", "--suite", str(suite), "--seeds", "2", "--metric", "cost", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    before = json.loads(run_cli("claims", str(out), "--json").stdout)
    proc = run_cli("measure", str(out), "--metric", "hessian-trace")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().endswith(f"6 cells measured (hessian-trace; `gstbench report {out}` shows them)")
    report = json.loads(run_cli("report", str(out), "--json").stdout)  # a measured metric is a column
    assert all(row["hessian_trace"]["n"] == 2 for row in report["rows"])
    named = run_cli("report", str(out), "--metric", "hessian-trace")  # its component name, as measure took it
    assert named.returncode == 0 and "hessian_trace" in named.stdout, named.stderr
    after = json.loads(run_cli("claims", str(out), "--json").stdout)
    def tested(table):  # the claim's one result (this directory's scale and seeds)
        (result,) = next(row for row in table["rows"] if row["id"] == "curvature")["results"].values()
        return result

    assert tested(before)["n"] == 0 and tested(before)["effect"] is None
    assert tested(after)["n"] == 4 and -1 <= tested(after)["effect"] <= 1  # the pruned runs' correlation
    plots = run_cli("plot", str(out), "--out", str(tmp_path / "plots"))
    assert plots.returncode == 0 and (tmp_path / "plots" / "stability_vs_hessian_trace.png").stat().st_size > 0
    page = run_cli("report", str(out), "--format", "html", "--output", str(tmp_path / "page.html"))
    assert page.returncode == 0 and "stability_vs_hessian_trace" in (tmp_path / "page.html").read_text()
    frame = gstbench.results(out).cells
    assert len(frame) == 6 and frame["hessian_trace"].notna().all()
    cells = load_results(out).cells
    assert all(c.result.measured_later == {"hessian-trace": ["hessian_trace", "hessian_trace_se"]} for c in cells)
    # what measure added equals what a run with the metric from the start stores
    fresh = tmp_path / "fresh"
    proc = run_cli("run", "--suite", str(suite), "--seeds", "2", "--metric", "cost", "--metric", "hessian-trace",
                   "--out", str(fresh))
    assert proc.returncode == 0, proc.stderr
    by_cell = {(c.spec.training_hash): c.result.metrics["hessian_trace"] for c in cells}
    again = {(c.spec.training_hash): c.result.metrics["hessian_trace"] for c in load_results(fresh).cells}
    assert by_cell == again
    from_start = run_cli("report", str(fresh), "--metric", "hessian-trace", "--json")  # in the spec from the start
    assert from_start.returncode == 0 and all("hessian_trace" in row for row in json.loads(from_start.stdout)["rows"])
    compared = run_cli("compare", str(out), str(fresh), "--metric", "hessian-trace", "--format", "json")
    assert {row["metric"] for row in json.loads(compared.stdout)["rows"]} == {"hessian_trace"}, compared.stderr
    proc = run_cli("measure", str(out), "--metric", "hessian-trace")
    assert proc.returncode == 0 and "0 cells measured; 6 cells had every metric already" in proc.stderr


def test_measure_refusals_are_one_line_naming_the_cell_and_the_fix(tmp_path):
    unknown = run_cli("measure", str(tmp_path), "--metric", "hessian-tracee")
    assert unknown.returncode == 2 and "did you mean: hessian-trace" in unknown.stderr
    not_a_run = run_cli("measure", str(tmp_path), "--metric", "cost")
    assert not_a_run.returncode == 2 and "no suite.json" in not_a_run.stderr
    assert len(not_a_run.stderr.strip().splitlines()) == 1
    plugins = DATA / "flat_plugin"  # random 1-D data without shifted test sets
    suite = tmp_path / "flat.toml"
    suite.write_text('name = "flat"\nseeds = 1\n[base]\nmodel = { name = "cnn1d", channels = [4, 4, 4, 4] }\n'
                     'dataset = "flat"\ntrain = { epochs = 1, batch_size = 32 }\n[scales.quick]\n')
    env = {"GSTBENCH_PLUGINS_DIR": str(plugins)}
    _run(str(suite), tmp_path / "flat", env=env)
    refused = run_cli("measure", str(tmp_path / "flat"), "--metric", "ood-accuracy", env=env)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "cannot apply to dataset flat" in lines[0]
    assert str(tmp_path / "flat" / "cells") in lines[0]
    result = next((tmp_path / "flat" / "cells").glob("*/result.json"))
    before = result.read_bytes()
    _run(str(suite), tmp_path / "bare", "--no-models", env=env)
    proc = run_cli("measure", str(tmp_path / "bare"), "--metric", "cost", env=env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 2 and "keeps no model" in lines[0]
    # the suite as it ran: its file (not a built-in's name) and its seeds
    assert f"gstbench run --suite {suite} --seeds 1 --metric cost --reuse {tmp_path / 'bare'} --out NEWDIR" in lines[0]
    assert lines[1].endswith("0 cells measured; 1 cell skipped: no stored model (above)")
    assert result.read_bytes() == before  # nothing stored was touched


@pytest.mark.parametrize("seeds", [[0], [0, 1, 2], [7], [100, 101, 102], [1, 5, 9], [3, 4]])
def test_the_rerun_advice_names_a_builtin_by_name_a_file_by_path_and_exactly_the_seeds(seeds):
    from gstbench.plan.seeds import parse_seeds
    from gstbench.plan.suite import find_suite
    from gstbench.run.measure import rerun_command

    registry = get_registry()
    builtin = {"name": "tradeoff", "source": str(find_suite(registry, "tradeoff")), "scale": "paper", "seeds": seeds}
    command = rerun_command(builtin, registry).split()
    assert command[:4] == ["gstbench", "run", "--suite", "tradeoff"] and command[4:6] == ["--scale", "paper"]
    assert parse_seeds(command[-1]) == tuple(seeds)
    file_suite = {"name": "tradeoff", "source": "/some where/tradeoff.toml", "scale": "quick", "seeds": seeds}
    assert rerun_command(file_suite, registry).startswith("gstbench run --suite '/some where/tradeoff.toml' --seeds")


def test_no_models_keeps_no_model_and_says_what_is_lost(tmp_path):
    proc = _run(TINY, tmp_path / "run", "--no-models")
    assert "--no-models: no model kept" in proc.stderr
    assert not list((tmp_path / "run").rglob("*.safetensors"))
    assert len(list((tmp_path / "run" / "trainings").glob("*/result.json"))) == 3  # the training's numbers stay
    proc = _run(TINY, tmp_path / "again", "--metric", "cost", "--reuse", str(tmp_path / "run"))
    assert "3 cells trained again: their stored training keeps no model" in proc.stderr


@pytest.fixture
def stored(tmp_path) -> Path:
    shutil.copytree(STORED, tmp_path / "stored")
    return tmp_path / "stored"


def test_an_old_directory_serves_its_trainings_and_trains_only_where_a_metric_needs_a_model(stored, tmp_path):
    """tests/data/stored-eb9532a kept no models: a suite without metrics is measured on its trainings (the
    same numbers, nothing trained); a metric that needs a model trains again, and the run says so."""
    suite = str(stored / "rounds.toml")
    proc = run_cli("run", "--suite", suite, "--reuse", str(stored / "rounds"), "--out", str(tmp_path / "new"))
    assert proc.returncode == 0 and "3 cells measured on stored trainings" in proc.stderr, proc.stderr
    assert stored_results(tmp_path / "new") == stored_results(stored / "rounds")
    proc = run_cli("run", "--suite", suite, "--metric", "cost", "--reuse", str(stored / "rounds"),
                   "--out", str(tmp_path / "cost"))
    assert proc.returncode == 0, proc.stderr
    assert "3 cells trained again: their stored training keeps no model, which their metrics need" in proc.stderr
    proc = run_cli("measure", str(stored / "rounds"), "--metric", "cost")
    assert proc.returncode == 1 and proc.stderr.count("keeps no model") == 3
    # cells stored with metrics serve a cell without them: the engine's numbers, the metrics' values left out
    text = (stored / "schedule.toml").read_text().replace('metrics = [{ name = "excess-error", severities = [1, 3] }, '
                                                        '"cost"]', "metrics = []")
    (tmp_path / "bare.toml").write_text(text.split("[[include]]\nmetrics")[0] + "[scales.quick]\n")
    proc = run_cli("run", "--suite", str(tmp_path / "bare.toml"), "--reuse", str(stored / "schedule"),
                   "--out", str(tmp_path / "bare"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["run"]["reused"] == 3, proc.stderr
    old = {c.spec.training_hash: c.result for c in load_results(stored / "schedule").cells if c.status == "ok"}
    for cell in load_results(tmp_path / "bare").cells:
        before = old[cell.spec.training_hash].metrics
        assert cell.result.metrics == {k: v for k, v in before.items() if k in cell.result.metrics}
        assert "excess_error_mean" in before and "excess_error_mean" not in cell.result.metrics
        assert "macs" in before and "macs" not in cell.result.metrics
        assert cell.result.curves == old[cell.spec.training_hash].curves


def test_reuse_refuses_what_is_not_another_run_directory(tmp_path):
    proc = run_cli("run", "--suite", TINY, "--reuse", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert proc.returncode != 0 and "--reuse" in proc.stderr and "no suite.json" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_a_training_another_run_is_training_is_waited_for_and_measured_not_trained_twice(tmp_path):
    """Runs that share a training train it once: while run A holds its trainings' leases (it is training them),
    run B (--reuse A) waits, then measures what A stored."""
    import os
    import subprocess
    import time

    from gstbench.run.leases import Leases
    from gstbench.run.orders import training_lease_dir
    from gstbench.testing.forkserver import popen_gstbench

    a, b = tmp_path / "a", tmp_path / "b"
    _run(TINY, a)
    (a / "trainings").rename(tmp_path / "stored-later")  # A as it was while training: nothing stored yet
    held = Leases()
    for cell in load_results(a).cells:
        assert held.take(training_lease_dir(a, cell.spec), lambda: False) == "taken"
    proc = popen_gstbench("run", "--suite", TINY, "--seeds", "1", "--out", str(b), "--reuse", str(a), "--metric",
                          "cost", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "GSTBENCH_LOAD_PLUGINS": ""})
    try:
        deadline = time.monotonic() + 120
        while not list(b.glob("cells/*/lease.json")) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        time.sleep(2.0)  # B has its cells: were it not waiting, it would be training them now
        assert proc.poll() is None, proc.communicate()
        (tmp_path / "stored-later").rename(a / "trainings")  # A stores its trainings and drops its leases
        held.drop_all()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    results = [json.loads(p.read_text()) for p in b.glob("cells/*/result.json")]
    assert len(results) == 3 and all("macs" in r["metrics"] for r in results)
    assert all(r["training_from"].startswith(str((a / "trainings").resolve())) for r in results)


def test_two_cells_of_one_run_sharing_a_training_in_flight_together_train_it_once(tmp_path):
    """Cells that differ only in their metrics, started at once on two workers: one trains the training, the other
    waits on its lease and measures what it stored."""
    suite = tmp_path / "share.toml"
    suite.write_text('name = "share"\nseeds = 1\n[base]\nmodel = { name = "cnn1d", channels = [8, 16, 16, 16] }\n'
                     'dataset = { name = "mnist1d", num_samples = 600, train_split = 0.5 }\n'
                     'train = { epochs = 3, batch_size = 64 }\n[axes]\nmetrics = [[], ["cost"]]\n[scales.quick]\n')
    out = tmp_path / "out"
    _run(str(suite), out, "--executor", "pool", "--workers", "2")
    assert len(list((out / "trainings").iterdir())) == 1
    results = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    measured = [r for r in results if r.get("training_from")]
    assert len(results) == 2 and len(measured) == 1
    assert results[0]["metrics"]["final_test_acc"] == results[1]["metrics"]["final_test_acc"]
