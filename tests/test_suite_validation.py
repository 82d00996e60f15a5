"""Bad suite files are refused before any training, naming the file, key and value."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gstbench.errors import GstbenchError, SpecError
from gstbench.plan.suite import load_suite

from conftest import DATA, run_cli

TINY = (DATA / "tiny.toml").read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_the_tiny_and_builtin_suites_expand(registry):
    tiny = load_suite(registry, str(DATA / "tiny.toml"))
    assert len(tiny.cells) == (2 + 1) * 2
    tradeoff = load_suite(registry, "tradeoff")
    assert tradeoff.summary()["configurations"] == 7 and len(tradeoff.cells) == 49
    assert len({c.hash for c in tradeoff.cells}) == 49


@pytest.mark.parametrize("old,new,key,fragment", [
    ("epochs = 3", "epochs = 3\nepoch = 4", "train.epoch", "unknown key 'epoch' (did you mean: epochs"),
    ("epochs = 3", "epochs = -3", "train.epochs", "-3 must be >= 0 (0: the network at initialization, never trained)"),
    ("epochs = 3", 'epochs = "three"', "train.epochs", "'three' is not a whole number"),
    ('scorer = "l2"', 'scorer = "l3"', "prune.scorer", "unknown scorer 'l3' (did you mean: l2"),
    ('["smallest", "largest"]', '["smallest", "largets"]', "prune.target", "unknown target 'largets' (did you mean: largest"),
    ("fraction = 0.5\n\n[base.prune.layers.conv3]", "fraction = 1.5\n\n[base.prune.layers.conv3]",
     "prune.layers.conv2.fraction", "1.5 must be in (0, 1)"),
    ('period = "1ep"', 'period = "1 epoch"', "prune.period", "'1 epoch' is not a step count"),
    ("[base.prune.layers.conv3]", "[base.prune.layers.conv9]", "prune.layers.conv9",
     "has no prunable layer 'conv9'"),
    ('"prune.target" = ["smallest", "largest"]', '"prune.target" = []', "axes.prune.target", "non-empty list"),
    ("seeds = 2", "seed = 2", "seed", "unknown key 'seed' (did you mean: seeds"),
    ('dataset = { name = "mnist1d"', 'dataset = { name = "mnist1d", samples = 3', "dataset.samples",
     "has no option 'samples'"),
])
def test_bad_values_name_file_key_and_value(registry, tmp_path, old, new, key, fragment):
    assert old in TINY
    path = write(tmp_path, TINY.replace(old, new, 1))
    with pytest.raises(SpecError) as err:
        load_suite(registry, str(path))
    message = str(err.value)
    assert str(path) in message and f"at key '{key}'" in message and fragment in message


def test_remove_on_a_residual_sum_is_refused_before_training(registry, tmp_path):
    text = (TINY.replace('name = "cnn1d", channels = [8, 16, 16, 16]', 'name = "resnet1d", channels = [8, 16]')
            .replace("layers.conv2]", 'layers."layer1.1.conv2"]').replace("layers.conv3]", 'layers."layer2.1.conv1"]')
            .replace('effector = "mask"', 'effector = "remove"'))
    with pytest.raises(SpecError, match=re.escape("at key 'prune.layers.layer1.1.conv2'") + ".*residual"):
        load_suite(registry, str(write(tmp_path, text)))


def test_a_scale_marked_unavailable_says_why(registry, tmp_path):
    text = TINY + '\n[scales.paper]\nunavailable = "it needs the lab\'s own data"\n'
    with pytest.raises(GstbenchError, match="scale 'paper' of suite 'tiny' is not available yet: it needs the "
                                            "lab's own data"):
        load_suite(registry, str(write(tmp_path, text)), scale="paper")


def test_cli_refuses_a_bad_suite_without_training_and_without_traceback(tmp_path):
    path = write(tmp_path, TINY.replace('scorer = "l2"', 'scorer = "l3"'))
    out = tmp_path / "out"
    proc = run_cli("run", "--suite", str(path), "--out", str(out))
    assert proc.returncode == 2
    assert f"Error: in {path}, at key 'prune.scorer': unknown scorer 'l3'" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    unknown = run_cli("run", "--suite", "tradof")
    assert unknown.returncode == 2 and "did you mean: tradeoff" in unknown.stderr


def test_a_scorer_override_replaces_the_scorer_of_every_pruned_configuration(registry):
    suite = load_suite(registry, str(DATA / "tiny.toml"), overrides={"prune.scorer": "random"})
    pruned = [c for c in suite.cells if c.prune is not None]
    assert len(pruned) == 4 and {c.prune.scorer.id for c in pruned} == {"gstbench:random"}
    assert len(suite.cells) == 6
    with pytest.raises(GstbenchError, match="^--scorer sniq: unknown scorer 'sniq'"):  # the flag's, not the file's
        load_suite(registry, str(DATA / "tiny.toml"), overrides={"prune.scorer": "sniq"})


def test_permanence_extends_the_tradeoff_base(registry):
    tradeoff = load_suite(registry, "tradeoff")
    permanence = load_suite(registry, "permanence")
    assert len(permanence.cells) == (3 * 8 + 1) * 3
    reference = next(c for c in tradeoff.cells if c.prune is not None)
    for cell in permanence.cells:
        assert (cell.model, cell.dataset, cell.train) == (reference.model, reference.dataset, reference.train)
        if cell.prune is not None:
            assert [name for name, _ in cell.prune.layers] == ["conv3", "conv4"]
            assert {s.period for _, s in cell.prune.layers} == {"5ep"}  # the tradeoff's high rate
    effectors = {c.prune.effector.label for c in permanence.cells if c.prune is not None}
    # one and four epochs of 24 steps, as the paper scale's 391 and 1564
    assert effectors == {"mask", "remove", "zero(steps=24)", "zero(steps=96)", "zero(restore=True,steps=24)",
                         "zero(restore=True,steps=96)", "noise(steps=24)", "noise(steps=96)"}


@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_flatness_measures_the_tradeoff_matrix(registry, scale):
    """The flatness suite adds metrics to the tradeoff's cells; the two matrices cannot drift apart."""
    import dataclasses

    tradeoff = load_suite(registry, "tradeoff", scale=scale, placeholders=True)
    flatness = load_suite(registry, "flatness", scale=scale, placeholders=True)
    assert {dataclasses.replace(c, metrics=()).config_hash for c in flatness.cells} == {
        c.config_hash for c in tradeoff.cells}
    assert flatness.seeds == tradeoff.seeds


