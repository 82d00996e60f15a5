"""The speed report: each network's measured against predicted speed-ups per runtime and batch at the end of
``run``, in ``report``, the HTML page and ``plot``; the sparse format's threshold on planted speed-ups."""

from __future__ import annotations

import pytest

from gstbench.plan.selection import label_at
from gstbench.store.reader import load_results

from gstbench.reports.speed_tables import threshold, threshold_text

from conftest import run_cli

TINY_SPEED = """
name = "tiny-speed"
seeds = 1
[base]
model = { name = "gstbench:cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "gstbench:mnist1d", num_samples = 200, train_split = 0.5 }
train = { epochs = 0, batch_size = 50 }
[scales.quick]
""" + "".join(f"""
[[include]]
model = {{ name = "gstbench:cnn1d", channels = [8, 16, 16, 16] }}
dataset = {{ name = "gstbench:mnist1d", num_samples = 200, train_split = 0.5 }}
prune = {{ scorer = "gstbench:{scorer}", target = "gstbench:smallest", effector = "gstbench:mask", rounds = 1, fraction = {f}, {g}layers = ["conv2", "conv3"] }}
rewind = "gstbench:finetune@0"
metrics = [{{ name = "gstbench:speed", runtimes = ["gstbench:eager", "gstbench:sparse-csr"], batch = 8, warmup = 1, repeats = 3 }}]
""" for scorer, f, g in (("l1", 0.5, ""), ("magnitude", 0.5, 'scope = "global", '),
                        ("magnitude", 0.5, 'granularity = "weights", '), ("magnitude", 0.9, 'granularity = "weights", ')))


@pytest.mark.parametrize("points, found, text", [
    ([(0.5, 0.4), (0.7, 0.9), (0.9, 1.3), (0.95, 1.5)], (0.9, 0.7), "from 90% (not at 70%)"),
    # a share that beats dense below one that does not is noise: the threshold is where it holds from on
    ([(0.5, 1.2), (0.7, 0.95), (0.9, 1.3), (0.95, 1.5)], (0.9, 0.7), "from 90% (not at 70%)"),
    ([(0.5, 0.4), (0.7, 1.05), (0.9, 1.09)], (None, 0.9), "not reached up to 90%"),  # under the 10% margin
    ([(0.5, 1.2), (0.9, 2.0), (0.7, None)], (0.5, None), "from 50% (the lowest share measured)"),
    ([(0.5, None)], (None, None), "no share measured"),
])
def test_the_threshold_is_the_lowest_share_from_which_every_measured_share_beats_dense(points, found, text):
    got = threshold(points)
    assert (got["from"], got["below"]) == found and threshold_text(got) == text


@pytest.mark.parametrize("curve, truth", [
    ({0.5: 0.5, 0.7: 0.9, 0.9: 1.5, 0.95: 1.8}, 0.9),  # beats dense from 90%
    ({0.5: 0.3, 0.7: 0.6, 0.9: 0.95, 0.95: 1.0}, None),  # never does (1.0 at 95%: within noise of the margin)
])
def test_the_threshold_finds_the_planted_one_as_often_as_timing_noise_allows(curve, truth):
    import numpy as np
    from scipy.stats import norm

    rng, draws, noise = np.random.default_rng(0), 4000, 0.05  # log-normal timer noise: the suite's spread is 3-6%
    found = [threshold([(f, s * float(np.exp(rng.normal(0, noise)))) for f, s in curve.items()])["from"]
             for _ in range(draws)]
    # right when every level from the truth on beats dense by 1.1 and the level below it does not
    levels = sorted(curve)
    first = levels.index(truth) if truth is not None else len(levels)
    beat = [norm.cdf(np.log(curve[f] / 1.1) / noise) for f in levels[first:]]
    miss = [norm.cdf(np.log(1.1 / curve[levels[first - 1]]) / noise)] if first > 0 else []
    expected = float(np.prod(beat + miss))
    observed = sum(f == truth for f in found) / draws
    assert abs(observed - expected) < 0.01 and observed > 0.95, (observed, expected)


def test_a_speed_run_prints_each_networks_measured_and_predicted_speedups_and_draws_them(tmp_path):
    suite, out = tmp_path / "speed.toml", tmp_path / "out"
    suite.write_text(TINY_SPEED)
    run = run_cli("run", "--suite", str(suite), "--out", str(out))
    assert run.returncode == 0, run.stderr
    screen = run.stdout
    assert "leaderboard" not in screen  # nothing was trained: accuracies would say nothing
    assert max(len(line) for line in screen.splitlines() if not line.startswith(f"  {out}")) <= 100  # paths whole
    assert ("cnn1d(channels=[8, 16, 16, 16]) on mnist1d: measured speed-up over the unpruned network at batch 1 / 8"
            in " ".join(screen.split()))  # the caption wrapped to the width
    lines = {line.split("  ")[0]: line.split() for line in screen.splitlines()
             if line.startswith(("filters 50%", "weights 50%", "weights 90%"))}
    assert set(lines) == {"filters 50%", "filters 50% global", "weights 50%", "weights 90%"}
    stored = {(label_at(spec, "prune.units"), float(label_at(spec, "prune.fraction")),
               " global" if spec.prune.scope == "global" else ""): result.metrics
              for spec, result in load_results(out).finished if spec.prune}
    assert len(stored) == 4
    for (units, fraction, scope), m in stored.items():  # the screen shows what was stored: predicted, then runtimes
        row = lines[f"{units} {fraction:.0%}{scope}"]
        row = row[:2] + row[3:] if scope else row
        assert row[2:5] == [f"{m[k]:.2f}" for k in ("speed_predicted", "speed_params_ratio", "speed_disk_ratio")]
        assert row[5:8] == [f"{m['speed_eager_batch1_realized']:.2f}", "/", f"{m['speed_eager_batch_realized']:.2f}"]
        if units == "weights":  # zeros in place: fewer parameters, the same file; as CSR a smaller one
            assert row[8] == f"{m['speed_sparse_csr_batch1_realized']:.2f}"
            assert m["speed_params_ratio"] > 1.1 and m["speed_disk_ratio"] == pytest.approx(1, abs=0.01)
            assert m["speed_disk_csr_ratio"] > 0
        else:  # filters removed: a smaller file
            assert m["speed_disk_ratio"] > 1.2 and "speed_disk_csr_ratio" not in m
    assert "sparse_csr beats the dense parent by 1.1x: batch 1 " in " ".join(screen.split())
    assert "not timed: semi_structured" not in screen  # not asked for: not said
    assert "with its zero-holding weights saved as CSR: weights 50%" in " ".join(screen.split())
    # run draws the figure too, and names where
    assert f"measured against predicted speed-up, drawn:\n  {out / 'plots' / 'speed_vs_macs_batch1.png'}" in screen
    assert (out / "plots" / "speed_vs_macs_serving_batch.png").stat().st_size > 10_000

    page = run_cli("report", str(out), "--format", "html", "--output", str(tmp_path / "page.html"))
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "page.html").read_text()
    assert "Speed: measured against predicted" in html and "share of the predicted speed-up delivered" in html
    drawn = run_cli("plot", str(out), "--out", str(tmp_path / "figures"))
    assert drawn.returncode == 0, drawn.stderr
    assert {p.name for p in (tmp_path / "figures").glob("*.png")} == {"speed_vs_macs_batch1.png",
                                                                        "speed_vs_macs_serving_batch.png"}
    assert "no run trained its network" in drawn.stdout + drawn.stderr
