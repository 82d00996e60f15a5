"""Metrics in the engine: the parent cache, per-round metrics, rejection before training, the CLI's --metric."""

from __future__ import annotations

import json

import pytest

from conftest import DATA, changed, run_cli
from gstbench.plan.parse import cell_from_config
from gstbench.engine import run_cell
from gstbench.errors import SpecError
from gstbench.store.parents import ParentCache
from gstbench.plugins import Registry
from gstbench.plan.suite import load_suite
from gstbench.reports.stats import prune_potential

OOD = [{"name": "ood-accuracy", "severities": [1]}, {"name": "excess-error", "severities": [1]},
       {"name": "functional-distance", "eps": [0.0, 0.5]}]
BASE = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 600, "train_split": 0.5},
    "train": {"epochs": 3, "batch_size": 64},
    "prune": {"scorer": "l2", "target": "smallest", "effector": "mask", "rounds": 2, "fraction": 0.5,
              "layers": ["conv2", "conv3"]},
    "rewind": "lr@50%",
    "metrics": OOD,
}


def test_prune_potential_follows_the_contiguous_rule():
    ratios = [0.2, 0.4, 0.6, 0.8]
    # 0.6 is over the tolerance; 0.8 is back within it, but a later pass does not count.
    assert prune_potential(ratios, [0.100, 0.104, 0.107, 0.103], 0.100, 0.005) == 0.4
    assert prune_potential(ratios, [0.09, 0.1, 0.105, 0.1], 0.100, 0.005) == 0.8  # exactly at the tolerance passes
    assert prune_potential(ratios, [0.2, 0.1, 0.1, 0.1], 0.100, 0.005) == 0.0  # the smallest ratio fails
    assert prune_potential(list(reversed(ratios)), [0.103, 0.107, 0.104, 0.100], 0.100, 0.005) == 0.4  # order-free


def test_rounds_reuse_one_parent_and_measure_every_round(registry, tmp_path):
    cache = ParentCache(tmp_path)
    first = run_cell(cell_from_config(BASE, 0, registry), registry, parents=cache)
    other = run_cell(cell_from_config(changed(BASE, prune__scorer="bn-gamma"), 0, registry), registry,
                     parents=cache)
    alone = run_cell(cell_from_config(BASE, 0, registry), registry)  # no cache: trains its own parent
    assert (first.status, other.status, alone.status) == ("ok", "ok", "ok")
    assert (first.parent, other.parent, alone.parent) == ("trained", "cached", "trained")
    # The cached parent is the same parent: same curves, same metrics at round 0.
    assert other.rounds[0].curves == first.rounds[0].curves == alone.rounds[0].curves
    assert other.rounds[0].metrics["ood_acc"] == first.rounds[0].metrics["ood_acc"]
    assert first.metrics == {**alone.metrics, "metric_wall_s": first.metrics["metric_wall_s"]}
    for r in first.rounds:
        assert "ood_acc" in r.metrics and "excess_error_mean" in r.metrics
    round0 = first.rounds[0].metrics
    assert round0["excess_error_mean"] == 0.0 and round0["functional_agreement_mean"] == 1.0  # its own parent
    last = first.rounds[-1].metrics
    assert last["parent_nominal_acc"] == round0["ood_nominal_acc"]
    for shift, accs in last["excess_error"].items():  # the definition, from the stored accuracies
        expected = ((1 - last["ood_acc"][shift][0]) - (1 - last["ood_nominal_acc"])) - \
            ((1 - round0["ood_acc"][shift][0]) - (1 - round0["ood_nominal_acc"]))
        assert accs[0] == pytest.approx(expected)
    assert first.metrics["ood_acc"] == last["ood_acc"]  # the cell's metrics are its last round's


def test_an_unpruned_cell_is_the_parent_of_a_pruned_one(registry, tmp_path):
    cache = ParentCache(tmp_path)
    schedule = {**BASE, "rewind": "none", "prune": {"scorer": "l2", "target": "smallest", "effector": "mask",
                                                    "start": "1ep", "end": "2ep", "period": "1ep",
                                                    "layers": {"conv2": {"fraction": 0.5}}}}
    pruned = run_cell(cell_from_config(schedule, 1, registry), registry, parents=cache)
    unpruned = run_cell(cell_from_config(changed(schedule, prune=False), 1, registry), registry, parents=cache)
    assert pruned.status == unpruned.status == "ok"
    assert unpruned.parent == "cached"  # the pruned cell trained it for its excess error
    assert pruned.metrics["parent_nominal_acc"] == unpruned.metrics["final_test_acc"]
    assert unpruned.metrics["functional_agreement_mean"] == 1.0
    fresh = run_cell(cell_from_config(changed(schedule, prune=False), 1, registry), registry)
    assert fresh.curves == unpruned.curves


def test_a_metric_that_cannot_apply_is_rejected_before_training(tmp_path):
    registry = Registry(plugins_dir=DATA / "flat_plugin")  # random 1-D data without shifted test sets
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[base]\nmodel = "cnn1d"\ndataset = "flat"\nmetrics = ["cost", "ood-accuracy"]\n'
                     '[scales.quick]\n')
    with pytest.raises(SpecError) as err:
        load_suite(registry, str(suite))
    assert err.value.key == "metrics[1]" and "no shifted test sets" in str(err.value) and "s.toml" in str(err.value)
    suite.write_text('name = "s"\n[base]\nmodel = "cnn1d"\ndataset = "mnist1d"\n'
                     'metrics = [{ name = "hessian-topk", k = 30 }]\n[scales.quick]\n')
    with pytest.raises(SpecError, match="k = 30 needs 1 <= k <= iterations"):
        load_suite(registry, str(suite))


