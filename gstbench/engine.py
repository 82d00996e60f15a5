"""The engine: trains one cell with its pruning schedule and returns its result as plain data.

A pruning event is: evaluate test accuracy (t_pre) -> score -> select -> apply the
effector, for every layer scheduled at that step -> evaluate again (t_post).
instability = (t_pre - t_post) / t_pre. Evaluation runs in eval mode under
``torch.inference_mode`` (BatchNorm running statistics untouched) and restores train mode.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
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
from gstbench.components import NEEDS_INDEPENDENT, NEEDS_PARENT, TEMPORARY, Evaluated, LayerState, MetricContext, \
    PruningContext, RewindContext, TensorData
from gstbench.config import CellSpec, ComponentRef, steps_to_int
from gstbench.errors import CellFailed
from gstbench.flatness import eval_mode
from gstbench.parents import ParentCache
from gstbench.pruning import layer_states
from gstbench.schedule import LayerCut, build_schedule, iterative_rate

# Measured on 2 CPU cores (cnn1d, 2250 test signals, noisy VM): batch 256 took 47-64 ms per pass,
# 2048 took 66-70 ms; a GPU wants the large batch.
EVAL_BATCH = {"cpu": 256, "cuda": 2048}
Progress = Callable[[int, int], None]


def component(registry: Any, kind: str, ref: ComponentRef) -> Any:
    """The registered component a cell's ref names (its id without the ``@revision``)."""
    return registry.get(kind, ref.id.split("@")[0])


def build(registry: Any, kind: str, ref: ComponentRef, *args: Any) -> Any:
    return component(registry, kind, ref).factory(*args, **ref.kwargs)


def load_data(registry: Any, spec: CellSpec, placeholder: bool = False) -> TensorData:
    """The cell's dataset; ``placeholder`` takes the dataset's stand-in, if it offers one, instead of its files."""
    factory = component(registry, "datasets", spec.dataset).factory
    if placeholder and hasattr(factory, "placeholder"):
        return factory.placeholder()
    return build(registry, "datasets", spec.dataset)


def build_model(registry: Any, spec: CellSpec, data: TensorData) -> nn.Module:
    model = build(registry, "models", spec.model, data.input_shape, data.num_classes)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {spec.model.id} returned {type(model).__name__}, not an nn.Module")
    return model


def fast_path(device: torch.device) -> bool:
    """On a GPU: channels-last images and models (and ``_run`` turns on cuDNN's autotuner)."""
    return device.type == "cuda"


def place(model: nn.Module, device: torch.device) -> nn.Module:
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if fast_path(device) else model


def autocast(spec: CellSpec, device: torch.device):
    """bf16 autocast of forward passes when the cell's ``train.precision`` asks for it (fp32 otherwise)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")


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
    batch = EVAL_BATCH.get(x.device.type, 2048)
    for i in range(0, x.shape[0], batch):
        out = model(x[i:i + batch])
        loss += F.cross_entropy(out, y[i:i + batch], reduction="sum")
        correct += (out.argmax(1) == y[i:i + batch]).sum()
    n = x.shape[0]
    return float(correct) / n, float(loss) / n


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean loss) in eval mode; the model's train/eval mode is restored."""
    with eval_mode(model):
        return _evaluate_impl(model, x, y)


def make_optimizer(spec: CellSpec, model: nn.Module) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def run_cell(spec: CellSpec, registry: Any, device: str = "cpu", progress: Progress | None = None,
             parents: ParentCache | None = None) -> dict[str, Any]:
    """Train one cell; never raises for the cell's own errors: returns a 'failed' result instead.

    ``parents`` shares unpruned parents between cells (the run directory's cache); without
    it, a cell trains its parent itself when it needs one.
    """
    started = time.perf_counter()
    try:
        result = _run(spec, registry, torch.device(device), progress, parents)
        result["status"] = "ok"
    except Exception as exc:  # a failed cell is data, not a crash of the whole matrix
        return failed_result(spec, f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=20), device,
                             time.perf_counter() - started)
    result.update(hash=spec.hash, seed=spec.seed, wall_s=round(time.perf_counter() - started, 3),
                  environment=_environment(device))
    return result


