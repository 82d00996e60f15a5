"""Prune-retrain rounds (REFERENCE.md section 3): lottery tickets, rewinding, and data-order stability.

Round 0 trains the unpruned parent (from the parent cache when stored). Each later round
prunes a fraction of what remains, rewinds, and retrains; with data-order stability a second
copy trains from the same start with another data order, and the two are compared (lmc.py).
The cell's metrics run at the end of every round, so one cell gives a whole prune-ratio sweep.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch

from gstbench.cell_result import Curves, PruningEvent, Round
from gstbench.components import Evaluated, PruningContext, RewindContext, TensorData
from gstbench.config import CellSpec
from gstbench.engine.checkpoint import Checkpoints, set_rng_state
from gstbench.engine.evaluation import measure
from gstbench.engine.lmc import linear_mode_connectivity, weight_distance
from gstbench.engine.loop import Hooks, Trained, Trainer, clone_state
from gstbench.engine.parent import independent_parent, train_parent
from gstbench.engine.pruner import Pruner
from gstbench.engine.setup import build, build_model, place
from gstbench.parents import ParentCache


def run_rounds(spec: CellSpec, registry: Any, data: TensorData, trainer: Trainer, pruner: Pruner,
               ctx: PruningContext, data_seed: int, parents: ParentCache | None, needs_parent: bool,
               checkpoints: Checkpoints | None = None) -> Trained:
    """Train; then R times: prune a fraction of what remains, rewind, retrain.

    With ``checkpoints`` on (``train.checkpoint_every`` > 0) the state after every round is
    saved, and a killed cell goes on with the next round.
    """
    prune, model = spec.prune, trainer.model
    device = data.x_train.device
    rewind = build(registry, "rewinds", spec.rewind)
    k = rewind.checkpoint_step(trainer.steps_per_epoch, trainer.total_steps)
    fork = k if k is not None else 0  # where round 0's second copy starts
    twin_seed = int(np.random.SeedSequence([spec.seed, 1]).generate_state(1)[0])
    keep = {k} if k is not None else set()
    if prune.data_order_stability:
        keep.add(fork)
    events: list[PruningEvent] = []
    rounds: list[Round] = []
    independent = independent_parent(spec, registry, data, parents, trainer.timing) if spec.metrics else None
    saved = checkpoints.load("rounds", device) if checkpoints is not None else None
    if saved is not None:  # the pruner first: it rebuilds the pruned shapes the weights are saved in
        pruner.load_state_dict(saved["pruner"])
        trainer.load_state_dict(saved["trainer"])
        events += [PruningEvent.from_json(e) for e in saved["events"]]
        rounds += [Round.from_json(x, f"round {i} of the checkpoint") for i, x in enumerate(saved["rounds"])]
        curves, checkpoint, cached = Curves.from_json(saved["curves"]), saved["rewind_point"], saved["cached"]
        parent = None
        if saved["parent_model"] is not None:
            parent = Evaluated(place(build_model(registry, spec, data), device))
            parent.model.load_state_dict(saved["parent_model"])
        set_rng_state(saved["rng"])
    else:
        curves, kept, cached = train_parent(spec, trainer, data_seed, parents, keep, pruner)
        checkpoint = kept[k]["model"] if k is not None else None
        rounds.append(_round_summary(0, pruner, curves, 0, True))
        if prune.data_order_stability:
            _twin(rounds[-1], trainer, pruner, kept[fork], fork, True, twin_seed, prune.lmc_points)
        parent = None
        if spec.metrics:
            subject = Evaluated(copy.deepcopy(model) if needs_parent else model)
            parent = subject if needs_parent else None
            rounds[-1].metrics = measure(spec, registry, subject, data, device, parent, trainer.timing, 0,
                                         independent)

    def save_round() -> None:
        if checkpoints is not None and checkpoints.path is not None and len(rounds) <= prune.rounds:
            checkpoints.save("rounds", {
                "trainer": trainer.state_dict(), "pruner": pruner.state_dict(), "curves": curves.to_json(),
                "events": [e.to_json() for e in events], "rounds": [x.to_json() for x in rounds],
                "rewind_point": checkpoint, "cached": cached,
                "parent_model": parent.model.state_dict() if parent is not None else None})

    def fresh_state(r: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(int(np.random.SeedSequence([spec.seed, 2, r]).generate_state(1)[0]))
        return build_model(registry, spec, data).state_dict()

    save_round()
    for r in range(len(rounds), prune.rounds + 1):
        events.append(pruner.event(trainer.total_steps, pruner.round_cuts(), trainer.evaluate_test, round=r))
        trainer.tracker.event(trainer.steps_run, events[-1])
        resume = rewind.rewind(RewindContext(model, checkpoint, lambda r=r: fresh_state(r),
                                             trainer.steps_per_epoch, trainer.total_steps, r))
        trainer.forget_evaluation()
        if pruner.after_step is not None:
            pruner.after_step()  # the masks again: a rewind reloads pruned weights too
        ctx.optimizer = trainer.new_optimizer()
        if prune.data_order_stability:  # the second copy starts here too
            start = {"model": clone_state(model.state_dict()), "optimizer": None}
        curves, _ = trainer.train(resume.step, data_seed, resume.replay_lr, hooks=pruner.hooks())
        rounds.append(_round_summary(r, pruner, curves, resume.step, resume.replay_lr))
        if prune.data_order_stability:
            _twin(rounds[-1], trainer, pruner, start, resume.step, resume.replay_lr, twin_seed, prune.lmc_points)
        if spec.metrics:
            rounds[-1].metrics = measure(spec, registry, Evaluated(model), data, device, parent,
                                         trainer.timing, r, independent)
        ctx.optimizer = trainer.optimizer
        save_round()
    pruner.detach()
    last = rounds[-1]
    metrics = {"best_test_acc_by_round": [x.best_test_acc for x in rounds],
               "sparsity_by_round": [x.sparsity for x in rounds]}
    if prune.data_order_stability:
        metrics.update(lmc_barrier=last.lmc.barrier, weight_distance=last.weight_distance,
                       lmc_barrier_by_round=[x.lmc.barrier for x in rounds])
    return Trained(curves, events, last.best_test_acc, "cached" if cached else "trained", rounds, metrics)


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
    t0 = time.perf_counter()
    lmc = linear_mode_connectivity(model, first, second, trainer.data.x_test, trainer.data.y_test, points)
    trainer.timing["lmc_s"] = trainer.timing.get("lmc_s", 0.0) + time.perf_counter() - t0
    weights = [f"{layer.spec.conv}.weight" for layer in pruner.layers.values()]
    summary.twin_final_test_acc = curves.test_acc[-1]
    summary.weight_distance = weight_distance(first, second, weights)
    summary.lmc = lmc
