"""Prune-retrain rounds (REFERENCE.md section 3): lottery tickets, rewinding, and data-order stability.

Round 0 trains the unpruned parent (from the parent cache when stored). Each later round
prunes a fraction of what remains, rewinds, and retrains; with data-order stability a second
copy trains from the same start with another data order, and the two are compared (lmc.py).
The cell's metrics run at the end of every round, so one cell gives a whole prune-ratio sweep.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from gstbench.store.cell_result import Curves, PruningEvent, Round
from gstbench.components import Evaluated, PruningContext, RewindContext
from gstbench.plan.seeds import REINIT, TWIN_DATA_ORDER, derived_seed
from gstbench.engine.artifacts import keep_model
from gstbench.engine.evaluation import measure
from gstbench.store.store import round_model
from gstbench.engine.lmc import linear_mode_connectivity, weight_distance
from gstbench.engine.loop import Hooks, Trained, Trainer, clone_state
from gstbench.engine.parent import independent_parent, train_parent
from gstbench.engine.pruner import Pruner
from gstbench.engine.setup import place
from gstbench.pruning import unit_weight_keys
from gstbench.engine.state import Cell


class RoundsProgress:
    """Where a prune-retrain cell is, as its checkpoint keeps it (a registered part, checkpoint.py): the curves and
    events so far, each finished round, the weights a rewind goes back to, whether round 0 came from the parent
    cache, and the parent the metrics compare with (rebuilt on load: before the RNGs, as building draws from them)."""

    def __init__(self, cell: Cell):
        self.cell = cell
        self.curves: Curves | None = None
        self.events: list[PruningEvent] = []
        self.rounds: list[Round] = []
        self.rewind_weights: dict[str, torch.Tensor] | None = None
        self.cached = False
        self.parent: Evaluated | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"curves": self.curves.to_json(), "events": [e.to_json() for e in self.events],
                "rounds": [x.to_json() for x in self.rounds], "rewind_weights": self.rewind_weights,
                "cached": self.cached, "parent_model": None if self.parent is None else self.parent.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        spec, data = self.cell.spec, self.cell.data
        self.curves = Curves.from_json(state["curves"])
        self.events = [PruningEvent.from_json(e) for e in state["events"]]
        self.rounds = [Round.from_json(x, f"round {i} of the checkpoint") for i, x in enumerate(state["rounds"])]
        self.rewind_weights, self.cached = state["rewind_weights"], state["cached"]
        self.parent = None
        if state["parent_model"] is not None:
            self.parent = Evaluated(place(self.cell.registry.build_model(spec.model, data), data.x_train.device))
            self.parent.model.load_state_dict(state["parent_model"])


def run_rounds(cell: Cell, trainer: Trainer, pruner: Pruner, ctx: PruningContext, data_seed: int,
               needs_parent: bool) -> Trained:
    """Train; then R times: prune a fraction of what remains, rewind, retrain.

    With the cell's checkpoints on (``train.checkpoint_every`` > 0) the state after every
    round is saved, and a killed cell goes on with the next round.
    """
    spec, registry, data = cell.spec, cell.registry, cell.data
    prune, model = spec.prune, trainer.model
    rewind = registry.build("rewinds", spec.rewind)
    k = rewind.checkpoint_step(trainer.steps_per_epoch, trainer.total_steps)
    fork = k if k is not None else 0  # where round 0's second copy starts
    twin_seed = derived_seed(spec.seed, TWIN_DATA_ORDER)
    independent = independent_parent(cell) if spec.metrics else None
    state = RoundsProgress(cell)
    phase = cell.checkpoints.phase("rounds", data.x_train.device, pruner=pruner, trainer=trainer, rounds=state)
    rounds = state.rounds
    if not phase.resumed:
        keep = {k, fork} if prune.data_order_stability else {k}
        state.curves, kept, state.cached = train_parent(cell, trainer, data_seed, keep - {None}, pruner)
        state.rewind_weights = kept[k]["model"] if k is not None else None
        rounds.append(_round_summary(0, pruner, state.curves, 0, True))
        if prune.data_order_stability:
            _twin(rounds[-1], trainer, pruner, kept[fork], fork, True, twin_seed, prune.lmc_points)
        state.parent = _measure_round_zero(cell, rounds[-1], model, needs_parent, independent)
        keep_model(cell, round_model(0), model, pruner)

    def save_round() -> None:
        if phase.saving and len(rounds) <= prune.rounds:
            phase.save()

    def fresh_state(r: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(derived_seed(spec.seed, REINIT, r))
        return registry.build_model(spec.model, data).state_dict()

    save_round()
    for r in range(len(rounds), prune.rounds + 1):
        state.events.append(pruner.event(trainer.total_steps, pruner.round_cuts(), trainer.evaluate_test, round=r))
        trainer.tracker.event(trainer.steps_run, state.events[-1])
        retrain = rewind.rewind(RewindContext(model, state.rewind_weights, lambda r=r: fresh_state(r),
                                              trainer.steps_per_epoch, trainer.total_steps, r))
        trainer.forget_evaluation()
        if pruner.after_step is not None:
            pruner.after_step()  # the masks again: a rewind reloads pruned weights too
        ctx.optimizer = trainer.new_optimizer()
        if prune.data_order_stability:  # the second copy starts here too
            start = {"model": clone_state(model.state_dict()), "optimizer": None}
        if retrain.step < trainer.total_steps:
            state.curves, _ = trainer.train(retrain.step, data_seed, retrain.replay_lr, hooks=pruner.hooks())
        else:  # no retraining (finetune@0): the pruned network as the event left it
            state.curves = trainer.evaluated_point(trainer.total_steps, (state.events[-1].t_post,
                                                                        state.events[-1].loss_post))
        rounds.append(_round_summary(r, pruner, state.curves, retrain.step, retrain.replay_lr))
        if prune.data_order_stability:
            _twin(rounds[-1], trainer, pruner, start, retrain.step, retrain.replay_lr, twin_seed, prune.lmc_points)
        if spec.metrics:
            rounds[-1].metrics = measure(cell, Evaluated(model), state.parent, r, independent)
        keep_model(cell, round_model(r), model, pruner)
        ctx.optimizer = trainer.optimizer
        save_round()
    pruner.detach()
    return Trained(state.curves, state.events, rounds[-1].best_test_acc, "cached" if state.cached else "trained",
                   rounds, _by_round(rounds, prune.data_order_stability))


def _measure_round_zero(cell: Cell, round_zero: Round, model: torch.nn.Module, needs_parent: bool,
                        independent: Evaluated | None) -> Evaluated | None:
    """Round 0's metrics (the trained parent's); the parent itself, copied, when later rounds' metrics need it."""
    if not cell.spec.metrics:
        return None
    subject = Evaluated(copy.deepcopy(model) if needs_parent else model)
    round_zero.metrics = measure(cell, subject, subject if needs_parent else None, 0, independent)
    return subject if needs_parent else None


