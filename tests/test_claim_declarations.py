"""Suite files: bad claim declarations are refused before training (file, key, closest name); seeds as ranges."""

from __future__ import annotations

import json
import re

import pytest

from gstbench.errors import SpecError
from gstbench.plan.suite import load_suite

from conftest import DATA, run_cli

TINY = (DATA / "tiny.toml").read_text()
CLAIMS = "\n" + (DATA / "tiny_claims.toml").read_text()


def write(tmp_path, text):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def test_declared_claims_and_groups_load_and_reach_suite_json(registry, tmp_path):
    suite = load_suite(registry, str(write(tmp_path, TINY + CLAIMS)))
    assert [c["id"] for c in suite.claims] == ["targets", "tradeoff"]
    assert suite.summary()["claims"][1]["tests"][0]["statistic"] == ["pearson"]
    assert suite.summary()["groups"] == {"small": {"prune.target": ["smallest"]},
                                         "large": {"prune.target": ["largest"]}}


@pytest.mark.parametrize("old,new,key,fragment", [
    ('kind = "order"', 'kind = "ordre"', "claims[0] (targets).test.kind", "not a test kind (did you mean: order"),
    ('sign = "negative"', 'sign = "negativ"', "claims[1] (tradeoff).test.sign", "(did you mean: negative"),
    ('groups = ["large", "small"]', 'groups = ["larg", "small"]', "claims[0] (targets).test.groups[0]",
     "unknown group 'larg' (did you mean: large"),
    ('small = { "prune.target" = "smallest" }', 'small = { "prune.target" = "smalest" }',
     "claims[0] (targets).test.groups[1]", "group 'small' matches no configuration"),
    ('y = "best_test_acc"', 'y = "best_test_ac"', "claims[1] (tradeoff).test.y",
     "unknown metric 'best_test_ac' (did you mean: best_test_acc"),
    ('within = "prune.period"', 'within = "prune.perod"', "claims[0] (targets).test.within",
     "no configuration of this suite has a value at 'prune.perod'"),
    ('metric = "stability", groups', 'metrc = "stability", groups', "claims[0] (targets).test.metrc",
     "unknown key 'metrc' for a order test (did you mean: metric"),
    ('id = "tradeoff"', 'id = "targets"', "claims[1].id", "declared twice"),
    ('statement = "lower stability, higher accuracy"\n', '', "claims[1].statement", "missing key 'statement'"),
    ('source = "GST Fig. 2"', 'sorce = "GST Fig. 2"', "claims[0].sorce", "(did you mean: source"),
    ('large = { "prune.target" = "largest" }', 'pruned = { "prune.target" = "largest" }', "groups.pruned",
     "built-in group"),
    ("effect_of_interest = 0.01", "effect_of_interest = -0.01", "claims[0].effect_of_interest",
     "does not have the claimed direction (positive)"),
    ('effect_reason = "1 point of stability"\n', "", "claims[0].effect_reason", "needs its reason"),
    ("effect_of_interest = 0.01", "effect_of_interest = 0.01\npaper_effect = 0.02", "claims[0].effect_of_interest",
     "not both"),
    ("effect_of_interest = 0.01", 'effect_of_interest = "one point"', "claims[0].effect_of_interest",
     "'one point' is not a number"),
    ('statement = "lower stability, higher accuracy"', 'statement = "lower stability, higher accuracy"\n'
     'paper_effect = -1.2', "claims[1].paper_effect", "not a correlation"),
    ('statement = "lower stability, higher accuracy"', 'statement = "lower stability, higher accuracy"\n'
     'effect_reason = "why"', "claims[1].effect_reason", "goes with paper_effect or effect_of_interest"),
    ('sign = "negative" }', 'sign = "negative", paper_effect = 0.4 }', "claims[1] (tradeoff).test.paper_effect",
     "does not have the claimed direction (negative)"),
])
def test_a_bad_claim_is_refused_naming_file_and_key(registry, tmp_path, old, new, key, fragment):
    text = TINY + CLAIMS
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(SpecError) as err:
        load_suite(registry, str(path))
    assert err.value.source == str(path) and err.value.key == key, str(err.value)
    assert fragment in err.value.message


def test_a_scale_replaces_groups_but_not_claims(registry, tmp_path):
    text = TINY.replace("[scales.quick]", "[scales.quick]\n[scales.quick.groups]\nsmall = { \"prune.target\" = "
                                          "\"largest\" }") + CLAIMS
    suite = load_suite(registry, str(write(tmp_path, text)))
    assert suite.groups["small"] == {"prune.target": ["largest"]}
    with pytest.raises(SpecError, match="unknown key 'claims'") as err:
        load_suite(registry, str(write(tmp_path, TINY.replace("[scales.quick]", "[scales.quick]\nclaims = []"))))
    assert err.value.key == "scales.quick.claims"


def test_the_cli_refuses_a_bad_claim_before_any_training(tmp_path):
    path = write(tmp_path, (TINY + CLAIMS).replace('kind = "order"', 'kind = "ordre"'))
    proc = run_cli("run", "--suite", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(r"in .*suite\.toml, at key 'claims\[0\] \(targets\)\.test\.kind'.*did you mean: order",
                     proc.stderr)
    assert not (tmp_path / "out").exists()


def test_a_seed_range_or_list_gives_the_same_cells_as_the_count(registry, tmp_path):
    by_count = {c.hash for c in load_suite(registry, "tradeoff", seeds=5).cells}
    assert {c.hash for c in load_suite(registry, "tradeoff", seeds="0-4").cells} == by_count
    fresh = load_suite(registry, "tradeoff", seeds="100-104")
    assert sorted({c.seed for c in fresh.cells}) == [100, 101, 102, 103, 104] and not by_count & {
        c.hash for c in fresh.cells}
    listed = write(tmp_path, TINY.replace("seeds = 2", "seeds = [100, 101]"))
    ranged = tmp_path / "ranged.toml"
    ranged.write_text(TINY.replace("seeds = 2", 'seeds = "100-101"'))
    a, b = load_suite(registry, str(listed)), load_suite(registry, str(ranged))
    assert a.seeds == b.seeds == [100, 101] and {c.hash for c in a.cells} == {c.hash for c in b.cells}
    # seed 100 of the list is the cell that `--seeds 100-104` makes
    assert {c.hash for c in load_suite(registry, str(listed), seeds="100-100").cells} <= {c.hash for c in a.cells}


@pytest.mark.parametrize("value,fragment", [
    ('"104-100"', "is not a seed range"), ("[1, 1]", "repeats a seed"), ("0", "must be a count >= 1"),
    ('"a-b"', "is not a seed range"), ("[1, -2]", "-2 in [1, -2] is not a seed"),
])
def test_bad_seeds_are_refused(registry, tmp_path, value, fragment):
    path = write(tmp_path, TINY.replace("seeds = 2", f"seeds = {value}"))
    with pytest.raises(SpecError, match=re.escape(fragment)) as err:
        load_suite(registry, str(path))
    assert err.value.key == "seeds"


def test_the_cli_takes_a_seed_range():
    shown = run_cli("suites", "show", "tradeoff", "--seeds", "100-104", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["seeds"] == [100, 101, 102, 103, 104]
    bad = run_cli("suites", "show", "tradeoff", "--seeds", "5-1")
    assert bad.returncode == 2 and "Invalid value for '--seeds'" in bad.stderr and "Traceback" not in bad.stderr
