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
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from gstbench.builtin.latency import batch_input, summary_ms, time_in_turns
from gstbench.engine.evaluation import eval_mode
from gstbench.errors import GstbenchError


WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layers whose single weights pruning zeroes


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
    seconds, the outputs' distance from eager, both summaries and the speed-ups; ``macs``: (parent, pruned). A
    runtime marked ``sparse`` is timed against the parent dense in eager, or in its ``baseline`` runtime where it
    names one (the fp16 2:4 kernels: fp16 eager)."""
    from gstbench.builtin.impl.runtimes import Eager

    eager = Eager()
    models = {"pruned": pruned, "parent": parent}
    out: dict[str, dict[str, Any]] = {}
    with eval_mode(pruned), eval_mode(parent):  # as the runtimes expect them; each model's own mode restored after
        # each batch's input and eager's outputs on it, once, which every runtime's outputs must match
        inputs = {label: batch_input(x, batch) for label, batch in batches.items()}
        with torch.inference_mode():
            eager_out = {label: {role: m(xb) for role, m in models.items()} for label, xb in inputs.items()}
        for name, runtime in runtimes.items():
            # a sparse format is timed against the dense parent in eager (at its precision: its ``baseline``), the
            # baseline it competes with
            baseline = getattr(runtime, "baseline", None) or eager
            runs = {"pruned": runtime, "parent": baseline if getattr(runtime, "sparse", False) else runtime}
            why = runs["pruned"].unavailable(pruned, x.device) or runs["parent"].unavailable(parent, x.device)
            out[name] = {"unavailable": why} if why else {
                label: _timed(name, runtime, runs, models, xb, eager_out[label], macs, warmup, repeats)
                for label, xb in inputs.items()}
    return out


def _timed(name: str, runtime: Any, runs: dict[str, Any], models: dict[str, nn.Module], xb: torch.Tensor,
           reference: dict[str, torch.Tensor], macs: tuple[float, float], warmup: int, repeats: int) -> dict[str, Any]:
    """One runtime's row of ``measure`` at one batch ``xb``; ``runs``: which runtime runs each of the two networks,
    ``reference``: eager's outputs of each on ``xb``."""
    calls, prepare_s, diff = {}, {}, {}
    if hasattr(runtime, "fresh"):  # e.g. torch.compile's caches, so that each pair compiles for itself
        runtime.fresh()
    for role, model in models.items():
        t0 = time.perf_counter()
        calls[role] = runs[role].prepare(model, xb)
        prepare_s[role] = time.perf_counter() - t0
        diff[role] = check_outputs(name, reference[role], calls[role](xb), runtime.tolerance)
    with timing_alone():
        seconds = time_in_turns(calls, xb, warmup, repeats)
    mine, theirs = summary_ms(seconds["pruned"]), summary_ms(seconds["parent"])
    return {"batch": xb.shape[0], "prepare_s": prepare_s, "max_abs_diff": diff, "pruned_ms": mine, "parent_ms": theirs,
            **speedups(theirs["median"], mine["median"], *macs)}


def sizes(parent: nn.Module, pruned: nn.Module, parent_params: float, pruned_params: float) -> dict[str, Any]:
    """Parameters (the pruned network's non-zero ones: zeros stored are not parameters it needs) and bytes on disk
    (``torch.save`` of each state dict: the pruned network as it is, dense, and, where weights of its linear and
    convolution layers hold zeros, those weights as CSR, rows the output units)."""
    import io

    def saved(state: dict[str, torch.Tensor]) -> int:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.tell()

    from gstbench.builtin.impl.runtimes import to_csr

    state = {k: v.detach().cpu() for k, v in pruned.state_dict().items()}
    zeros = {k: int((state[k] == 0).sum()) for k in (f"{name}.weight" for name, m in pruned.named_modules()
                                                     if isinstance(m, WEIGHTED)) if k in state}
    zeros = {k: n for k, n in zeros.items() if n}
    out = {"params": {"parent": parent_params, "pruned": pruned_params - sum(zeros.values())},
           "bytes": {"parent": saved({k: v.detach().cpu() for k, v in parent.state_dict().items()}),
                     "pruned": saved(state)}}
    if zeros:
        out["bytes"]["pruned_csr"] = saved({k: to_csr(v.flatten(1)) if k in zeros else v for k, v in state.items()})
    return out


