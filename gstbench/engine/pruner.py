"""The pruner: one cell's scorer, target and effector over its layers, and what a pruning event does.

An event, for every layer scheduled at that step: evaluate test accuracy (t_pre) -> score
-> select -> apply the effector; then evaluate again (t_post).
instability = (t_pre - t_post) / t_pre.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import torch

from gstbench.store.cell_result import LayerPruned, PruningEvent
from gstbench.components import SOFT, TEMPORARY, LayerState, PruningContext, scores_fault
from gstbench.engine.loop import Hooks
from gstbench.pruning import layer_states
from gstbench.plan.schedule import LayerCut, build_schedule
from gstbench.engine.state import Cell

GLOBAL = "*"  # the layer name of a cut ranked over all pruned layers at once


class Pruner:
    """Scores, selects and applies one cell's pruning; keeps the per-layer state."""

    def __init__(self, cell: Cell, ctx: PruningContext):
        prune, registry = cell.spec.prune, cell.registry
        self.prune, self.ctx, self.timing = prune, ctx, cell.timing
        effector_comp = registry.component("effectors", prune.effector)
        self.temporary = TEMPORARY in effector_comp.capabilities
        self.soft = SOFT in effector_comp.capabilities  # soft filter pruning: each event picks anew
        self.layers = layer_states(ctx.model, [name for name, _ in prune.layers], prune.granularity)
        self.scorer = registry.build("scorers", prune.scorer)
        self.target = registry.build("targets", prune.target)
        self.effector = registry.build("effectors", prune.effector)
        if hasattr(self.scorer, "attach"):
            self.scorer.attach(ctx, self.layers)
        self.before_batch = getattr(self.scorer, "before_train_batch", None)
        self.after_step = getattr(self.effector, "after_step", None)
        self.observes_training = hasattr(self.scorer, "attach") or self.before_batch is not None

    def hooks(self, events: dict[int, list] | None = None,
              on_event: Callable[[int, int], None] | None = None) -> Hooks:
        """What the training loop calls for this pruner: its scorer's and effector's per-step work, and events."""
        return Hooks(events or {}, on_event, self.before_batch, self.after_step)

    def schedule(self, steps_per_epoch: int, total_steps: int) -> dict[int, list[LayerCut]]:
        return build_schedule(self.prune, {n: s.n_original for n, s in self.layers.items()},
                              steps_per_epoch, total_steps)

    def round_cuts(self) -> list[LayerCut]:
        """A round cuts ``fraction`` of what remains (rounded up, as OpenLTH), per layer or over all."""
        fractions = dict(self.prune.layers)
        if self.prune.scope == "global":
            alive = sum(s.n_alive for s in self.layers.values())
            total = math.ceil(round(fractions[next(iter(self.layers))].fraction * alive, 9))
            return [LayerCut(GLOBAL, total, 1, 1)]
        return [LayerCut(n, math.ceil(round(fractions[n].fraction * s.n_alive, 9)), 1, 1)
                for n, s in self.layers.items()]

    def state_dict(self) -> dict[str, Any]:
        """The pruning state a checkpoint keeps: each layer's units, the generator, and the components' own."""
        state: dict[str, Any] = {
            "layers": {n: {"alive": s.alive.clone(), "original_index": s.original_index.clone()}
                       for n, s in self.layers.items()},
            "generator": self.ctx.generator.get_state(), "step": self.ctx.step}
        for role in ("scorer", "target", "effector"):
            component_state = getattr(getattr(self, role), "state_dict", None)
            if component_state is not None:
                state[role] = component_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Bring a fresh pruner (and its fresh model) to ``state``, before the model's weights are loaded.

        An effector without state of its own (mask, remove) is applied again to the units it
        pruned, which rebuilds its masks or the model's pruned shapes; one with state
        (temporary effectors) loads it instead.
        """
        replay = not hasattr(self.effector, "load_state_dict")
        for name, saved in state["layers"].items():
            layer = self.layers[name]
            if replay:
                gone = torch.ones(layer.n_physical, dtype=torch.bool)
                gone[saved["original_index"]] = False  # fresh layers index units by their original number
                if gone.any():
                    apply_effector(self.effector, layer, gone.nonzero().flatten(), self.ctx, self.scorer)
                dead = (~saved["alive"]).flatten().nonzero().flatten()
                if dead.numel():
                    apply_effector(self.effector, layer, dead, self.ctx, self.scorer)
            layer.alive, layer.original_index = saved["alive"].clone(), saved["original_index"].clone()
        self.ctx.generator.set_state(state["generator"])
        self.ctx.step = state["step"]
        for role in ("scorer", "target", "effector"):
            if role in state:
                getattr(self, role).load_state_dict(state[role], self.ctx, self.layers)

    def detach(self) -> None:
        if hasattr(self.scorer, "detach"):
            self.scorer.detach()

    def sparsity(self) -> float:
        """The pruned share of the listed layers' units."""
        original = sum(s.n_original for s in self.layers.values())
        return 1 - sum(s.n_alive for s in self.layers.values()) / original

    def unit_counts(self) -> dict[str, Any]:
        unit = ("weights" if self.prune.granularity == "weights"
                else "units" if any(s.is_group for s in self.layers.values()) else "filters")  # units: heads, neurons
        return {f"remaining_{unit}": {n: s.n_physical if self.temporary else s.n_alive
                                      for n, s in self.layers.items()},
                f"targeted_{unit}": {n: s.n_original - s.n_alive for n, s in self.layers.items()},
                "sparsity": 0.0 if self.temporary else self.sparsity()}

    def event(self, step: int, cuts: list[LayerCut], evaluate_test, epoch: int | None = None,
              round: int | None = None) -> PruningEvent:
        """t_pre -> score, select, apply for every cut -> t_post."""
        t_pre, loss_pre = evaluate_test(reuse=True)
        t0 = time.perf_counter()
        ctx = self.ctx
        ctx.step = step
        if self.prune.scope == "global":
            count = sum(c.count for c in cuts)
            cuts = [LayerCut(GLOBAL, count, cuts[0].index, cuts[0].of)]
        record: dict[str, LayerPruned] = {}
        tied, candidates = 0, 0  # over this event's rankings
        for salt, cut in enumerate(cuts):
            names = list(self.layers) if cut.layer == GLOBAL else [cut.layer]
            count = cut.count
            if self.soft:  # the soft-pruned units compete again: the event picks the whole share so far
                count += sum(self.layers[n].n_original - self.layers[n].n_alive for n in names)
                for name in names:
                    self.layers[name].alive.fill_(True)
            picks, cut_tied, cut_candidates = self._select(names, count, salt)
            tied, candidates = tied + cut_tied, candidates + cut_candidates
            for name, chosen in picks.items():
                record[name] = self._apply(self.layers[name], chosen, cut)
            if self.soft and cut.index == cut.of:  # the layer's last event: its pick stays pruned
                for name in names:
                    self.effector.harden(self.layers[name], ctx)
        self.timing.add("prune_s", time.perf_counter() - t0)
        t_post, loss_post = evaluate_test()
        instability = (t_pre - t_post) / t_pre if t_pre > 0 else 0.0
        return PruningEvent(step, t_pre, t_post, loss_pre, loss_post, instability, record, epoch=epoch, round=round,
                            tied=tied / candidates if candidates else 0.0)

    def _select(self, names: list[str], count: int, salt: int) -> tuple[dict[str, torch.Tensor], int, int]:
        """Flat physical indices per layer, one ranking over all ``names`` (a single layer, or global); and how many
        alive units tied where the draw decided (``decided_by_draw``), of how many.

        Where alive units tie on their score, the target sees them in an order drawn from the
        cell's seed, the step and ``salt`` (the cut), so a stable ranking breaks the ties at
        random instead of by index; the draw uses its own generator, leaving the cell's
        stream (random targets and scorers) as it was.
        """
        scores, alive = [], []
        for name in names:
            layer = self.layers[name]
            s = self.scorer.score(layer, self.ctx).to("cpu")
            if s.shape != layer.alive.shape:
                raise ValueError(f"scorer {self.prune.scorer.id} returned scores of shape {tuple(s.shape)} for layer "
                                 f"'{name}' with {layer.granularity} of shape {tuple(layer.alive.shape)}")
            if fault := scores_fault(s):
                raise ValueError(f"scorer {self.prune.scorer.id} returned {fault} scores for layer "
                                 f"'{name}' at step {self.ctx.step}: a scorer returns one finite float per unit "
                                 f"(dead ones included), as gstbench.testing.check_scorer checks")
            scores.append(s.flatten().float())
            alive.append(layer.alive_flat.clone())
            if len(names) > 1 and self.prune.granularity != "weights" and bool(alive[-1].any()):
                # a global ranking of units never empties a layer: its best alive unit is kept out of the list
                keep = torch.where(alive[-1], scores[-1], torch.tensor(-math.inf)).argmax()
                alive[-1][keep] = False
        scores_cat, alive_cat = torch.cat(scores), torch.cat(alive)
        count = min(count, int(alive_cat.sum()))
        if tied_count(scores_cat[alive_cat]):
            draw = torch.Generator().manual_seed((self.ctx.batch_seed * 1_000_003 + self.ctx.step) * 64 + salt)
            order = torch.randperm(scores_cat.numel(), generator=draw)
            chosen = order[self.target.select(scores_cat[order], alive_cat[order], count, self.ctx.generator)
                           .to("cpu")]
        else:
            chosen = self.target.select(scores_cat, alive_cat, count, self.ctx.generator).to("cpu")
        if chosen.numel() != count or not bool(alive_cat[chosen].all()) or chosen.unique().numel() != count:
            raise ValueError(f"target {self.prune.target.id} picked {chosen.numel()} units for {', '.join(names)}: "
                             f"needs {count} distinct alive units")
        tied = decided_by_draw(scores_cat, alive_cat, chosen)
        out, offset = {}, 0
        for name, s in zip(names, scores):
            mine = chosen[(chosen >= offset) & (chosen < offset + s.numel())] - offset
            offset += s.numel()
            if mine.numel():
                out[name] = mine
        return out, tied, int(alive_cat.sum())

    def _apply(self, layer: LayerState, chosen: torch.Tensor, cut: LayerCut) -> LayerPruned:
        original = layer.original_index[chosen].tolist()
        apply_effector(self.effector, layer, chosen, self.ctx, self.scorer)
        pruned = sorted(original) if layer.granularity == "filters" else None  # single weights would flood events.jsonl
        return LayerPruned(len(original), layer.n_alive, cut.index, cut.of, pruned)


