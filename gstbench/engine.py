"""The engine: trains one cell with its pruning schedule and returns its result as plain data.

A pruning event is: evaluate test accuracy (t_pre) -> score -> select -> apply the
effector, for every layer scheduled at that step -> evaluate again (t_post).
instability = (t_pre - t_post) / t_pre. Evaluation runs in eval mode under
``torch.inference_mode`` (BatchNorm running statistics untouched) and restores train mode.
"""

from __future__ import annotations

import math
import platform
import random as pyrandom
import time
import traceback
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gstbench import __version__
from gstbench.components import TEMPORARY, LayerState, PruningContext, TensorData
from gstbench.config import CellSpec, ComponentRef, steps_to_int
from gstbench.errors import CellFailed
from gstbench.pruning import layer_states
from gstbench.schedule import build_schedule, iterative_rate

EVAL_BATCH = 2048
Progress = Callable[[int, int], None]


def build(registry: Any, kind: str, ref: ComponentRef, *args: Any) -> Any:
    comp = registry.get(kind, ref.id.split("@")[0])
    return comp.factory(*args, **ref.kwargs)


def load_data(registry: Any, spec: CellSpec) -> TensorData:
    return build(registry, "datasets", spec.dataset)


def build_model(registry: Any, spec: CellSpec, data: TensorData) -> nn.Module:
    model = build(registry, "models", spec.model, data.input_shape, data.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec.model.id} returned {type(model).__name__}, not an nn.Module")
    return model


def seed_everything(seed: int) -> tuple[int, int]:
    """Seed python, numpy and torch; return independent seeds for data order and pruning draws."""
    pyrandom.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    data_seed, prune_seed = np.random.SeedSequence(seed).generate_state(2)
    return int(data_seed), int(prune_seed)


@torch.inference_mode()
def _evaluate_impl(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    correct = torch.zeros((), device=x.device)
    loss = torch.zeros((), device=x.device)
    for i in range(0, x.shape[0], EVAL_BATCH):
        out = model(x[i:i + EVAL_BATCH])
        loss += F.cross_entropy(out, y[i:i + EVAL_BATCH], reduction="sum")
        correct += (out.argmax(1) == y[i:i + EVAL_BATCH]).sum()
    n = x.shape[0]
    return float(correct) / n, float(loss) / n


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean loss) in eval mode; the model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return _evaluate_impl(model, x, y)
    finally:
        model.train(was_training)


def make_optimizer(spec: CellSpec, model: nn.Module) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def run_cell(spec: CellSpec, registry: Any, device: str = "cpu", progress: Progress | None = None) -> dict[str, Any]:
    """Train one cell; never raises for the cell's own errors: returns a 'failed' result instead."""
    started = time.perf_counter()
    try:
        result = _run(spec, registry, torch.device(device), progress)
        result["status"] = "ok"
    except Exception as exc:  # a failed cell is data, not a crash of the whole matrix
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(limit=20), "events": []}
    result.update(hash=spec.hash, seed=spec.seed, wall_s=round(time.perf_counter() - started, 3),
                  environment={"gstbench": __version__, "torch": torch.__version__, "device": device,
                               "python": platform.python_version()})
    return result