def _by_round(rounds: list[Round], twins: bool) -> dict[str, Any]:
    """The cell's metrics across rounds (and the last round's mode connectivity, with two data orders)."""
    metrics = {"best_test_acc_by_round": [x.best_test_acc for x in rounds],
               "sparsity_by_round": [x.sparsity for x in rounds]}
    if twins:
        metrics.update(lmc_barrier=rounds[-1].lmc.barrier, weight_distance=rounds[-1].weight_distance,
                       lmc_barrier_by_round=[x.lmc.barrier for x in rounds])
    return metrics


def _round_summary(r: int, pruner: Pruner, curves: Curves, start: int, replay_lr: bool) -> Round:
    return Round(r, pruner.sparsity(), {n: s.n_alive for n, s in pruner.layers.items()}, start, replay_lr,
                 curves.test_acc[-1], max(curves.test_acc), curves)


def _twin(summary: Round, trainer: Trainer, pruner: Pruner, start: dict, start_step: int, replay_lr: bool,
          twin_seed: int, points: int) -> None:
    """Train a second copy from ``start`` with another data order; compare it with the first (the model now)
    and add the comparison to the round's ``summary``."""
    model = trainer.model
    first = clone_state(model.state_dict())
    first_optimizer = trainer.optimizer
    model.load_state_dict(start["model"])
    trainer.new_optimizer(start["optimizer"])
    # the twin keeps the masks (after_step) but feeds no scorer statistics: only the first copy is pruned from
    curves, _ = trainer.train(start_step, twin_seed, replay_lr, hooks=Hooks(after_step=pruner.after_step),
                              every_epoch=False)
    second = clone_state(model.state_dict())
    model.load_state_dict(first)
    trainer.optimizer = first_optimizer
    trainer.forget_evaluation()  # the last one was the second copy's
    with trainer.timing.measure("lmc_s"):
        lmc = linear_mode_connectivity(model, first, second, trainer.data.x_test, trainer.data.y_test, points)
    weights = [key for layer in pruner.layers.values() for key in unit_weight_keys(layer.spec)]
    summary.twin_final_test_acc = curves.test_acc[-1]
    summary.weight_distance = weight_distance(first, second, weights)
    summary.lmc = lmc