def failed_result(spec: CellSpec, error: str, trace: str = "", device: str = "", wall_s: float = 0.0) -> dict:
    """The stored form of a cell that failed (its own exception, or its worker died)."""
    return {"status": "failed", "error": error, "traceback": trace, "events": [], "hash": spec.hash,
            "seed": spec.seed, "wall_s": round(wall_s, 3), "environment": _environment(device)}


def _environment(device: str) -> dict[str, Any]:
    return {"gstbench": __version__, "torch": torch.__version__, "device": device,
            "python": platform.python_version(), "host": platform.node(),
            # CPU numbers are bitwise reproducible for the same thread count (reduction order depends on it)
            "threads": torch.get_num_threads()}


class _Trainer:
    """Trains one model over a range of schedule steps; the learning rate and data order are the schedule's."""

    def __init__(self, spec: CellSpec, data: TensorData, model: nn.Module, timing: dict[str, float],
                 progress: Progress | None, planned_epochs: int):
        self.spec, self.data, self.model, self.timing = spec, data, model, timing
        self.n_train = data.x_train.shape[0]
        self.batch_size = spec.train.batch_size
        self.steps_per_epoch = math.ceil(self.n_train / self.batch_size)
        self.total_steps = spec.train.epochs * self.steps_per_epoch
        self.milestones = sorted(steps_to_int(m, self.steps_per_epoch, self.total_steps)
                                 for m in spec.train.milestones)
        self.progress, self.planned_epochs, self.epochs_done = progress, planned_epochs, 0
        self.optimizer = make_optimizer(spec, model)
        self.steps_run = 0  # optimizer steps taken by any copy: invalidates a kept evaluation
        self._last_eval: tuple[int, tuple[float, float]] | None = None
        # The global RNG as training from step 0 finds it (dropout draws from it), so that a
        # parent trained in any cell, or loaded from the cache, is the same parent.
        self.start_rng = torch.random.get_rng_state()

    def skip(self, epochs: int) -> None:
        """Count epochs that came from the parent cache (for the progress bar)."""
        self.epochs_done += epochs
        if self.progress is not None:
            self.progress(self.epochs_done, self.planned_epochs)

    def new_optimizer(self, load: dict | None = None) -> torch.optim.Optimizer:
        self.optimizer = make_optimizer(self.spec, self.model)
        if load is not None:
            self.optimizer.load_state_dict(load)
        return self.optimizer

    def lr_at(self, step: int, replay: bool = True) -> float:
        drops = sum(m <= step for m in self.milestones) if replay else len(self.milestones)
        return self.spec.train.lr * self.spec.train.gamma ** drops

    def forget_evaluation(self) -> None:
        self._last_eval = None

    def evaluate_test(self, reuse: bool = False) -> tuple[float, float]:
        """Test accuracy and loss; ``reuse`` returns the last result when no training step ran since it.

        An event at an epoch boundary takes its t_pre from the end-of-epoch evaluation just
        made on the same weights (evaluation is deterministic), which saves one pass per event.
        """
        if reuse and self._last_eval is not None and self._last_eval[0] == self.steps_run:
            return self._last_eval[1]
        t0 = time.perf_counter()
        with autocast(self.spec, self.data.x_test.device):
            acc_loss = evaluate(self.model, self.data.x_test, self.data.y_test)
        self.timing["eval_s"] += time.perf_counter() - t0
        self._last_eval = (self.steps_run, acc_loss)
        return acc_loss

    def train(self, start: int, data_seed: int, replay_lr: bool = True, events: dict | None = None,
              on_event: Callable[[int, int], None] | None = None, keep: set[int] = frozenset(),
              before_batch: Callable[[int], None] | None = None,
              after_step: Callable[[], None] | None = None,
              every_epoch: bool = True) -> tuple[dict[str, list], dict[int, dict]]:
        """Steps ``start`` to the end of the schedule; returns per-epoch curves and the states kept at ``keep``.

        ``every_epoch`` False evaluates the test set only after the last epoch.

        The data order of epoch e is the e-th permutation drawn from ``data_seed``, so a run
        resumed at step k sees the same batches as an uninterrupted one from k on.
        """
        data, model, bs, spe = self.data, self.model, self.batch_size, self.steps_per_epoch
        device = data.x_train.device
        curves: dict[str, list] = {k: [] for k in CURVE_KEYS}
        kept: dict[int, dict] = {}
        order_gen = torch.Generator().manual_seed(data_seed)
        augment = data.augmentation
        aug_gen = torch.Generator(device) if augment is not None else None
        aug_seed = int(np.random.SeedSequence([data_seed, 3]).generate_state(1)[0])
        for _ in range(start // spe):  # the permutations of the epochs before ``start``
            torch.randperm(self.n_train, generator=order_gen)
        order = None
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        t0 = time.perf_counter()
        for step in range(start, self.total_steps):
            epoch, b = divmod(step, spe)
            if order is None or b == 0:
                order = torch.randperm(self.n_train, generator=order_gen).to(device)
            if events and step in events:
                self.timing["train_s"] += time.perf_counter() - t0
                on_event(step, epoch)
                t0 = time.perf_counter()
            if step in keep:
                kept[step] = {"model": _clone_state(model.state_dict()),
                              "optimizer": copy.deepcopy(self.optimizer.state_dict())}
            lr = self.lr_at(step, replay_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            idx = order[b * bs:(b + 1) * bs]
            x, y = data.x_train[idx], data.y_train[idx]
            if augment is not None:  # seeded per step: a run resumed at any step draws the same crops
                x = augment(x, aug_gen.manual_seed(aug_seed + step))
            if before_batch is not None:
                before_batch(step)
            with autocast(self.spec, device):
                out = model(x)
                loss = F.cross_entropy(out, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps_run += 1
            if after_step is not None:
                after_step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (out.detach().argmax(1) == y).sum()
            seen += y.shape[0]
            if (step + 1) % spe and step + 1 < self.total_steps:
                continue
            train_loss = float(loss_sum) / seen
            self.timing["train_s"] += time.perf_counter() - t0
            if not math.isfinite(train_loss):
                raise CellFailed(f"non-finite training loss ({train_loss}) in epoch {epoch + 1}; "
                                 f"lower the learning rate or check the model")
            if not every_epoch and step + 1 < self.total_steps:
                test_acc = test_loss = None
            else:
                test_acc, test_loss = self.evaluate_test()
            for key, value in (("epoch", epoch + 1), ("step", step + 1), ("lr", lr), ("train_loss", train_loss),
                               ("train_acc_running", float(correct) / seen), ("test_acc", test_acc),
                               ("test_loss", test_loss)):
                curves[key].append(value)
            self.epochs_done += 1
            if self.progress is not None:
                self.progress(self.epochs_done, self.planned_epochs)
            loss_sum.zero_()
            correct.zero_()
            seen = 0
            t0 = time.perf_counter()
        return curves, kept


CURVE_KEYS = ("epoch", "step", "lr", "train_loss", "train_acc_running", "test_acc", "test_loss")


def _clone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


def _run(spec: CellSpec, registry: Any, device: torch.device, progress: Progress | None,
         parents: ParentCache | None) -> dict[str, Any]:
    timing = {"train_s": 0.0, "eval_s": 0.0, "prune_s": 0.0, "metrics_s": 0.0}
    data_seed, prune_seed = seed_everything(spec.seed)
    if fast_path(device):  # cuDNN's autotuner gives up bitwise reproducibility, which GPUs do not promise anyway
        torch.backends.cudnn.benchmark = True
    data = load_data(registry, spec).to(device, channels_last=fast_path(device))
    torch.manual_seed(spec.seed)
    model = place(build_model(registry, spec, data), device)
    model.train()
    prune = spec.prune
    rounds = prune.rounds if prune else 0
    copies = 2 if prune and prune.data_order_stability else 1
    trainer = _Trainer(spec, data, model, timing, progress, spec.train.epochs * (rounds + 1) * copies)
    ctx = PruningContext(model, trainer.optimizer, data.x_train[:2].clone(),
                         torch.Generator().manual_seed(prune_seed), data=data, batch_seed=prune_seed)
    pruner = _Pruner(spec, registry, ctx, timing) if prune else None
    needs_parent = any(_compares_with_parent(component(registry, "metrics", ref)) for ref in spec.metrics)
    if rounds:
        result = _run_rounds(spec, registry, data, trainer, pruner, ctx, data_seed, parents, needs_parent)
    else:
        result = _run_schedule(spec, trainer, pruner, data_seed, parents)
    model.train()
    t0 = time.perf_counter()
    train_acc, train_loss_eval = evaluate(model, data.x_train, data.y_train)
    timing["eval_s"] += time.perf_counter() - t0
    events = result["events"]
    instabilities = [e["instability"] for e in events]
    final_test = result["curves"]["test_acc"][-1]
    metrics: dict[str, Any] = {
        "final_test_acc": final_test,
        "best_test_acc": result["best_test_acc"],
        "final_test_loss": result["curves"]["test_loss"][-1],
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
        **result.get("metrics", {}),
    }
    if rounds:
        metrics.update(result["rounds"][-1].get("metrics", {}))
    elif spec.metrics:
        subject = Evaluated(model)
        parent = None
        if needs_parent:
            parent = subject if prune is None else Evaluated(_parent_model(spec, registry, data, parents, timing))
        metrics.update(measure(spec, registry, subject, data, device, parent, timing, None,
                               independent_parent(spec, registry, data, parents, timing)))
    out = {"metrics": metrics, "parent": result.get("parent"), "curves": result["curves"], "events": events,
           "steps_per_epoch": trainer.steps_per_epoch, "total_steps": trainer.total_steps,
           "timing": {k: round(v, 4) for k, v in timing.items()}}
    if "rounds" in result:
        out["rounds"] = result["rounds"]
    return out


def _compares_with_parent(comp: Any) -> bool:
    return bool({NEEDS_PARENT, NEEDS_INDEPENDENT} & set(comp.capabilities))


def measure(spec: CellSpec, registry: Any, subject: Evaluated, data: TensorData, device: torch.device,
            parent: Evaluated | None, timing: dict[str, float], round_index: int | None,
            independent: Callable[[], Evaluated]) -> dict[str, Any]:
    """Run the cell's metrics on ``subject``; each metric's wall time goes into ``metric_wall_s``.

    ``independent`` builds (once) the parent trained from another seed, for the metrics that declare it.
    """
    values: dict[str, Any] = {}
    wall: dict[str, float] = {}
    for ref in spec.metrics:
        comp = component(registry, "metrics", ref)
        metric = comp.factory(**ref.kwargs)
        other = independent() if NEEDS_INDEPENDENT in comp.capabilities else None
        t0 = time.perf_counter()
        ctx = MetricContext(subject, data, device, parent if _compares_with_parent(comp) else None, round_index, other)
        values.update(compute_metric(metric, ctx))
        wall[ref.label] = round(time.perf_counter() - t0, 4)
    timing["metrics_s"] += sum(wall.values())
    values["metric_wall_s"] = wall
    return values


def compute_metric(metric: Any, ctx: MetricContext) -> dict[str, Any]:
    """``metric.compute(ctx)``, or gstbench 0.1's ``compute(model, data, device)``."""
    if len(inspect.signature(metric.compute).parameters) == 3:
        return metric.compute(ctx.model, ctx.data, ctx.device)
    return metric.compute(ctx)


def _train_parent(spec: CellSpec, trainer: _Trainer, data_seed: int, parents: ParentCache | None,
                  keep: set[int], pruner: "_Pruner | None" = None) -> tuple[dict[str, list], dict[int, dict], bool]:
    """Plain training from step 0 (an unpruned run, round 0): from the parent cache when stored there.

    Returns the curves, the states kept at ``keep`` and whether they came from the cache. A
    scorer that watches training (activation statistics) needs the real run, so it skips the cache.
    """
    device = trainer.data.x_train.device
    cacheable = parents is not None and (pruner is None or not pruner.observes_training)
    if cacheable:
        entry = parents.load(spec, device, keep)
        if entry is not None:
            trainer.model.load_state_dict(entry["final"])
            trainer.forget_evaluation()
            trainer.skip(spec.train.epochs)
            return entry["curves"], entry["kept"], True
    torch.random.set_rng_state(trainer.start_rng)
    curves, kept = trainer.train(0, data_seed, keep=keep, before_batch=pruner and pruner.before_batch,
                                 after_step=pruner and pruner.after_step)
    if cacheable:
        parents.save(spec, device, curves, _clone_state(trainer.model.state_dict()), kept)
    return curves, kept, False


def _parent_model(spec: CellSpec, registry: Any, data: TensorData, parents: ParentCache | None,
                  timing: dict[str, float]) -> nn.Module:
    """The unpruned parent of a cell that pruned during training: loaded from the cache, or trained now."""
    t0 = time.perf_counter()
    data_seed, _ = seed_everything(spec.seed)
    torch.manual_seed(spec.seed)
    model = place(build_model(registry, spec, data), data.x_train.device)
    model.train()
    trainer = _Trainer(spec, data, model, {"train_s": 0.0, "eval_s": 0.0}, None, spec.train.epochs)
    _train_parent(spec, trainer, data_seed, parents, set())
    timing["parent_s"] = time.perf_counter() - t0
    return model


def independent_seed(seed: int) -> int:
    """The seed of the parent's independent twin: derived, so no suite seed collides with it by accident."""
    return int(np.random.SeedSequence([seed, 4]).generate_state(1)[0])


def independent_parent(spec: CellSpec, registry: Any, data: TensorData, parents: ParentCache | None,
                       timing: dict[str, float]) -> Callable[[], Evaluated]:
    """Builds, on first call, the unpruned network trained like the parent from ``independent_seed``.

    It comes from the parent cache when stored there (shared by every cell of the seed), and is
    trained with the RNG state saved and restored, so the cell's own numbers do not depend on it.
    """
    built: list[Evaluated] = []

    def get() -> Evaluated:
        if not built:
            twin = dataclasses.replace(spec, seed=independent_seed(spec.seed))
            states = pyrandom.getstate(), np.random.get_state()
            own: dict[str, float] = {}
            device = data.x_train.device
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                built.append(Evaluated(_parent_model(twin, registry, data, parents, own)))
            pyrandom.setstate(states[0])
            np.random.set_state(states[1])
            timing["independent_parent_s"] = own.get("parent_s", 0.0)
        return built[0]

    return get


def _run_schedule(spec: CellSpec, trainer: _Trainer, pruner: "_Pruner | None", data_seed: int,
                  parents: ParentCache | None) -> dict[str, Any]:
    """One training run, pruning during it on the schedule (or not at all: then it is the parent)."""
    if pruner is None:
        curves, _, cached = _train_parent(spec, trainer, data_seed, parents, set())
        return {"curves": curves, "events": [], "best_test_acc": max(curves["test_acc"]),
                "parent": "cached" if cached else "trained"}
    events: list[dict[str, Any]] = []
    schedule = pruner.schedule(trainer)

    def on_event(step: int, epoch: int) -> None:
        events.append(pruner.event(step, schedule[step], trainer.evaluate_test, epoch=epoch))

    curves, _ = trainer.train(0, data_seed, events=schedule, on_event=on_event,
                              before_batch=pruner.before_batch, after_step=pruner.after_step)
    pruner.detach()
    # Generalization: the best test accuracy at or after the last pruning event (the paper's code).
    last = max(schedule) if schedule else -1
    post = [events[-1]["t_post"]] if events else []
    post += [acc for step, acc in zip(curves["step"], curves["test_acc"]) if step > last]
    return {"curves": curves, "events": events, "best_test_acc": max(post)}


class _Pruner:
    """Scores, selects and applies one cell's pruning; keeps the per-layer state."""

    def __init__(self, spec: CellSpec, registry: Any, ctx: PruningContext, timing: dict[str, float]):
        prune = spec.prune
        self.prune, self.ctx, self.timing = prune, ctx, timing
        effector_comp = component(registry, "effectors", prune.effector)
        self.temporary = TEMPORARY in effector_comp.capabilities
        self.layers = layer_states(ctx.model, [name for name, _ in prune.layers], prune.granularity)
        self.scorer = build(registry, "scorers", prune.scorer)
        self.target = build(registry, "targets", prune.target)
        self.effector = build(registry, "effectors", prune.effector)
        if hasattr(self.scorer, "attach"):
            self.scorer.attach(ctx, self.layers)
        self.before_batch = getattr(self.scorer, "before_train_batch", None)
        self.after_step = getattr(self.effector, "after_step", None)
        self.observes_training = hasattr(self.scorer, "attach") or self.before_batch is not None

    def schedule(self, trainer: _Trainer) -> dict[int, list[LayerCut]]:
        return build_schedule(self.prune, {n: s.n_original for n, s in self.layers.items()},
                              trainer.steps_per_epoch, trainer.total_steps)

    def round_cuts(self) -> list[LayerCut]:
        """A round cuts ``fraction`` of what remains (rounded up, as OpenLTH), per layer or over all."""
        fractions = dict(self.prune.layers)
        if self.prune.scope == "global":
            alive = sum(s.n_alive for s in self.layers.values())
            total = math.ceil(round(fractions[next(iter(self.layers))].fraction * alive, 9))
            return [LayerCut(GLOBAL, total, 1, 1)]
        return [LayerCut(n, math.ceil(round(fractions[n].fraction * s.n_alive, 9)), 1, 1)
                for n, s in self.layers.items()]

    def detach(self) -> None:
        if hasattr(self.scorer, "detach"):
            self.scorer.detach()

    def sparsity(self) -> float:
        """The pruned share of the listed layers' units."""
        original = sum(s.n_original for s in self.layers.values())
        return 1 - sum(s.n_alive for s in self.layers.values()) / original

    def unit_counts(self) -> dict[str, Any]:
        unit = "filters" if self.prune.granularity == "filters" else "weights"
        return {f"remaining_{unit}": {n: s.n_physical if self.temporary else s.n_alive
                                      for n, s in self.layers.items()},
                f"targeted_{unit}": {n: s.n_original - s.n_alive for n, s in self.layers.items()},
                "sparsity": 0.0 if self.temporary else self.sparsity()}

    def event(self, step: int, cuts: list[LayerCut], evaluate_test, **extra: Any) -> dict[str, Any]:
        """t_pre -> score, select, apply for every cut -> t_post."""
        t_pre, loss_pre = evaluate_test(reuse=True)
        t0 = time.perf_counter()
        ctx = self.ctx
        ctx.step = step
        if self.prune.scope == "global":
            count = sum(c.count for c in cuts)
            cuts = [LayerCut(GLOBAL, count, cuts[0].index, cuts[0].of)]
        record: dict[str, Any] = {}
        for cut in cuts:
            names = list(self.layers) if cut.layer == GLOBAL else [cut.layer]
            for name, chosen in self._select(names, cut.count).items():
                record[name] = {**self._apply(self.layers[name], chosen), "event": cut.index, "of": cut.of}
        self.timing["prune_s"] += time.perf_counter() - t0
        t_post, loss_post = evaluate_test()
        instability = (t_pre - t_post) / t_pre if t_pre > 0 else 0.0
        return {"step": step, **extra, "t_pre": t_pre, "t_post": t_post, "loss_pre": loss_pre,
                "loss_post": loss_post, "instability": instability, "layers": record}

    def _select(self, names: list[str], count: int) -> dict[str, torch.Tensor]:
        """Flat physical indices per layer; one ranking over all ``names`` (a single layer, or global)."""
        scores, alive = [], []
        for name in names:
            layer = self.layers[name]
            s = self.scorer.score(layer, self.ctx).to("cpu")
            if s.shape != layer.alive.shape:
                raise ValueError(f"scorer {self.prune.scorer.id} returned scores of shape {tuple(s.shape)} for layer "
                                 f"'{name}' with {layer.granularity} of shape {tuple(layer.alive.shape)}")
            scores.append(s.flatten().float())
            alive.append(layer.alive_flat)
        scores_cat, alive_cat = torch.cat(scores), torch.cat(alive)
        count = min(count, int(alive_cat.sum()))
        chosen = self.target.select(scores_cat, alive_cat, count, self.ctx.generator).to("cpu")
        if chosen.numel() != count or not bool(alive_cat[chosen].all()) or chosen.unique().numel() != count:
            raise ValueError(f"target {self.prune.target.id} picked {chosen.numel()} units for {', '.join(names)}: "
                             f"needs {count} distinct alive units")
        out, offset = {}, 0
        for name, s in zip(names, scores):
            mine = chosen[(chosen >= offset) & (chosen < offset + s.numel())] - offset
            offset += s.numel()
            if mine.numel():
                out[name] = mine
        return out

    def _apply(self, layer: LayerState, chosen: torch.Tensor) -> dict[str, Any]:
        original = layer.original_index[chosen].tolist()
        apply_effector(self.effector, layer, chosen, self.ctx, self.scorer)
        rec: dict[str, Any] = {"count": len(original), "remaining": layer.n_alive}
        if layer.granularity == "filters":  # single weights would flood events.jsonl
            rec["pruned"] = sorted(original)
        return rec


GLOBAL = "*"


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


# ---- prune-retrain rounds: lottery tickets, rewinding, data-order stability --------------
def _run_rounds(spec: CellSpec, registry: Any, data: TensorData, trainer: _Trainer, pruner: _Pruner,
                ctx: PruningContext, data_seed: int, parents: ParentCache | None, needs_parent: bool) -> dict[str, Any]:
    """Train; then R times: prune a fraction of what remains, rewind, retrain (REFERENCE.md section 3).

    Round 0 is the unpruned parent (from the parent cache when stored). The cell's metrics
    run at the end of every round, so one cell gives a whole prune-ratio sweep.
    """
    prune, model = spec.prune, trainer.model
    rewind = build(registry, "rewinds", spec.rewind)
    k = rewind.checkpoint_step(trainer.steps_per_epoch, trainer.total_steps)
    fork = k if k is not None else 0  # where round 0's second copy starts
    twin_seed = int(np.random.SeedSequence([spec.seed, 1]).generate_state(1)[0])
    keep = {k} if k is not None else set()
    if prune.data_order_stability:
        keep.add(fork)
    events: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []

    curves, kept, cached = _train_parent(spec, trainer, data_seed, parents, keep, pruner)
    checkpoint = kept[k]["model"] if k is not None else None
    rounds.append(_round_summary(0, pruner, curves, 0, True))
    if prune.data_order_stability:
        rounds[-1].update(_twin(trainer, pruner, kept[fork], fork, True, twin_seed, prune.lmc_points))
    parent = None
    if spec.metrics:
        subject = Evaluated(copy.deepcopy(model) if needs_parent else model)
        parent = subject if needs_parent else None
        independent = independent_parent(spec, registry, data, parents, trainer.timing)
        rounds[-1]["metrics"] = measure(spec, registry, subject, data, data.x_train.device, parent, trainer.timing, 0,
                                        independent)

    def fresh_state(r: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(int(np.random.SeedSequence([spec.seed, 2, r]).generate_state(1)[0]))
        return build_model(registry, spec, data).state_dict()

    for r in range(1, prune.rounds + 1):
        events.append(pruner.event(trainer.total_steps, pruner.round_cuts(), trainer.evaluate_test, round=r))
        resume = rewind.rewind(RewindContext(model, checkpoint, lambda r=r: fresh_state(r),
                                             trainer.steps_per_epoch, trainer.total_steps, r))
        trainer.forget_evaluation()
        if pruner.after_step is not None:
            pruner.after_step()  # the masks again: a rewind reloads pruned weights too
        ctx.optimizer = trainer.new_optimizer()
        if prune.data_order_stability:  # the second copy starts here too
            start = {"model": _clone_state(model.state_dict()), "optimizer": None}
        curves, _ = trainer.train(resume.step, data_seed, resume.replay_lr, before_batch=pruner.before_batch,
                                  after_step=pruner.after_step)
        rounds.append(_round_summary(r, pruner, curves, resume.step, resume.replay_lr))
        if prune.data_order_stability:
            rounds[-1].update(_twin(trainer, pruner, start, resume.step, resume.replay_lr, twin_seed,
                                    prune.lmc_points))
        if spec.metrics:
            rounds[-1]["metrics"] = measure(spec, registry, Evaluated(model), data, data.x_train.device, parent,
                                            trainer.timing, r, independent)
        ctx.optimizer = trainer.optimizer
    pruner.detach()
    last = rounds[-1]
    metrics = {"best_test_acc_by_round": [x["best_test_acc"] for x in rounds],
               "sparsity_by_round": [x["sparsity"] for x in rounds]}
    if prune.data_order_stability:
        metrics.update(lmc_barrier=last["lmc"]["barrier"], weight_distance=last["weight_distance"],
                       lmc_barrier_by_round=[x["lmc"]["barrier"] for x in rounds])
    return {"curves": curves, "events": events, "best_test_acc": last["best_test_acc"], "rounds": rounds,
            "metrics": metrics, "parent": "cached" if cached else "trained"}


def _round_summary(r: int, pruner: _Pruner, curves: dict[str, list], start: int, replay_lr: bool) -> dict:
    return {"round": r, "sparsity": pruner.sparsity(), "remaining": {n: s.n_alive for n, s in pruner.layers.items()},
            "start_step": start, "replay_lr": replay_lr, "final_test_acc": curves["test_acc"][-1],
            "best_test_acc": max(curves["test_acc"]), "curves": curves}


def _twin(trainer: _Trainer, pruner: _Pruner, start: dict, start_step: int, replay_lr: bool, twin_seed: int,
          points: int) -> dict[str, Any]:
    """Train a second copy from ``start`` with another data order; compare it with the first (the model now)."""
    model = trainer.model
    first = _clone_state(model.state_dict())
    first_optimizer = trainer.optimizer
    model.load_state_dict(start["model"])
    trainer.new_optimizer(start["optimizer"])
    curves, _ = trainer.train(start_step, twin_seed, replay_lr, after_step=pruner.after_step, every_epoch=False)
    second = _clone_state(model.state_dict())
    model.load_state_dict(first)
    trainer.optimizer = first_optimizer
    trainer.forget_evaluation()  # the last one was the second copy's
    t0 = time.perf_counter()
    lmc = linear_mode_connectivity(model, first, second, trainer.data.x_test, trainer.data.y_test, points)
    trainer.timing["lmc_s"] = trainer.timing.get("lmc_s", 0.0) + time.perf_counter() - t0
    weights = [f"{layer.spec.conv}.weight" for layer in pruner.layers.values()]
    return {"twin_final_test_acc": curves["test_acc"][-1], "weight_distance": weight_distance(first, second, weights),
            "lmc": lmc}


def weight_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], keys: list[str]) -> float:
    """||a - b|| / mean(||a||, ||b||) over the (masked) weights ``keys``: 0 for equal, about 1.41 for unrelated."""
    va = torch.cat([a[k].flatten().double() for k in keys])
    vb = torch.cat([b[k].flatten().double() for k in keys])
    norm = (va.norm() + vb.norm()) / 2
    return float((va - vb).norm() / norm) if norm > 0 else 0.0


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict:
    """(1 - alpha) a + alpha b for every floating tensor (parameters and BN statistics); others from a."""
    return {k: (1 - alpha) * v + alpha * b[k] if v.is_floating_point() else v for k, v in a.items()}


def linear_mode_connectivity(model: nn.Module, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor],
                             x: torch.Tensor, y: torch.Tensor, points: int = 30) -> dict[str, Any]:
    """Test error at ``points`` evenly spaced points from a to b; barrier = max error - mean of the endpoints."""
    probe = copy.deepcopy(model)
    alphas = np.linspace(0.0, 1.0, points).tolist()
    errors = []
    for alpha in alphas:
        probe.load_state_dict(interpolate_state(a, b, alpha))
        errors.append(1.0 - evaluate(probe, x, y)[0])
    return {"alpha": alphas, "test_error": errors, "barrier": max(errors) - (errors[0] + errors[-1]) / 2,
            "points": points}
