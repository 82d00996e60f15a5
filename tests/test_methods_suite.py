"""The methods comparison end to end: a miniature of the methods suite run from the CLI prints a leaderboard per
level, the rank summary and the claims; a scorer plugin written as docs/plugins.md shows joins the ranking with
--scorer; gstbench plot draws the Pareto and critical-difference figures; the built-in suite loads at both scales."""

from __future__ import annotations

import json

from gstbench import hookimpl
from gstbench.plan.suite import load_suite
from gstbench.plugins import Registry
from gstbench.scaffold import new_plugin

from conftest import DATA, run_cli


def test_a_methods_run_ranks_a_plugin_scorer_and_draws_its_figures(tmp_path):
    # the scorer new-plugin writes (docs/plugins.md's walkthrough), loaded as a local plugin file
    new_plugin("mysnip", "scorer", tmp_path)
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "mysnip.py").write_text((tmp_path / "mysnip" / "gstbench_mysnip" / "__init__.py").read_text())
    out = tmp_path / "run"
    run = run_cli("--plugins-dir", str(plugins), "run", "--suite", str(DATA / "tiny_methods.toml"),
                  "--scorer", "mysnip:mysnip", "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert max(map(len, run.stdout.splitlines())) <= 100  # run's last screen; the tables are report's
    assert "tiny-random-worse" in run.stdout and "tiny-scratch-not-worse" in run.stdout
    # the curve: a row per method, a column per level (the means alone where the intervals do not fit)
    curve = run.stdout.partition("final_test_acc against prune.fraction")[2].split("\n\n")[0].splitlines()
    header = next(i for i, line in enumerate(curve) if line.startswith("method "))
    assert curve[header].split() == ["method", "fraction", "0.3", "fraction", "0.6"], run.stdout
    assert {line.split("  ")[0] for line in curve[header + 2:]} == {"l1 1 round", "random 1 round", "mysnip 1 round", "l1 1ep",
                                                           "random 1ep", "mysnip 1ep", "l1 1 round reinit"}, curve
    text = run_cli("--plugins-dir", str(plugins), "report", str(out)).stdout
    assert "prune.fraction = 0.3: 6 methods ranked by final_test_acc" in text  # 3 scorers x 2 regimes
    assert "prune.fraction = 0.6: 7 methods ranked by final_test_acc" in text  # + the scratch control
    assert "rank summary over 4 blocks (prune.fraction x seed" in text and "Friedman chi2 = " in text
    assert "not ranked (not measured at every prune.fraction and seed): l1 1 round reinit" in text
    assert "tiny-random-worse" in text and "tiny-scratch-not-worse" in text and "non-inferiority > -1 pts" in text

    report = run_cli("--plugins-dir", str(plugins), "report", str(out), "--json")
    assert report.returncode == 0, report.stderr
    methods = json.loads(report.stdout)["methods"]
    ranking = methods["ranking"]
    assert sorted(ranking["methods"]) == sorted(f"{s} {r}" for s in ("l1", "random", "mysnip")
                                                for r in ("1 round", "1ep"))
    assert ranking["blocks"] == 4 and len(ranking["nemenyi_p"]) == 6 and 0 <= ranking["friedman"]["p"] <= 1
    assert sum(ranking["mean_ranks"]) == 4 * 6 * 7 / 2 / 4  # each block's ranks sum to k(k+1)/2
    level = methods["levels"][0]
    assert level["level"] == "0.3" and {"final_test_acc", "macs_without_dead_filters", "speed_eager_batch_ms",
                                        "speed_onnxruntime_batch_realized", "ood_acc_mean",
                                        "stability"} <= set(level["rows"][0])
    # every method of a level has the same shapes: one measurement of their speed, shared (no timing noise between)
    assert len({row["speed_onnxruntime_batch_ms"]["mean"] for row in level["rows"]}) == 1
    assert methods["unpruned"]["speed_onnxruntime_batch_ms"]["mean"] > 0  # the parent's time, for the front
    assert "onnxruntime speed-up" in text
    assert set(methods["potential"]["mysnip 1ep"]) == {"nominal", "shifted"}

    page = tmp_path / "page.html"
    html = run_cli("--plugins-dir", str(plugins), "report", str(out), "--format", "html", "--output", str(page))
    assert html.returncode == 0, html.stderr
    text = page.read_text()
    assert "<h2>Methods by compression level</h2>" in text and "Friedman chi2 = " in text
    for name in ("accuracy vs level", "pareto accuracy vs macs", "pareto accuracy vs latency", "critical difference"):
        assert f"<figcaption>{name}</figcaption>" in text, name

    figures = tmp_path / "figures"
    plot = run_cli("--plugins-dir", str(plugins), "plot", str(out), "--out", str(figures))
    assert plot.returncode == 0, plot.stderr
    for name in ("accuracy_vs_level", "pareto_accuracy_vs_macs", "pareto_accuracy_vs_latency", "critical_difference"):
        assert (figures / f"{name}.png").stat().st_size > 10_000, name
    assert "skipped accuracy_vs_remaining: a comparison of methods by level" in plot.stderr
    # accuracy against the time measured in the runtime a user deploys with; one it was not timed in is refused
    onnx = run_cli("--plugins-dir", str(plugins), "plot", str(out), "--out", str(tmp_path / "onnx"),
                   "--runtime", "onnxruntime")
    assert onnx.returncode == 0, onnx.stderr
    assert (tmp_path / "onnx" / "pareto_accuracy_vs_latency.png").read_bytes() != \
        (figures / "pareto_accuracy_vs_latency.png").read_bytes()
    refused = run_cli("--plugins-dir", str(plugins), "plot", str(out), "--runtime", "compile")
    assert refused.returncode != 0 and len(refused.stderr.strip().splitlines()) == 1
    assert "--runtime compile: no finished run" in refused.stderr and "eager, onnxruntime" in refused.stderr


class _Plugin:
    """A plugin object with one scorer, for the registry of the suite-loading test."""

    @staticmethod
    @hookimpl
    def register_scorers(register):
        register("mean-abs", lambda: None)


def test_the_methods_suite_loads_at_both_scales_and_a_scorer_joins_its_axis():
    registry = Registry([("extra", _Plugin())], installed=False)
    quick = load_suite(registry, "methods")
    pruned = [c for c in quick.cells if c.prune is not None]
    assert len({c.config_hash for c in quick.cells}) == 81 and quick.seeds == [0, 1, 2]
    scorers = {c.prune.scorer.id for c in pruned}
    assert {"gstbench:snip", "gstbench:grasp", "gstbench:synflow", "gstbench:random"} <= scorers
    assert "gstbench:hrank" not in scorers  # 2-D maps only: MNIST-1D's signals are refused
    assert {c.prune.effector.id for c in pruned} == {"gstbench:mask", "gstbench:soft"}
    assert {c.train.regularizer.id for c in pruned if c.train.regularizer} == {"gstbench:l1-bn-gamma"}
    assert len(load_suite(registry, "methods", overrides={"prune.scorer": "l2"}).cells) == len(quick.cells)
    joined = load_suite(registry, "methods", overrides={"prune.scorer": "extra:mean-abs"})
    assert len({c.config_hash for c in joined.cells}) == 81 + 8  # 4 levels x 2 regimes more
    assert joined.axes["prune.scorer"][-1] == "extra:mean-abs"
    paper = load_suite(registry, "methods", scale="paper", placeholders=True)
    assert {c.model.id for c in paper.cells} == {"gstbench:resnet56"}
    assert len({c.config_hash for c in paper.cells}) == 89
    assert "gstbench:hrank" in {c.prune.scorer.id for c in paper.cells if c.prune is not None}
