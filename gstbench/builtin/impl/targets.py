"""What the built-in targets build: rank and random selection of alive units.

Registered, with their options, in gstbench/builtin/targets.py; imported only when a cell builds one.
"""

from __future__ import annotations

import torch



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
