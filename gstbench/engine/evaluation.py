"""Evaluation: accuracy and loss in eval mode (BatchNorm statistics untouched), and the cell's metrics.

``evaluate`` runs under ``torch.inference_mode`` and restores the model's train/eval mode.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from gstbench import stopping
from gstbench.components import NEEDS_INDEPENDENT, NEEDS_PARENT, Evaluated, MetricContext

if TYPE_CHECKING:
    from gstbench.engine.state import Cell

# Measured on 2 CPU cores (cnn1d, 2250 test signals, noisy VM): batch 256 took 47-64 ms per pass,
# 2048 took 66-70 ms; a GPU wants the large batch.
EVAL_BATCH = {"cpu": 256, "cuda": 2048}


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for a block (BatchNorm statistics and dropout frozen), the model's own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


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


def compares_with_parent(comp: Any) -> bool:
    """Whether a metric needs the cell's parent or the independently trained one."""
    return bool({NEEDS_PARENT, NEEDS_INDEPENDENT} & set(comp.capabilities))


def measure(cell: Cell, subject: Evaluated, parent: Evaluated | None, round_index: int | None,
            independent: Callable[[], Evaluated], keys: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Run the cell's metrics on ``subject``; each metric's wall time goes into ``metric_wall_s``.

    ``independent`` builds (once) the parent trained from another seed, for the metrics that declare it.
    ``keys``, when given, receives the keys each metric returned (by its label).
    """
    values: dict[str, Any] = {}
    wall: dict[str, float] = {}
    for ref in cell.spec.metrics:
        stopping.check()  # between metrics too: a deferred signal (a Slurm job's requeue) waits at most one
        comp = cell.registry.component("metrics", ref)
        metric = comp.factory(**ref.kwargs)
        other = independent() if NEEDS_INDEPENDENT in comp.capabilities else None
        t0 = time.perf_counter()
        ctx = MetricContext(subject, cell.data, cell.device, parent if compares_with_parent(comp) else None,
                            round_index, other)
        computed = metric.compute(ctx)
        if keys is not None:
            keys[ref.label] = list(computed)
        values.update(computed)
        wall[ref.label] = round(time.perf_counter() - t0, 4)
    cell.timing.add("metrics_s", sum(wall.values()))
    values["metric_wall_s"] = wall
    return values