def test_cli_metric_flag_adds_metrics_and_reports_their_cost(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--metric", "cost",
                   "--metric", "hessian-trace", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    assert len(results) == 3
    for r in results:
        m = r["metrics"]
        assert m["macs"] > 0 and "hessian_trace" in m and set(m["metric_wall_s"]) == {"cost", "hessian-trace"}
        assert r["timing"]["metrics_s"] > 0
    masked = [r["metrics"] for r in results if r["metrics"].get("sparsity", 0) > 0]
    assert all(m["macs_without_dead_filters"] < m["macs"] for m in masked)
    bad = run_cli("run", "--suite", str(DATA / "tiny.toml"), "--metric", "hessian-trase", "--out", str(out))
    assert bad.returncode != 0 and "hessian-trace" in bad.stderr  # the closest known name


def test_tiny_ood_suite_reports_prune_potential_end_to_end(tmp_path):
    out = tmp_path / "ood"
    proc = run_cli("run", "--suite", str(DATA / "tiny_ood.toml"), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    full = run_cli("report", str(out)).stdout
    assert "prune potential %" in full and "excess error" in full
    assert "stability vs ood_acc_mean" in full
    assert len(list((out / "parents").iterdir())) == 2  # one parent per seed, shared by both scorers
    header = run_cli("report", str(out), "--format", "csv").stdout.splitlines()[0].split(",")
    assert {"ood_acc_mean_mean", "excess_error_mean_mean"} <= set(header)  # the rank and the suite's columns
    sorted_t = run_cli("report", str(out), "--sort", "excess_error_mean", "--metric", "ood_nominal_acc",
                       "--interval", "t", "--format", "json")
    data = json.loads(sorted_t.stdout)
    assert data["rank"] == "excess_error_mean" and "Student-t" in data["interval"]
    means = [r["excess_error_mean"]["mean"] for r in data["rows"]]
    assert means == sorted(means, reverse=True) and all("ood_nominal_acc" in r for r in data["rows"])
    bad = run_cli("report", str(out), "--sort", "excess_eror_mean")
    assert bad.returncode == 2 and "did you mean: excess_error_mean" in bad.stderr
    report = json.loads(run_cli("report", str(out), "--json").stdout)
    assert "bootstrap-t" in report["interval"]
    for row in report["rows"]:
        pooled = row["potential"]["pooled"]
        assert set(pooled) == {"nominal", "iid_noise", "corr_noise", "shear", "scale", "mean"}
        assert len(row["potential"]["per_seed"]["nominal"]) == 2
        ratios = {0.0, *(x["sparsity"] for x in row["potential"]["by_round"][1:])}
        assert all(p in ratios for values in row["potential"]["per_seed"].values() for p in values)


def test_a_cached_parent_carries_the_rewind_state_and_the_second_copys_start(registry, tmp_path):
    cfg = changed(BASE, metrics=[], rewind="weights@1ep",
                  prune={"scorer": "l2", "target": "smallest", "effector": "mask", "rounds": 1, "fraction": 0.5,
                         "granularity": "weights", "layers": ["conv2", "conv3"], "data_order_stability": True,
                         "lmc_points": 3})
    spec = cell_from_config(cfg, 0, registry)
    cache = ParentCache(tmp_path)
    trained, cached = run_cell(spec, registry, parents=cache), run_cell(spec, registry, parents=cache)
    assert (trained.parent, cached.parent) == ("trained", "cached")
    # Step 1ep's weights and optimizer state came from the cache: the same tickets, copies and barriers.
    assert cached.rounds == trained.rounds
    assert {k: v for k, v in cached.metrics.items() if k != "metric_wall_s"} == \
        {k: v for k, v in trained.metrics.items() if k != "metric_wall_s"}


def test_the_independent_parent_is_another_seeds_parent_and_leaves_the_cell_unchanged(registry, tmp_path):
    from gstbench.engine.setup import independent_seed

    with_twin = changed(BASE, metrics=[{"name": "independent-agreement", "eps": [0.0, 0.5]},
                                       {"name": "functional-distance", "eps": [0.0, 0.5]}])
    without = changed(BASE, metrics=[{"name": "functional-distance", "eps": [0.0, 0.5]}])
    cold = run_cell(cell_from_config(with_twin, 0, registry), registry, parents=ParentCache(tmp_path))
    warm = run_cell(cell_from_config(with_twin, 0, registry), registry, parents=ParentCache(tmp_path))
    plain = run_cell(cell_from_config(without, 0, registry), registry)
    assert cold.status == warm.status == plain.status == "ok"
    # training the twin (cold cache) or loading it (warm) does not move the cell's own numbers
    for r in (warm, plain):
        assert [x.curves for x in r.rounds] == [x.curves for x in cold.rounds]
        assert r.metrics["functional_agreement_mean"] == cold.metrics["functional_agreement_mean"]
    assert len(list(tmp_path.glob("*/parent.json"))) == 2  # the parent and its twin, each cached once
    twin_seed = {json.loads(p.read_text())["spec"]["seed"] for p in tmp_path.glob("*/parent.json")}
    assert twin_seed == {0, independent_seed(0)} and independent_seed(0) != 0
    # two parents from different seeds agree less than a parent with itself, and the value is the same every round
    values = {x.metrics["independent_agreement_mean"] for x in cold.rounds}
    assert len(values) == 1 and 0 < values.pop() < 1
    assert cold.rounds[0].metrics["functional_agreement_mean"] == 1.0
