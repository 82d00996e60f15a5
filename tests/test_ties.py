"""Scores that tie never fall to index order: the engine breaks ties by a draw from the cell's seed, records the
share tied at each event, and the leaderboard flags a scorer that ties on most units."""

from __future__ import annotations

import json

import torch

from gstbench.engine import run_cell
from gstbench.engine.pruner import decided_by_draw, tied_count
from gstbench.plan.parse import cell_from_config
from gstbench.plugins import Registry, hookimpl
from gstbench.testing.forkserver import run_gstbench

from conftest import changed

TINY = {
    "model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
    "dataset": {"name": "mnist1d", "num_samples": 400, "train_split": 0.5},
    "train": {"epochs": 3, "batch_size": 64, "milestones": ["2ep"]},
    "prune": {"scorer": "flat:constant", "target": "smallest", "effector": "mask", "start": "1ep", "end": "2ep",
              "period": "1ep", "layers": {"conv2": {"fraction": 0.5}, "conv3": {"fraction": 0.25}}},
}

TRANSFORMER = {
    "model": {"name": "transformer", "dim": 32, "depth": 1, "heads": 4, "head_dim": 8, "hidden": 64, "patch": 4},
    "dataset": {"name": "mnist1d", "num_samples": 400, "train_split": 0.5},
    "train": {"epochs": 1, "batch_size": 64},
}


class ConstantScorer:
    """Every unit scores the same: a ranking can only come from how ties are broken."""

    def score(self, layer, ctx):
        return torch.ones(layer.alive.shape)


class _Flat:
    @staticmethod
    @hookimpl
    def register_scorers(register):
        register("constant", ConstantScorer)


def _pruned(result) -> dict[str, list[int]]:
    return {name: [i for e in result.events for i in e.layers[name].pruned] for name in ("conv2", "conv3")}


def test_tied_scores_are_pruned_in_an_order_drawn_from_the_seed_not_by_index():
    registry = Registry([("flat", _Flat())])
    first = run_cell(cell_from_config(TINY, 0, registry), registry)
    assert first.status == "ok", first.traceback
    again = run_cell(cell_from_config(TINY, 0, registry), registry)
    other = run_cell(cell_from_config(TINY, 1, registry), registry)
    picks = _pruned(first)
    assert picks == _pruned(again)  # the same seed draws the same order
    assert picks != _pruned(other)  # another seed another
    assert sorted(picks["conv2"]) != list(range(8))  # not the lowest indices
    assert all(e.tied == 1.0 for e in first.events)


def test_untied_scores_record_no_ties_and_keep_their_ranking():
    registry = Registry([("flat", _Flat())])
    result = run_cell(cell_from_config(changed(TINY, prune__scorer="l2"), 0, registry), registry)
    assert result.status == "ok", result.traceback
    assert all(e.tied == 0.0 for e in result.events)


def test_tied_count_counts_every_unit_that_shares_its_score():
    assert tied_count(torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0, 2.0])) == 5
    assert tied_count(torch.tensor([0.1, 0.2, 0.3])) == 0


def test_only_ties_across_the_cut_count_as_decided_by_the_draw():
    scores = torch.tensor([0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 3.0])
    alive = torch.ones(7, dtype=torch.bool)
    assert decided_by_draw(scores, alive, torch.tensor([0, 1])) == 0  # the pair of zeros wholly picked
    assert decided_by_draw(scores, alive, torch.tensor([0, 1, 2, 3])) == 3  # one of three 2.0s: the draw chose it
    assert decided_by_draw(scores, alive, torch.tensor([0])) == 2
    dead = alive.clone()
    dead[5] = False  # a dead unit's score is no candidate: the 2.0s alive are 3 and 4
    assert decided_by_draw(scores, dead, torch.tensor([0, 1, 2, 3])) == 2


def test_a_per_output_comparison_records_no_ties_where_its_rows_divide():
    """Per-output ranks tie across rows by construction; 25% of a 32-wide row is whole ranks: nothing drawn."""
    config = {**TRANSFORMER, "prune": {"scorer": {"name": "magnitude", "compare": "output"}, "target": "smallest",
                                       "effector": "mask", "rounds": 1, "fraction": 0.25, "granularity": "weights",
                                       "layers": ["blocks.0.attn.q", "blocks.0.mlp.fc1"]},
              "rewind": "finetune@0"}
    result = run_cell(cell_from_config(config, 0, Registry()), Registry())
    assert result.status == "ok", result.traceback
    assert [e.tied for e in result.events] == [0.0]


def test_the_leaderboard_flags_a_scorer_that_ties_on_most_units(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "flat.py").write_text('''"""A scorer that ties everywhere."""
import torch
from gstbench import hookimpl


class Constant:
    def score(self, layer, ctx):
        return torch.ones(layer.alive.shape)


@hookimpl
def register_scorers(register):
    register("constant", Constant)
''')
    out = tmp_path / "run"
    proc = run_gstbench("--plugins-dir", str(plugins), "run", "--suite", "smoke", "--scorer", "flat:constant",
                        "--seeds", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "ties: constant" in proc.stdout and "100% of the alive units" in proc.stdout
    report = json.loads(run_gstbench("--plugins-dir", str(plugins), "report", str(out), "--json").stdout)
    tied = [r["tied"] for r in report["rows"] if r["tied"] is not None]
    assert tied and all(t == 1.0 for t in tied)
