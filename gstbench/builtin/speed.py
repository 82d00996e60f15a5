"""Realized against predicted speed-up: a pruned network and its parent timed in a runtime, beside what MACs predict.

For each runtime and batch: both networks prepared (compiled, exported, converted; that time reported apart),
each one's outputs checked against eager's within the runtime's tolerance (a runtime that computes another
function has no speed worth reporting), then timed in turns (latency.py: warm-up, medians, interquartile
ranges). The realized speed-up is the parent's median over the pruned network's; the predicted one the parent's
MACs over the pruned network's; ``delivered`` = realized / predicted, the share of the promised speed-up the
runtime delivers (1: all of it; under 1/predicted: slower than the parent). A speed-up belongs to the hardware,
threads and runtime it was measured on.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from gstbench.builtin.latency import batch_input, summary_ms, time_in_turns
from gstbench.errors import GstbenchError


class OutputMismatch(GstbenchError):
    """A runtime's outputs stand further from eager's than its tolerance."""


def speedups(parent_ms: float, pruned_ms: float, parent_macs: float, pruned_macs: float) -> dict[str, float]:
    """Realized (time), predicted (MACs) and delivered (their ratio) speed-ups of a pruned network."""
    if min(parent_ms, pruned_ms, parent_macs, pruned_macs) <= 0:
        raise ValueError("times and MACs must be positive to make a speed-up of them")
    realized, predicted = parent_ms / pruned_ms, parent_macs / pruned_macs
    return {"realized": realized, "predicted": predicted, "delivered": realized / predicted}


def check_outputs(runtime: str, reference: torch.Tensor, got: torch.Tensor, tolerance: tuple[float, float]) -> float:
    """The largest absolute difference from eager's outputs; OutputMismatch, in one line, past ``tolerance``."""
    rtol, atol = tolerance
    got, reference = got.detach().to(reference.device, reference.dtype), reference.detach()
    diff = (got - reference).abs()
    if got.shape != reference.shape or bool((diff > atol + rtol * reference.abs()).any()):
        worst = float(diff.max()) if got.shape == reference.shape else float("inf")
        raise OutputMismatch(f"runtime {runtime} gives outputs {worst:.3g} from eager's (rtol {rtol:g}, atol "
                             f"{atol:g}): its times would not be those of the same network")
    return float(diff.max())


def measure(pruned: nn.Module, parent: nn.Module, x: torch.Tensor, batches: dict[str, int], runtimes: dict[str, Any],
            macs: tuple[float, float], warmup: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Per runtime (a name and its built ``Runtime``): ``{"unavailable": why}``, or per batch label the preparation
    seconds, the outputs' distance from eager, both summaries and the speed-ups; ``macs``: (parent, pruned)."""
    out: dict[str, dict[str, Any]] = {}
    for name, runtime in runtimes.items():
        why = runtime.unavailable(pruned, x.device) or runtime.unavailable(parent, x.device)
        if why:
            out[name] = {"unavailable": why}
            continue
        out[name] = {}
        for label, batch in batches.items():
            xb = batch_input(x, batch)
            calls, prepare_s, diff = {}, {}, {}
            for role, model in (("pruned", pruned), ("parent", parent)):
                t0 = time.perf_counter()
                calls[role] = runtime.prepare(model, xb)
                prepare_s[role] = time.perf_counter() - t0
                with torch.inference_mode():
                    reference = model.eval()(xb)
                diff[role] = check_outputs(name, reference, calls[role](xb), runtime.tolerance)
            seconds = time_in_turns(calls, xb, warmup, repeats)
            mine, theirs = summary_ms(seconds["pruned"]), summary_ms(seconds["parent"])
            out[name][label] = {"batch": batch, "prepare_s": prepare_s, "max_abs_diff": diff, "pruned_ms": mine,
                                "parent_ms": theirs, **speedups(theirs["median"], mine["median"], *macs)}
    return out