def test_extends_inherits_the_matrix_seeds_scales_and_claims_and_overrides_what_it_restates(registry, tmp_path):
    tradeoff = load_suite(registry, "tradeoff")
    child = tmp_path / "my-tradeoff.toml"
    child.write_text('name = "my-tradeoff"\nextends = "tradeoff"\n[base.train]\nlr = 5e-4\n')
    mine = load_suite(registry, str(child))
    assert (mine.seeds, mine.axes, mine.scales) == (tradeoff.seeds, tradeoff.axes, tradeoff.scales)
    assert [c["id"] for c in mine.claims] == [c["id"] for c in tradeoff.claims] and mine.groups == tradeoff.groups
    assert len(mine.cells) == len(tradeoff.cells) and {c.train.lr for c in mine.cells} == {5e-4}
    assert mine.rank == tradeoff.rank and mine.question == tradeoff.question
    # an axis restated replaces that axis; one restated as [] is dropped; seeds and claims restated replace
    child.write_text('extends = "tradeoff"\nseeds = 2\nclaims = []\n[axes]\n"prune.period" = []\n'
                     '"prune.target" = ["smallest", "largest"]\n')
    mine = load_suite(registry, str(child))
    assert mine.axes == {"prune.target": ["smallest", "largest"]} and mine.seeds == [0, 1] and mine.claims == []
    assert len(mine.cells) == (2 + 1) * 2  # two targets, the inherited unpruned include, two seeds
    paper = load_suite(registry, str(child), scale="paper", placeholders=True)
    assert paper.axes == {"prune.target": ["smallest", "largest"]}  # the paper scale's own periods: dropped too
    # [] names nothing to drop in a suite that extends none: still refused
    (tmp_path / "alone.toml").write_text(TINY.replace('"prune.target" = ["smallest", "largest"]',
                                                      '"prune.target" = []'))
    with pytest.raises(SpecError, match="non-empty list"):
        load_suite(registry, str(tmp_path / "alone.toml"))


