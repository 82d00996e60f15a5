"""Benchmark: one quick tradeoff cell through gstbench vs a bare PyTorch loop doing the same work.

Both run in this process on the same data, model, seeds, schedule and evaluations:
Adam, per-epoch test evaluation, t_pre/t_post evaluations at each pruning event,
BatchNorm-|gamma| scores, smallest target, masking of the filters, BN gamma/beta and
the consumers' input slices (conv4's consumer is the flattened classifier) after every
step, and a final train-set evaluation. The bare loop must reach the same test accuracies (it checks), so
the ratio compares equal work. Runs alternate to spread machine noise; printed: the median of
the paired runs' ratios (each gstbench run over the bare run right after it, so that the
machine's drift cancels within a pair), the ratio of medians and that of minima.

    python benchmarks/bench_harness_overhead.py [--repeats 5] [--target smallest] [--period 1ep]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time

import torch
from torch.nn import functional as F

from gstbench.plan.config import steps_to_int
from gstbench.engine import run_cell
from gstbench.engine.evaluation import EVAL_BATCH
from gstbench.engine.setup import seed_everything
from gstbench.plugins import get_registry
from gstbench.plan.schedule import build_schedule
from gstbench.plan.suite import load_suite

import tiny

EVAL = EVAL_BATCH["cpu"]  # the engine's CPU evaluation batch: the same work


def quick_cell(registry, target: str, period: str, small: bool = False):
    suite = load_suite(registry, "tradeoff", seeds=1, overrides=tiny.overrides(small))
    for spec in suite.cells:
        if spec.prune and spec.prune.target.id.endswith(f":{target}") and spec.prune.layers[0][1].period == period:
            return spec
    raise SystemExit(f"no tradeoff cell with target {target} and period {period}")


def pick(scores, alive, count, target, prune_gen, tie_seed):
    """The target's units: ties among alive scores broken by a permutation drawn from ``tie_seed`` (gstbench's
    rule), then the smallest, the largest, or a random draw from the cell's pruning generator."""
    _, counts = torch.unique(scores[alive], return_counts=True)
    order = (torch.randperm(scores.numel(), generator=torch.Generator().manual_seed(tie_seed))
             if bool((counts > 1).any()) else torch.arange(scores.numel()))
    candidates = alive[order].nonzero().flatten()
    if target == "random":
        chosen = candidates[torch.randperm(candidates.numel(), generator=prune_gen)[:count]]
    else:
        ranked = torch.argsort(scores[order][candidates], descending=target == "largest", stable=True)
        chosen = candidates[ranked[:count]]
    return order[chosen]


def bare_loop(spec, registry, target: str) -> list[float]:
    """The same cell written as a plain PyTorch script; returns the per-epoch test accuracies."""
    data_seed, prune_seed = seed_everything(spec.seed)
    data = registry.load_data(spec.dataset)
    torch.manual_seed(spec.seed)
    model = registry.build_model(spec.model, data)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=spec.train.lr)
    n, bs = data.x_train.shape[0], spec.train.batch_size
    spe = math.ceil(n / bs)
    milestones = [steps_to_int(m, spe, spe * spec.train.epochs) for m in spec.train.milestones]
    names = [name for name, _ in spec.prune.layers]
    convs = {k: model.get_submodule(model.prunable_layers[k].conv) for k in names}
    bns = {k: model.get_submodule(model.prunable_layers[k].bn) for k in names}
    schedule = build_schedule(spec.prune, {k: convs[k].weight.shape[0] for k in names}, spe, spec.train.epochs * spe)
    length = data.input_shape[-1] // 4  # after the two max-pools of cnn1d
    classifier = model.classifier.weight
    dead = {k: torch.zeros(0, dtype=torch.long) for k in names}

    def zero_dead():
        with torch.no_grad():
            for k in names:
                d = dead[k]
                convs[k].weight[d] = 0
                bns[k].weight[d] = 0
                bns[k].bias[d] = 0
            model.features.block4.conv.weight[:, dead["conv3"]] = 0
            cols = (dead["conv4"][:, None] * length + torch.arange(length)).flatten()
            classifier[:, cols] = 0

    def test_acc():
        model.eval()
        with torch.inference_mode():
            acc = sum(int((model(data.x_test[i:i + EVAL]).argmax(1) == data.y_test[i:i + EVAL]).sum())
                      for i in range(0, data.x_test.shape[0], EVAL)) / data.x_test.shape[0]
        model.train()
        return acc

    gen = torch.Generator().manual_seed(data_seed)
    prune_gen = torch.Generator().manual_seed(prune_seed)
    accs, step = [], 0
    for epoch in range(spec.train.epochs):
        order = torch.randperm(n, generator=gen)
        for b in range(spe):
            if step in schedule:
                if not (b == 0 and accs):  # at an epoch boundary t_pre is the epoch's accuracy, as in gstbench
                    test_acc()
                for salt, cut in enumerate(schedule[step]):
                    alive = torch.ones(convs[cut.layer].weight.shape[0], dtype=torch.bool)
                    alive[dead[cut.layer]] = False
                    scores = bns[cut.layer].weight.detach().abs().float()
                    chosen = pick(scores, alive, cut.count, target, prune_gen,
                                  (prune_seed * 1_000_003 + step) * 64 + salt)
                    dead[cut.layer] = torch.cat([dead[cut.layer], chosen]).sort().values
                zero_dead()
                test_acc()
            if step in milestones:
                for g in opt.param_groups:
                    g["lr"] *= spec.train.gamma
            idx = order[b * bs:(b + 1) * bs]
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            zero_dead()
            step += 1
        accs.append(test_acc())
    model.eval()
    with torch.inference_mode():
        model(data.x_train)
    return accs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target", default="smallest")
    parser.add_argument("--period", default="1ep")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.repeats = 1
    registry = get_registry()
    spec = quick_cell(registry, args.target, args.period, args.tiny)
    registry.load_data(spec.dataset)  # generate the data once, outside the timings
    run_cell(copy.deepcopy(spec), registry)  # first calls import what both loops use (torch._dynamo, torch-pruning)
    bare_loop(spec, registry, args.target)
    gst_times, bare_times = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        result = run_cell(copy.deepcopy(spec), registry)
        gst_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        accs = bare_loop(spec, registry, args.target)
        bare_times.append(time.perf_counter() - t0)
        assert result.status == "ok", result.error
        same = max(abs(a - b) for a, b in zip(accs, result.curves.test_acc))
        if same > 2e-3:
            raise SystemExit(f"the bare loop did different work: test accuracies differ by {same:.4f}")
    gst, bare = statistics.median(gst_times), statistics.median(bare_times)
    # each gstbench run beside the bare run right after it: the machine's drift (often 10% within a minute on a
    # shared VM) cancels within a pair
    paired = statistics.median(g / b for g, b in zip(gst_times, bare_times))
    print(f"cell: tradeoff quick, target {args.target}, period {args.period}, "
          f"{result.metrics['n_events']} events, {len(accs)} epochs, torch threads {torch.get_num_threads()}")
    print(f"gstbench run_cell : median {gst:.3f} s  ({', '.join(f'{t:.3f}' for t in gst_times)})")
    print(f"bare PyTorch loop : median {bare:.3f} s  ({', '.join(f'{t:.3f}' for t in bare_times)})")
    print(f"ratio gstbench / bare = {paired:.3f}, the median of the {len(gst_times)} paired runs' ratios "
          f"(overhead {100 * (paired - 1):+.1f}%); {gst / bare:.3f} of medians, "
          f"{min(gst_times) / min(bare_times):.3f} of minima")


if __name__ == "__main__":
    main()