def decided_by_draw(scores: torch.Tensor, alive: torch.Tensor, chosen: torch.Tensor) -> int:
    """How many alive units share a score with both a picked unit and a kept one: the ties the seeded draw decided.
    Ties wholly inside the pick or wholly outside it decide nothing (every row's ranks tie across rows under a
    per-output comparison, and the pick takes whole ranks where the count divides)."""
    picked = torch.zeros_like(alive)
    picked[chosen] = True
    straddling = scores[picked][torch.isin(scores[picked], scores[alive & ~picked])]
    return int(torch.isin(scores[alive], straddling).sum()) if straddling.numel() else 0


def tied_count(scores: torch.Tensor) -> int:
    """How many of ``scores`` share their value with another."""
    if scores.numel() < 2:
        return 0
    _, counts = torch.unique(scores, return_counts=True)
    return int(counts[counts > 1].sum())


def apply_effector(effector: Any, layer: LayerState, chosen: torch.Tensor, ctx: PruningContext,
                   scorer: Any = None) -> torch.Tensor | None:
    """Mark ``chosen`` dead, apply the effector, and when it changed shapes follow the surviving units
    (the layer's state, and the scorer's per-unit state through ``units_removed``)."""
    layer.alive.view(-1)[chosen] = False
    kept = effector.apply(layer, chosen, ctx)
    if kept is not None:
        layer.alive = layer.alive[kept]
        layer.original_index = layer.original_index[kept]
        if hasattr(scorer, "units_removed"):
            scorer.units_removed(layer, kept)
    return kept
