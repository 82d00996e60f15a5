"""A cell's identity is pinned: the same config always hashes the same, new options do not move it."""

from __future__ import annotations

import dataclasses

import pytest

from gstbench.plan.config import ADDED_LATER, CellSpec, spec_from_canonical
from gstbench.plan.parse import cell_from_config

BASE = {
    "model": "cnn1d",
    "dataset": {"name": "mnist1d", "train_split": 0.15},
    "train": {"epochs": 40, "milestones": ["30ep"]},
    "prune": {"scorer": "activation-l1", "target": "largest", "effector": "mask", "start": "3ep", "end": "25ep",
              "period": "2ep", "layers": {"conv2": {"fraction": 0.5}, "conv3": {"fraction": 0.5}}},
}

# Changing one of these means every stored result is recomputed: do it only on purpose.
PINNED = {
    "pruned": "e458aa4ac342752f5ef9c635ecacf73c7b43fbf5cf679892d715ec306cab9d71",
    "unpruned": "70377ab66de2fb09ce8fe0016228174a2f6feeecf698e95fc8176b647caf83cc",
    "sgd": "d75fe6bc3e8f83f6c9455a65648fe02583346e0e89cc1fe23e1c00320bfaf9cb",
}


def spec(registry, **overrides) -> CellSpec:
    cfg = {**BASE, **overrides}
    return cell_from_config(cfg, 0, registry)


def test_pinned_hashes(registry):
    assert spec(registry).hash == PINNED["pruned"]
    assert spec(registry, prune=False).hash == PINNED["unpruned"]
    assert spec(registry, train={"optimizer": "sgd", "lr": 0.1, "epochs": 5}).hash == PINNED["sgd"]


def test_defaults_written_or_not_give_the_same_cell(registry):
    explicit = {**BASE, "train": {**BASE["train"], "optimizer": "adam", "lr": 0.001, "batch_size": 128},
                "rewind": "none", "metrics": []}
    explicit["prune"] = {**BASE["prune"], "scorer": {"name": "activation-l1", "momentum": 0.1, "every": 10}}
    assert cell_from_config(explicit, 0, registry).hash == spec(registry).hash


def test_full_ids_and_bare_names_give_the_same_cell(registry):
    full = {**BASE, "model": "gstbench:cnn1d"}
    assert cell_from_config(full, 0, registry).hash == spec(registry).hash


def test_a_new_option_with_a_default_keeps_old_hashes(registry):
    old = spec(registry)
    Extended = dataclasses.make_dataclass(
        "Extended", [("label_smoothing", float, dataclasses.field(default=0.0, metadata=ADDED_LATER))],
        bases=(CellSpec,), frozen=True)
    new = Extended(**{f.name: getattr(old, f.name) for f in dataclasses.fields(CellSpec)})
    assert new.hash == old.hash
    changed = Extended(**{f.name: getattr(old, f.name) for f in dataclasses.fields(CellSpec)}, label_smoothing=0.1)
    assert changed.hash != old.hash


@pytest.mark.parametrize("change", [
    {"seed": 1},
    {"train": {"epochs": 41, "milestones": ["30ep"]}},
    {"prune": {**BASE["prune"], "target": "smallest"}},
    {"prune": {**BASE["prune"], "scorer": {"name": "activation-l1", "every": 5}}},
])
def test_any_change_that_matters_changes_the_hash(registry, change):
    seed = change.pop("seed", 0)
    assert cell_from_config({**BASE, **change}, seed, registry).hash != spec(registry).hash


def test_stored_spec_round_trips(registry):
    for s in (spec(registry), spec(registry, prune=False)):
        assert spec_from_canonical(s.canonical()).hash == s.hash
