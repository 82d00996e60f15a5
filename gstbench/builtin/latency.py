"""Inference latency: the pruned network with its dead filters removed, timed against its unpruned parent.

The two models are timed in turns on the same input (pruned, parent, parent, pruned, ...),
after warm-up passes, so that a slow moment of the machine falls on both; each is summarised
by the median over repeats and the interquartile range. On a GPU every pass is bracketed by
``torch.cuda.synchronize``. What a number depends on (device, CPU threads, batch) is stated
with it; it compares within one machine, not across machines.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from gstbench.engine.evaluation import eval_mode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def time_in_turns(models: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, warmup: int,
                  repeats: int) -> dict[str, list[float]]:
    """Seconds of each of ``repeats`` forward passes of every model (a module, in eval mode while it is timed, or a
    runtime's prepared callable) on ``x``, the models taking turns."""
    names = list(models)
    seconds: dict[str, list[float]] = {n: [] for n in names}
    with contextlib.ExitStack() as stack:
        for model in models.values():
            if isinstance(model, nn.Module):
                stack.enter_context(eval_mode(model))
        for _ in range(warmup):
            for n in names:
                models[n](x)
        _sync(x.device)
        for r in range(repeats):
            for n in (names if r % 2 == 0 else names[::-1]):
                t0 = time.perf_counter()
                models[n](x)
                _sync(x.device)
                seconds[n].append(time.perf_counter() - t0)
    return seconds


def batch_input(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``batch`` examples of ``x`` (repeated where it holds fewer), contiguous."""
    if x.shape[0] < batch:
        x = x.repeat((batch + x.shape[0] - 1) // x.shape[0], *[1] * (x.dim() - 1))
    return x[:batch].contiguous()


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """Median and interquartile range, in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    q1, _, q3 = statistics.quantiles(ms, n=4, method="inclusive") if len(ms) > 1 else (ms[0], ms[0], ms[0])
    return {"median": statistics.median(ms), "iqr": q3 - q1, "min": ms[0]}


def compare(pruned: nn.Module, parent: nn.Module, x: torch.Tensor, batches: dict[str, int], warmup: int,
            repeats: int) -> dict[str, dict[str, Any]]:
    """Per batch label: both models' summaries and the speed-up (parent median / pruned median)."""
    out = {}
    for label, batch in batches.items():
        seconds = time_in_turns({"pruned": pruned, "parent": parent}, batch_input(x, batch), warmup, repeats)
        mine, theirs = summary_ms(seconds["pruned"]), summary_ms(seconds["parent"])
        out[label] = {"batch": batch, "pruned_ms": mine, "parent_ms": theirs,
                      "speedup": theirs["median"] / mine["median"] if mine["median"] > 0 else None}
    return out
