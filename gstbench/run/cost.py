"""What a suite will cost before it runs: trained images, forward and backward FLOPs, and GPU hours at a stated rate.

Counted: every training step (3 x the forward FLOPs: forward, and backward at twice the
forward), the test-set pass after every epoch, and the two passes of every pruning event.
Parents that cells share (the parent cache) are counted once. Metrics (flatness, shifted
test sets) are not counted. FLOPs per image are twice the unpruned model's MACs, so pruned
training is over-counted a little: from the model's and the dataset's declared shapes
(gstbench/shapes.py, the count torch-pruning's counter gives; no torch is imported), else
from torch-pruning's counter on the model built once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gstbench.plan.config import CellSpec
from gstbench.store.parents import parent_key
from gstbench.plan.schedule import build_schedule
from gstbench.plan.checks import matrix_key
from gstbench.plan.suite import Suite, collector_paused
from gstbench.plugins import Registry

# An assumed achieved rate, not a measurement: CIFAR-sized convnets at batch 128 keep a GPU's
# tensor cores mostly idle; 10 TFLOP/s is about 11,000 VGG11-BN training images/s.
# Measure a GPU with benchmarks/gpu_throughput.py and pass --tflops.
DEFAULT_TFLOPS = 10.0


@dataclass
class _Shape:
    n_train: int
    n_test: int
    flops: float  # forward FLOPs per image (2 x MACs)


def _shape(registry: Registry, spec: CellSpec, cache: dict, placeholders: bool) -> _Shape:
    key = f"{spec.model.canonical()}{spec.dataset.canonical()}"
    if key not in cache:
        data = registry.data_shape(spec.dataset)
        model = registry.model_shape(spec.model, data) if data is not None else None
        if model is not None:
            cache[key] = _Shape(data.n_train, data.n_test, 2.0 * model.macs)
        else:  # a plugin's component that declares no shapes: built once, and counted
            import torch_pruning as tp

            data = registry.load_data(spec.dataset, placeholders)
            model = registry.build_model(spec.model, data).eval()
            macs, _ = tp.utils.count_ops_and_params(model, example_inputs=data.x_train[:1].clone())
            cache[key] = _Shape(data.x_train.shape[0], data.x_test.shape[0], 2.0 * float(macs))
    return cache[key]


def _resume_step(registry: Registry, spec: CellSpec, spe: int, total: int) -> int:
    rewind = registry.build("rewinds", spec.rewind)
    if hasattr(rewind, "resume_step"):
        return rewind.resume_step(spe, total)
    return rewind.checkpoint_step(spe, total) or 0


def estimate(suite: Suite, registry: Registry, tflops: float = DEFAULT_TFLOPS, placeholders: bool = False) -> dict[str, Any]:
    """Images trained, FLOPs, and hours on one GPU achieving ``tflops`` TFLOP/s, for the whole matrix.

    ``placeholders``: datasets that offer a stand-in are not read (their files may be absent).
    """
    with collector_paused():
        return _estimate(suite, registry, tflops, placeholders)


def _estimate(suite: Suite, registry: Registry, tflops: float, placeholders: bool) -> dict[str, Any]:
    shapes: dict = {}
    schedules: dict = {}
    parents: set[str] = set()
    images = flops = 0.0
    epochs = 0.0
    for spec in suite.cells:
        shape = _shape(registry, spec, shapes, placeholders)
        spe = spec.train.steps_per_epoch(shape.n_train)
        total = spec.train.epochs * spe
        prune = spec.prune
        rounds = prune.rounds if prune else 0
        runs: list[float] = []  # training runs, in steps
        if prune is None or rounds:  # the parent cache trains each parent once
            key = parent_key(spec, "cpu")
            if key not in parents:
                parents.add(key)
                runs.append(total)
        else:
            runs.append(total)
        events = 0
        if rounds:
            retrain = total - _resume_step(registry, spec, spe, total)
            runs += [retrain] * rounds
            if prune.data_order_stability:
                runs += [retrain] * (rounds + 1)
            events = rounds
        elif prune is not None:
            # The event steps do not depend on the unit counts (those only size each cut); load_suite
            # has already checked the schedule against the real ones.
            key = matrix_key((prune, spe, total))
            if key not in schedules:
                schedules[key] = len(build_schedule(prune, {name: 10**6 for name, _ in prune.layers}, spe, total))
            events = schedules[key]
        steps = sum(runs)
        trained = steps * spec.train.batch_size
        evaluated = (steps / spe + 2 * events) * shape.n_test
        images += trained
        epochs += steps / spe
        flops += shape.flops * (3 * trained + evaluated)
    hours = flops / (tflops * 1e12) / 3600
    return {"cells": len(suite.cells), "epochs": epochs, "train_images": images, "flops": flops,
            "tflops_assumed": tflops, "gpu_hours": hours}


def describe(cost: dict[str, Any]) -> str:
    hours = cost["gpu_hours"]
    time = f"{hours:,.1f} GPU-hours" if hours >= 1 else f"{hours * 60:.1f} GPU-minutes"
    assumed = "the default, an assumption" if cost["tflops_assumed"] == DEFAULT_TFLOPS else "--tflops"
    return (f"cost estimate: {cost['epochs']:,.0f} training epochs ({cost['train_images']:.3g} images), "
            f"{cost['flops']:.3g} FLOPs (training steps, test passes; parents counted once; metrics not "
            f"counted)\n  = {time} at {cost['tflops_assumed']:g} TFLOP/s achieved ({assumed}; "
            f"benchmarks/gpu_throughput.py measures a GPU)"
            + (f"; {hours / 8:,.1f} hours on 8 GPUs" if hours > 8 else ""))