def timing_alone() -> Any:
    """A lock held while timing, one per machine: two timings at once (a pool's cells) share caches, memory
    bandwidth and clock boost, and their medians drift apart; preparing (compiling, exporting) goes on meanwhile."""
    import tempfile

    from filelock import FileLock

    return FileLock(str(Path(tempfile.gettempdir()) / "gstbench-timing.lock"))


def zero_weight_macs(model: nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates per example that multiply a zero weight of a linear or convolution layer: what
    unstructured sparsity promises to save (a weight's MACs are one per output position it is applied at)."""
    counted: list[float] = []

    def hook(module, inputs, output):
        positions = output.numel() / (output.shape[0] * module.weight.shape[0])  # per example and output unit
        counted.append(positions * float((module.weight == 0).sum()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, WEIGHTED)]
    try:
        with torch.inference_mode(), eval_mode(model):
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    return sum(counted)


# measured speed by architecture: in dense kernels a network's time depends on its shapes, not its values, so the
# cells of one process whose networks have the same shapes (every method of a level of the methods suite, every
# seed) share one measurement, and do not differ by timing noise alone
_MEASURED: dict[tuple, dict[str, dict[str, Any]]] = {}
REMEMBERED = 64  # architectures a process keeps a measurement or an op count of, the oldest dropped first


def _remembered(cache: dict, key: Any, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """``cache[key]``, computed where missing (past ``REMEMBERED`` entries the oldest goes); and whether it was there."""
    found = key in cache
    if not found:
        cache[key] = compute()
        while len(cache) > REMEMBERED:
            cache.pop(next(iter(cache)))
    return cache[key], found


def architecture(model: nn.Module, zeros: bool) -> tuple:
    """What a network's time depends on: its modules and the shapes and types of its tensors; with ``zeros``,
    where its weights are zero too (a sparse format's time depends on it)."""
    import hashlib

    tensors = [*model.named_parameters(), *model.named_buffers()]
    out = (repr(model), tuple((n, tuple(t.shape), str(t.dtype)) for n, t in tensors))
    if zeros:
        digest = hashlib.sha256()
        for _, t in tensors:
            digest.update((t.detach() == 0).cpu().numpy().tobytes())
        out += (digest.hexdigest(),)
    return out


_COUNTED: dict[tuple, tuple[Any, Any]] = {}


def counted_ops(model: nn.Module, example: torch.Tensor) -> tuple[Any, Any]:
    """torch-pruning's count of ``model``'s MACs and parameters on ``example``, once per architecture and process:
    the count depends on the modules and their tensors' shapes, not on the values, and the counter deep-copies the
    model each time (a methods cell counts its network and its parent twice over)."""
    import torch_pruning as tp

    key = (architecture(model, zeros=False), model.training, tuple(example.shape), str(example.dtype))
    return _remembered(_COUNTED, key, lambda: tp.utils.count_ops_and_params(model, example))[0]


def key_of(runtime: str) -> str:
    """A runtime's name as its result keys carry it: ``sparse-csr`` -> ``sparse_csr``, the plugin dropped."""
    return runtime.rpartition(":")[2].replace("-", "_").replace(".", "_")


class SpeedMetric:
    """The ``speed`` metric: the pruned network (its dead units removed; single weights zeroed in place) against its
    parent in each runtime at batch 1 and ``batch``; predicted from MACs, dead units removed and zero weights
    not counted."""

    def __init__(self, runtimes: list[str], batch: int, warmup: int, repeats: int):
        if batch < 2 or warmup < 0 or repeats < 3 or not runtimes:
            raise ValueError("speed needs a runtime, batch >= 2, warmup >= 0 and repeats >= 3")
        self.runtimes, self.batch, self.warmup, self.repeats = list(runtimes), batch, warmup, repeats

    def compute(self, ctx: Any) -> dict[str, Any]:
        from gstbench.builtin.impl.metrics import device_name, slim_network
        from gstbench.plan.config import ComponentRef
        from gstbench.plugins import get_registry

        slim, removed = slim_network(ctx)
        parent, example = ctx.parent.model, ctx.data.x_test[:1]
        with torch.inference_mode(), eval_mode(parent), eval_mode(slim):
            parent_macs, parent_params = map(float, counted_ops(parent, example))
            slim_macs, slim_params = map(float, counted_ops(slim, example))
        pruned_macs = slim_macs - zero_weight_macs(slim, example)
        registry = get_registry()
        built = {key_of(r): registry.build("runtimes", ComponentRef(r if ":" in r else f"gstbench:{r}"))
                 for r in self.runtimes}
        batches = {"batch1": 1, "batch": self.batch}
        sparse = [k for k, r in built.items() if getattr(r, "sparse", False)]  # only their times see the zeros
        signature = (architecture(slim, zeros=bool(sparse) and pruned_macs < slim_macs),
                     architecture(parent, zeros=False),
                     tuple(example.shape[1:]), str(ctx.device), torch.get_num_threads(), tuple(self.runtimes),
                     self.batch, self.warmup, self.repeats)
        timed, shared = _remembered(_MEASURED, signature, lambda: measure(
            slim, parent, ctx.data.x_test, batches, built, (parent_macs, pruned_macs), self.warmup, self.repeats))
        measured = {runtime: rows if "unavailable" in rows else
                    {label: {**row, **speedups(row["parent_ms"]["median"], row["pruned_ms"]["median"], parent_macs,
                                               pruned_macs)} for label, row in rows.items()}
                    for runtime, rows in timed.items()}
        size = sizes(parent, slim, parent_params, slim_params)
        out: dict[str, Any] = {"speed_predicted": parent_macs / pruned_macs,
                               "speed_params_ratio": size["params"]["parent"] / size["params"]["pruned"],
                               "speed_disk_ratio": size["bytes"]["parent"] / size["bytes"]["pruned"]}
        if "pruned_csr" in size["bytes"]:
            out["speed_disk_csr_ratio"] = size["bytes"]["parent"] / size["bytes"]["pruned_csr"]
        unavailable = {}
        for runtime, rows in measured.items():
            if "unavailable" in rows:
                unavailable[runtime] = rows["unavailable"]
                continue
            for label, row in rows.items():
                prefix = f"speed_{runtime}_{label}"
                out.update({f"{prefix}_realized": row["realized"], f"{prefix}_delivered": row["delivered"],
                            f"{prefix}_ms": row["pruned_ms"]["median"],
                            f"{prefix}_parent_ms": row["parent_ms"]["median"],
                            # the timer's precision here: the wider interquartile range of the two, per median
                            f"{prefix}_spread": max(row[r]["iqr"] / row[r]["median"]
                                                    for r in ("pruned_ms", "parent_ms"))})
            out[f"speed_{runtime}_prepare_s"] = {label: row["prepare_s"] for label, row in rows.items()}
        out["speed_unavailable"] = unavailable
        out["speed_settings"] = {
            "runtimes": self.runtimes, "sparse": sparse,
            "batches": batches, "warmup": self.warmup, "repeats": self.repeats,
            "timed_alone": "one timing at a time on this machine",
            # the times of an earlier cell in this process whose networks have the same shapes (and zeros)
            "shared": shared,
            "device": str(ctx.device), "device_name": device_name(ctx.device),
            "threads": torch.get_num_threads(), "dead_units_removed": removed,
            "macs": {"parent": parent_macs, "pruned": pruned_macs, "pruned_dense": slim_macs}, **size,
            "statistic": "medians of repeats taken in turns; realized = parent / pruned; predicted = parent MACs / "
                         "pruned MACs (dead units removed, zero weights not counted); delivered = realized / predicted"}
        return out