def _run(spec: CellSpec, registry: Any, device: torch.device, progress: Progress | None) -> dict[str, Any]:
    timing = {"train_s": 0.0, "eval_s": 0.0, "prune_s": 0.0, "metrics_s": 0.0}
    data_seed, prune_seed = seed_everything(spec.seed)
    data = load_data(registry, spec).to(device)
    torch.manual_seed(spec.seed)
    model = build_model(registry, spec, data).to(device)
    model.train()
    optimizer = make_optimizer(spec, model)
    n_train = data.x_train.shape[0]
    bs = spec.train.batch_size
    steps_per_epoch = math.ceil(n_train / bs)
    total_steps = spec.train.epochs * steps_per_epoch
    milestones = sorted(steps_to_int(m, steps_per_epoch) for m in spec.train.milestones)

    data_gen = torch.Generator().manual_seed(data_seed)
    ctx = PruningContext(model, optimizer, data.x_train[:2].clone(), torch.Generator().manual_seed(prune_seed))

    prune = spec.prune
    layers: dict[str, LayerState] = {}
    schedule: dict[int, list] = {}
    scorer = target = effector = None
    temporary = False  # targeted units come back (zero, noise): they are never "remaining" less
    if prune is not None:
        temporary = TEMPORARY in registry.get("effectors", prune.effector.id.split("@")[0]).capabilities
        layers = layer_states(model, [name for name, _ in prune.layers])
        schedule = build_schedule(prune, {n: s.n_original for n, s in layers.items()}, steps_per_epoch, total_steps)
        scorer = build(registry, "scorers", prune.scorer)
        target = build(registry, "targets", prune.target)
        effector = build(registry, "effectors", prune.effector)
        if hasattr(scorer, "attach"):
            scorer.attach(ctx, layers)
    before_batch = getattr(scorer, "before_train_batch", None)
    after_step = getattr(effector, "after_step", None)

    curves: dict[str, list] = {k: [] for k in ("epoch", "step", "lr", "train_loss", "train_acc_running",
                                                "test_acc", "test_loss")}
    events: list[dict[str, Any]] = []
    post_last_event: list[float] = []  # test accuracies at or after the last pruning event
    last_event_step = max(schedule) if schedule else -1

    def timed_eval() -> tuple[float, float]:
        t0 = time.perf_counter()
        acc_loss = evaluate(model, data.x_test, data.y_test)
        timing["eval_s"] += time.perf_counter() - t0
        return acc_loss

    step = 0
    lr_drops = 0
    for epoch in range(spec.train.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(n_train, generator=data_gen).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        for b in range(steps_per_epoch):
            if step in schedule:
                timing["train_s"] += time.perf_counter() - t0
                events.append(_pruning_event(step, epoch, schedule[step], layers, scorer, target, effector, ctx,
                                             timed_eval, timing))
                if step == last_event_step:
                    post_last_event.append(events[-1]["t_post"])
                t0 = time.perf_counter()
            while lr_drops < len(milestones) and step >= milestones[lr_drops]:
                lr_drops += 1
                for group in optimizer.param_groups:
                    group["lr"] = spec.train.lr * spec.train.gamma ** lr_drops
            idx = order[b * bs:(b + 1) * bs]
            x, y = data.x_train[idx], data.y_train[idx]
            if before_batch is not None:
                before_batch(step)
            out = model(x)
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if after_step is not None:
                after_step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (out.detach().argmax(1) == y).sum()
            step += 1
        train_loss = float(loss_sum) / n_train
        timing["train_s"] += time.perf_counter() - t0
        if not math.isfinite(train_loss):
            raise CellFailed(f"non-finite training loss ({train_loss}) in epoch {epoch + 1}; "
                             f"lower the learning rate or check the model")
        test_acc, test_loss = timed_eval()
        if step > last_event_step:
            post_last_event.append(test_acc)
        for key, value in (("epoch", epoch + 1), ("step", step), ("lr", optimizer.param_groups[0]["lr"]),
                           ("train_loss", train_loss), ("train_acc_running", float(correct) / n_train),
                           ("test_acc", test_acc), ("test_loss", test_loss)):
            curves[key].append(value)
        if progress is not None:
            progress(epoch + 1, spec.train.epochs)

    if scorer is not None and hasattr(scorer, "detach"):
        scorer.detach()
    t0 = time.perf_counter()
    train_acc, train_loss_eval = evaluate(model, data.x_train, data.y_train)
    timing["eval_s"] += time.perf_counter() - t0

    instabilities = [e["instability"] for e in events]
    final_test = curves["test_acc"][-1]
    metrics: dict[str, Any] = {
        "final_test_acc": final_test,
        "best_test_acc": max(post_last_event),
        "final_test_loss": curves["test_loss"][-1],
        "train_acc": train_acc,
        "train_loss": train_loss_eval,
        "gap": train_acc - final_test,
        "n_events": len(events),
        "mean_instability": float(np.mean(instabilities)) if events else 0.0,
        "stability": 1.0 - float(np.mean(instabilities)) if events else 1.0,
        "iterative_rate": iterative_rate(prune, steps_per_epoch) if prune else 0.0,
        "params": sum(p.numel() for p in model.parameters()),
        "params_nonzero": sum(int(torch.count_nonzero(p)) for p in model.parameters()),
        "remaining_filters": {n: s.n_physical if temporary else s.n_alive for n, s in layers.items()},
        "targeted_filters": {n: s.n_original - s.n_alive for n, s in layers.items()},
    }
    t0 = time.perf_counter()
    for ref in spec.metrics:
        m0 = time.perf_counter()
        values = build(registry, "metrics", ref).compute(model, data, device)
        metrics.update(values)
        metrics.setdefault("metric_wall_s", {})[ref.label] = round(time.perf_counter() - m0, 4)
    timing["metrics_s"] = time.perf_counter() - t0
    return {"metrics": metrics, "curves": curves, "events": events,
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "timing": {k: round(v, 4) for k, v in timing.items()}}


def _pruning_event(step, epoch, cuts, layers, scorer, target, effector, ctx, timed_eval, timing) -> dict[str, Any]:
    t_pre, loss_pre = timed_eval()
    t0 = time.perf_counter()
    ctx.step = step
    record: dict[str, Any] = {}
    for cut in cuts:
        layer = layers[cut.layer]
        scores = scorer.score(layer, ctx).to("cpu")
        if scores.shape != (layer.n_physical,):
            raise ValueError(f"scorer returned scores of shape {tuple(scores.shape)} for layer '{layer.name}' "
                             f"with {layer.n_physical} filters")
        count = min(cut.count, layer.n_alive)
        chosen = target.select(scores, layer.alive, count, ctx.generator).to("cpu")
        if chosen.numel() != count or not bool(layer.alive[chosen].all()):
            raise ValueError(f"target picked {chosen.tolist()} for layer '{layer.name}': "
                             f"needs {count} distinct alive units")
        original = layer.original_index[chosen].tolist()
        layer.alive[chosen] = False
        kept = effector.apply(layer, chosen, ctx)
        if kept is not None:  # shapes changed: follow the surviving channels
            layer.alive = layer.alive[kept]
            layer.original_index = layer.original_index[kept]
            if hasattr(scorer, "units_removed"):
                scorer.units_removed(layer, kept)
        record[cut.layer] = {"count": count, "pruned": sorted(original), "remaining": layer.n_alive,
                             "event": cut.index, "of": cut.of}
    timing["prune_s"] += time.perf_counter() - t0
    t_post, loss_post = timed_eval()
    instability = (t_pre - t_post) / t_pre if t_pre > 0 else 0.0
    return {"step": step, "epoch": epoch, "t_pre": t_pre, "t_post": t_post, "loss_pre": loss_pre,
            "loss_post": loss_post, "instability": instability, "layers": record}
