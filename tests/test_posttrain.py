"""The posttrain suite: post-training pruning of heads, neurons and single weights at three levels, its groups
(what is pruned, an option at its default), labels that tell its early parent apart, its curve and its claims."""

from __future__ import annotations

import json

import pytest

from gstbench.plan.selection import describe_config, distinguishing_keys, in_group, value_at
from gstbench.plan.suite import load_suite

CLAIMS = ["michel-heads", "michel-early", "voita-scratch", "llmpruner-magnitude", "wanda-magnitude",
          "sparsegpt-magnitude", "wanda-group"]


@pytest.fixture(scope="module")
def suite(registry):
    return load_suite(registry, "posttrain", placeholders=True, build_models=False)


def _specs(suite):
    return [json.loads(cell.canonical_json()) for cell in suite.cells if cell.seed == 0]


def test_the_matrix_is_16_methods_at_3_levels_with_its_controls_and_claims(suite):
    specs = _specs(suite)
    assert len(specs) == 16 * 3 + 1 + 4 + 3 and suite.seeds == list(range(10))
    assert [c["id"] for c in suite.claims] == CLAIMS
    units = {value_at(s, "prune.units") for s in specs if s["prune"]}
    assert units == {"heads", "neurons", "weights"}
    assert all(s["rewind"]["id"] == "gstbench:finetune" for s in specs
               if s["prune"] and s["train"]["epochs"] == 45 and value_at(s, "prune.units") != "heads")


def test_groups_select_by_what_is_pruned_and_by_an_option_left_at_its_default(suite):
    """An option at its factory default is not stored (it keeps old hashes); a group naming it still matches."""
    specs = [s for s in _specs(suite) if s["prune"]]
    magnitude = [s for s in specs if s["prune"]["scorer"]["id"] == "gstbench:magnitude"]
    assert sorted("compare" in s["prune"]["scorer"]["options"] for s in magnitude) == [False] * 3 + [True] * 3
    layer = [s for s in magnitude if in_group(s, {"prune.scorer": ["magnitude"], "prune.scorer.compare": ["layer"]})]
    assert len(layer) == 3 and all("compare" not in s["prune"]["scorer"]["options"] for s in layer)
    assert value_at(layer[0], "prune.scorer.compare") == "layer"
    heads = [s for s in specs if in_group(s, {"prune.units": ["heads"], "prune.scorer": ["random"]})]
    assert len(heads) == 3 and all(set(s["prune"]["layers"]) == {"block1.heads", "block2.heads", "block3.heads"}
                                   for s in heads)
    assert value_at({"prune": {"layers": {"conv3": {}}}}, "prune.units") == "filters"
    assert value_at({"prune": {"layers": {"block1.heads": {}, "block1.neurons": {}}}}, "prune.units") == \
        "heads+neurons"


def test_configurations_that_share_a_label_are_told_apart_by_the_key_that_differs(suite):
    specs = _specs(suite)
    keys = distinguishing_keys(specs, list(suite.axes))
    assert keys == ["train.epochs"]
    labels = {json.dumps(describe_config(s, list(suite.axes), keys)) for s in specs}
    assert len(labels) == len(specs)
    early = [describe_config(s, list(suite.axes), keys) for s in specs if s["train"]["epochs"] == 2]
    assert len(early) == 3 and all(row["train.epochs"] == "epochs=2" and row["units"] == "heads" for row in early)
    # the tradeoff suite's labels are as they were: no unit, no extra key
    from gstbench.plugins import Registry

    tradeoff = load_suite(Registry(), "tradeoff", placeholders=True, build_models=False)
    tradeoff_specs = [json.loads(c.canonical_json()) for c in tradeoff.cells]
    assert distinguishing_keys(tradeoff_specs, list(tradeoff.axes)) == []
    assert all("units" not in describe_config(s, list(tradeoff.axes)) for s in tradeoff_specs)




@pytest.mark.slow
def test_a_posttrain_run_prints_its_curve_and_claims_and_plots_accuracy_against_the_level(tmp_path):
    from conftest import run_cli, tiny_transformer_suite

    (tmp_path / "posttrain.toml").write_text(tiny_transformer_suite("posttrain", 1))  # its matrix, tiny
    out = tmp_path / "run"
    proc = run_cli("run", "--suite", str(tmp_path / "posttrain.toml"), "--out", str(out), timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert max(map(len, proc.stdout.splitlines())) <= 100, proc.stdout  # off a terminal: 100 columns
    assert "final_test_acc against prune.fraction" in proc.stdout, proc.stdout[-4000:]
    for claim in CLAIMS:
        assert claim in proc.stdout, proc.stdout[-3000:]
    assert "NOT RUN" not in proc.stdout  # every group of every claim has runs at the levels it compares
    report = json.loads(run_cli("report", str(out), "--json").stdout)
    methods = report["methods"]
    ranked = methods["ranking"]["methods"]
    assert len(ranked) == 16 and not any("epochs=2" in m for m in ranked)  # the early parent is no method
    assert all(row["n"] == 1 for level in methods["levels"] for row in level["rows"])
    assert [level["level"] for level in methods["levels"]] == ["0.25", "0.5", "0.75"]
    plots = run_cli("plot", str(out), "--out", str(tmp_path / "figures"))
    assert plots.returncode == 0, plots.stderr
    assert (tmp_path / "figures" / "accuracy_vs_level.png").stat().st_size > 10_000