def test_suites_show_prints_an_extending_files_resolved_matrix(tmp_path):
    child = tmp_path / "my-tradeoff.toml"
    child.write_text('name = "my-tradeoff"\nextends = "tradeoff"\n[axes]\n"prune.scorer" = ["l2", "bn-gamma"]\n')
    proc = run_cli("suites", "show", str(child), "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["cells"] == 2 * 3 * 2 * 7 + 7  # scorers x targets x periods x seeds, and the unpruned


def test_extends_names_a_missing_or_circular_parent(registry, tmp_path):
    path = write(tmp_path, 'extends = "tradof"\n' + TINY)
    with pytest.raises(SpecError, match="at key 'extends': cannot extend 'tradof'.*did you mean: tradeoff"):
        load_suite(registry, str(path))
    path.write_text('extends = "suite.toml"\n' + TINY)  # relative to the file, not the working directory
    with pytest.raises(SpecError, match="extends itself"):
        load_suite(registry, str(path))
    (tmp_path / "child.toml").write_text('extends = "suite.toml"\n[scales.quick]\n')
    path.write_text(TINY)
    child = load_suite(registry, str(tmp_path / "child.toml"))
    assert child.cells[0].model == load_suite(registry, str(path)).cells[0].model


def test_rate_sweeps_the_number_of_events_at_fixed_total_pruning(registry):
    from gstbench.plan.schedule import build_schedule

    suite = load_suite(registry, "rate")
    assert len(suite.cells) == (3 * 7 + 1) * 3
    counts = {}
    for cell in suite.cells:
        if cell.prune is None:
            continue
        events = build_schedule(cell.prune, {"conv3": 64, "conv4": 256}, steps_per_epoch=24, total_steps=1080)
        removed = {layer: sum(c.count for cuts in events.values() for c in cuts if c.layer == layer)
                   for layer in ("conv3", "conv4")}
        assert removed == {"conv3": 19, "conv4": 230}  # the same total at every rate: 30% of 64 and 90% of 256
        counts[cell.prune.layers[0][1].period] = [sum(1 for cuts in events.values() for c in cuts if c.layer == layer)
                                                  for layer in ("conv3", "conv4")]
    # in the axis's order (the rate's); the paper's conv5 / conv8: 37/68, 8/14, 4/7, 3/5, 2/3, 1/2, 1/1
    assert list(counts.values()) == [[17, 34], [6, 12], [4, 7], [3, 5], [2, 3], [1, 2], [1, 1]]


def test_stats_welch_difference_matches_scipy():
    from scipy import stats as sps

    from gstbench.reports.stats import welch_difference

    a, b = [0.91, 0.92, 0.93, 0.90], [0.94, 0.95, 0.93]
    d = welch_difference(a, b)
    assert d["diff"] == pytest.approx(sum(b) / 3 - sum(a) / 4)
    assert d["p"] == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue)
    ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert (d["low"], d["high"]) == pytest.approx((ci.low, ci.high))
    assert welch_difference([0.9], b)["p"] is None and "fewer than 2" in welch_difference([0.9], b)["note"]


def test_a_leaderboard_question_needs_groups(tmp_path, registry):
    path = tmp_path / "q.toml"
    path.write_text('extends = "tradeoff"\n[leaderboard]\nquestion = "why?"\n[scales.quick]\n')
    with pytest.raises(SpecError, match="needs \\[leaderboard.groups\\]") as err:
        load_suite(registry, str(path))
    assert err.value.key == "leaderboard.question"


def test_a_directory_named_like_a_suite_does_not_hide_it(tmp_path, registry, monkeypatch):
    (tmp_path / "rate").mkdir()  # e.g. the result directory of `gstbench run --suite rate --out rate`
    monkeypatch.chdir(tmp_path)
    assert load_suite(registry, "rate").name == "rate"
    with pytest.raises(GstbenchError, match="does not exist"):
        load_suite(registry, "missing.toml")


def test_a_key_with_a_newline_in_it_is_refused_in_one_line(registry, tmp_path):
    """TOML allows any quoted key; the refusal writes it back escaped (the suite-file fuzz found one that broke
    the line)."""
    path = tmp_path / "nl.toml"
    path.write_text((DATA / "tiny.toml").read_text().replace("[base]", '[base]\n"bad\\nkey" = 1', 1))
    with pytest.raises(SpecError) as caught:
        load_suite(registry, str(path))
    assert "\n" not in str(caught.value) and "bad\\nkey" in str(caught.value), str(caught.value)
