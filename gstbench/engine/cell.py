"""One cell from start to stored result: set up, train with its pruning schedule (or rounds), measure.

The nesting, top to bottom:

    run_cell(order)                       never raises for the cell's own errors: a 'failed' result
      _train_cell                         seeds, data, model, Trainer, Pruner
        run_schedule | rounds.run_rounds  pruning during one training run | prune-retrain rounds
          Checkpoints.phase               its parts registered; a killed run's state, if any (checkpoint.py)
          Trainer.train                   the step loop (loop.py)
            Hooks.on_event -> Pruner.event  t_pre -> score -> select -> effector -> t_post
            Hooks.after_epoch             every N epochs: Phase.save
        keep_model                        with train.save_model: the model(s) in order.models
        sink.store_training               the training's result, before the metrics (run/orders.py)
        evaluate (train set), measure     the final metrics (evaluation.py)
      measure_stored                      instead, for a MEASURE order: the stored model(s), measure
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from gstbench.engine.artifacts import MODEL, keep_last_round, keep_model, load_model
from gstbench.store.cell_result import CellResult, Curves, Environment, MetricValues, StoredTraining
from gstbench.components import Evaluated, PruningContext
from gstbench.plan.config import CellSpec
from gstbench.engine.checkpoint import Checkpoints
from gstbench.engine.evaluation import compares_with_parent, evaluate, measure
from gstbench.engine.loop import Progress, Trained, Trainer, TrainingProgress
from gstbench.engine.parent import independent_parent, parent_model, train_parent
from gstbench.engine.pruner import Pruner
from gstbench.engine.rounds import run_rounds
from gstbench.engine.setup import fast_path, place, seed_everything
from gstbench.store.parents import ParentCache
from gstbench.plan.schedule import iterative_rate
from gstbench.engine.state import Cell
from gstbench.engine.tracking import CellTracker, LoggedRun
from gstbench.plugins import Registry
from gstbench.engine.order import MEASURE, TRAIN, TrainingSink, WorkOrder


def run_cell(order: WorkOrder | CellSpec, registry: Registry, device: str = "cpu", progress: Progress | None = None,
             parents: ParentCache | None = None, tracker: CellTracker | None = None,
             logged: LoggedRun | None = None, sink: TrainingSink | None = None) -> CellResult:
    """Execute one cell's work order (engine/order.py); never raises for the cell's own errors: returns a
    'failed' result instead.

    ``parents`` shares unpruned parents between cells (the run directory's cache); without
    it, a cell trains its parent itself when it needs one. A cell that trains saves its
    checkpoint in ``order.cell_dir`` every ``train.checkpoint_every`` epochs (a RESUME order
    goes on from the one there), keeps its models in ``order.models`` and gives its training
    to ``sink`` before its metrics run; a MEASURE order computes only the metrics, on
    ``order.stored``. ``tracker`` sends curves, events and final metrics to the run's
    experiment trackers (``logged`` names the run there). A ``CellSpec`` alone is the order to train it
    from its first step, keeping nothing (what tests, benchmarks and notebooks ask for).
    """
    if isinstance(order, CellSpec):
        order = WorkOrder(order, TRAIN)
    spec = order.spec
    started = time.perf_counter()
    tracker = tracker if tracker is not None else CellTracker()
    if logged is not None:
        tracker.start(logged)
    try:
        if order.action == MEASURE:
            result = measure_stored(spec, registry, torch.device(device), parents, tracker, order.stored)
        else:
            result = _train_cell(order, registry, torch.device(device), progress, parents, tracker, sink)
        result.wall_s = round(time.perf_counter() - started, 3)
    except Exception as exc:  # a failed cell is data, not a crash of the whole matrix
        result = CellResult.failed(spec, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=20), device,
                                   time.perf_counter() - started)
    tracker.finish(result)
    return result


def _train_cell(order: WorkOrder, registry: Registry, device: torch.device, progress: Progress | None,
                parents: ParentCache | None, tracker: CellTracker, sink: TrainingSink | None) -> CellResult:
    spec = order.spec
    data_seed, prune_seed = seed_everything(spec.seed)
    if fast_path(device):  # cuDNN's autotuner gives up bitwise reproducibility, which GPUs do not promise anyway
        torch.backends.cudnn.benchmark = True
    data = registry.load_data(spec.dataset).to(device, channels_last=fast_path(device))
    cell = Cell(spec, registry, data, device, parents,
                Checkpoints(order.cell_dir, spec.hash, spec.train.checkpoint_every), tracker, models=order.models)
    timing = cell.timing
    torch.manual_seed(spec.seed)
    model = place(registry.build_model(spec.model, data), device)
    model.train()
    prune = spec.prune
    rounds = prune.rounds if prune else 0
    trainer = Trainer(cell, model, progress, spec.planned_epochs)
    ctx = PruningContext(model, trainer.optimizer, data.x_train[:2].clone(),
                         torch.Generator().manual_seed(prune_seed), data=data, batch_seed=prune_seed,
                         calibration=prune.calibration if prune else None)
    pruner = Pruner(cell, ctx) if prune else None
    needs_parent = any(compares_with_parent(registry.component("metrics", ref)) for ref in spec.metrics)
    if rounds:
        trained = run_rounds(cell, trainer, pruner, ctx, data_seed, needs_parent)
    else:
        trained = run_schedule(cell, trainer, pruner, data_seed)
    model.train()
    if not rounds:
        keep_model(cell, MODEL, model, pruner)
    with timing.measure("eval_s"):
        train_acc, train_loss_eval = evaluate(model, data.x_train, data.y_train)
    events = trained.events
    instabilities = [e.instability for e in events]
    final_test = trained.curves.test_acc[-1]
    metrics: MetricValues = {
        "final_test_acc": final_test,
        "best_test_acc": trained.best_test_acc,
        "final_test_loss": trained.curves.test_loss[-1],
        "train_acc": train_acc,
        "train_loss": train_loss_eval,
        "gap": train_acc - final_test,
        "n_events": len(events),
        "mean_instability": float(np.mean(instabilities)) if events else 0.0,
        "stability": 1.0 - float(np.mean(instabilities)) if events else 1.0,
        "iterative_rate": (max(s.fraction for _, s in prune.layers) if rounds else
                           iterative_rate(prune, trainer.steps_per_epoch, trainer.total_steps)) if prune else 0.0,
        "params": sum(p.numel() for p in model.parameters()),
        "params_nonzero": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
        **(pruner.unit_counts() if pruner else {}),
        **trained.metrics,
    }
    environment = Environment.here(str(device), plugin_versions(spec, registry))
    result = CellResult("ok", spec.hash, spec.seed, 0.0, environment, metrics=metrics, events=events,
                        curves=trained.curves, rounds=trained.rounds, parent=trained.parent,
                        steps_per_epoch=trainer.steps_per_epoch, total_steps=trainer.total_steps)
    if rounds:
        keep_last_round(cell, rounds)
    if sink is not None:  # the metrics dict holds the engine's numbers alone until the metrics run below
        sink.store_training(spec, dataclasses.replace(result, timing=timing.as_json()), dict(metrics))
    if rounds:
        metrics.update(trained.rounds[-1].metrics or {})
    elif spec.metrics:
        subject = Evaluated(model)
        parent = None
        if needs_parent:
            parent = subject if prune is None else Evaluated(parent_model(cell))
        metrics.update(measure(cell, subject, parent, None, independent_parent(cell)))
    result.timing = timing.as_json()
    return result


def measure_stored(spec: CellSpec, registry: Registry, device: torch.device, parents: ParentCache | None,
                   tracker: CellTracker, stored: StoredTraining, keys: dict[str, list[str]] | None = None) -> CellResult:
    """The cell's metrics on its stored training's model(s): what training it afresh would store (one thread).
    ``keys``, when given, receives the keys each metric returned."""
    seed_everything(spec.seed)
    data = registry.load_data(spec.dataset).to(device, channels_last=fast_path(device))
    cell = Cell(spec, registry, data, device, parents, tracker=tracker)
    training = stored.result
    needs_parent = any(compares_with_parent(registry.component("metrics", ref)) for ref in spec.metrics)
    metrics = dict(training.metrics)
    rounds = [dataclasses.replace(r) for r in training.rounds]
    independent = independent_parent(cell)

    def subject(path: Path) -> Evaluated:
        return Evaluated(place(load_model(path, registry=registry, device=device), device).train())

    if spec.prune is not None and spec.prune.rounds and spec.metrics:
        parent = None
        for r, path in enumerate(stored.round_models or []):
            model = subject(path)
            if r == 0 and needs_parent:
                parent = model
            rounds[r].metrics = measure(cell, model, parent, r, independent, keys)
        metrics.update(rounds[-1].metrics or {})
    elif spec.metrics:
        model = subject(stored.final_model)
        parent = None
        if needs_parent:
            parent = model if spec.prune is None else Evaluated(parent_model(cell))
        metrics.update(measure(cell, model, parent, None, independent, keys))
    timing = {**training.timing, **{k: round(v, 4) for k, v in cell.timing.seconds.items()
                                    if k in ("metrics_s", "parent_s", "independent_parent_s")}}
    environment = Environment.here(str(device), plugin_versions(spec, registry))
    return dataclasses.replace(training, hash=spec.hash, seed=spec.seed, environment=environment, metrics=metrics,
                               rounds=rounds, timing=timing, training_from=str(stored.directory.resolve()))


def plugin_versions(spec: CellSpec, registry: Registry) -> dict[str, str]:
    """plugin -> version of every component the cell used (its model, data, pruning, rewind, metrics)."""
    refs = [spec.model, spec.dataset, spec.rewind, *spec.metrics]
    if spec.prune is not None:
        refs += [spec.prune.scorer, spec.prune.target, spec.prune.effector]
    names = sorted({ref.plugin for ref in refs})
    return {name: registry.plugins[name].version for name in names if name in registry.plugins}


def run_schedule(cell: Cell, trainer: Trainer, pruner: Pruner | None, data_seed: int) -> Trained:
    """One training run, pruning during it on the schedule (or not at all: then it is the parent)."""
    checkpoints = cell.checkpoints
    if pruner is None:
        curves, _, cached = train_parent(cell, trainer, data_seed, set(), resumable=True)
        return Trained(curves, [], max(curves.test_acc), "cached" if cached else "trained")
    schedule = pruner.schedule(trainer.steps_per_epoch, trainer.total_steps)
    progress = TrainingProgress()
    events = progress.events
    phase = checkpoints.phase("schedule", trainer.data.x_train.device, pruner=pruner, trainer=trainer,
                              progress=progress)

    def on_event(step: int, epoch: int) -> None:
        events.append(pruner.event(step, schedule[step], trainer.evaluate_test, epoch=epoch))
        trainer.tracker.event(trainer.steps_run, events[-1])

    def after_epoch(step: int, curves: Curves) -> None:
        if checkpoints.due(step // trainer.steps_per_epoch):
            progress.step, progress.curves = step, curves
            phase.save()

    hooks = pruner.hooks(schedule, on_event)
    hooks.after_epoch = after_epoch
    curves, _ = trainer.train(progress.step, data_seed, hooks=hooks, curves=progress.curves)
    pruner.detach()
    # Generalization: the best test accuracy at or after the last pruning event (the paper's code).
    last = max(schedule) if schedule else -1
    post = [events[-1].t_post] if events else []
    post += [acc for step, acc in zip(curves.step, curves.test_acc) if step > last]
    return Trained(curves, events, max(post))
