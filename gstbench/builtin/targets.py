"""Built-in targets: which alive units are hit (Prune_S, Prune_L, Prune_R of the paper)."""

from __future__ import annotations

import torch

from gstbench.plugins import hookimpl


class RankTarget:
    def __init__(self, largest: bool):
        self.largest = largest

    def select(self, scores, alive, count, generator):
        candidates = alive.nonzero().flatten()
        order = torch.argsort(scores[candidates], descending=self.largest, stable=True)
        return candidates[order[:count]]


class RandomTarget:
    def select(self, scores, alive, count, generator):
        candidates = alive.nonzero().flatten()
        return candidates[torch.randperm(candidates.numel(), generator=generator)[:count]]


def smallest():
    """The lowest-scored alive units (Prune_S)."""
    return RankTarget(largest=False)


def largest():
    """The highest-scored alive units (Prune_L)."""
    return RankTarget(largest=True)


def random():
    """Random alive units, ignoring scores (Prune_R), from the cell's seeded generator."""
    return RandomTarget()


@hookimpl
def register_targets(register):
    register("smallest", smallest)
    register("largest", largest)
    register("random", random)
