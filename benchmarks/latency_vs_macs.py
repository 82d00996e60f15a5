"""Benchmark: does 50% filter pruning make inference faster by as much as it cuts MACs, on this machine's CPU?

For VGG11-BN (CIFAR-shaped input, 3x32x32) and the quick scale's 1-D VGG-style CNN (MNIST-1D
shape, 1x40), it removes half of every prunable layer's filters (the smallest L1 norms) with
torch-pruning, counts MACs with torch-pruning's counter, and times the slim network against the
dense one with the `latency` metric's own timer (gstbench/builtin/latency.py: the two take turns,
warm-up first, median of repeats) at batch 1 and a large batch, with 1 and 2 CPU threads.
It prints, per setting, both medians, the speed-up (dense / slim) and the MAC ratio (dense /
slim): the speed-up would equal the MAC ratio if time followed MACs. Weights are seeded random
initializations (time does not depend on their values).

    python benchmarks/latency_vs_macs.py [--repeats 15] [--threads 1 2]
"""

from __future__ import annotations

import argparse

import torch
import torch_pruning as tp
from tabulate import tabulate

from gstbench.builtin import latency
from gstbench.builtin.models import cnn1d, vgg11_bn
from gstbench.builtin.impl.metrics import device_name
from gstbench.pruning import layer_states, remove_filters

import tiny

MODELS = {"vgg11-bn (3x32x32)": (vgg11_bn, (3, 32, 32), 10, 64),
          "cnn1d (1x40)": (cnn1d, (1, 40), 10, 256)}


def half_pruned(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """``model`` with the smallest-L1 half of every declared prunable layer's filters removed."""
    for name in list(model.prunable_layers):
        layer = layer_states(model, [name])[name]
        norms = layer.conv.weight.detach().flatten(1).abs().sum(1)
        remove_filters(model, layer, norms.argsort()[: layer.n_physical // 2], None, example)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.repeats, args.warmup, args.threads = 2, 1, [1]
    rows = []
    for label, (factory, shape, classes, large) in MODELS.items():
        torch.manual_seed(0)
        dense = factory(shape, classes).eval()
        example = torch.randn(1, *shape)
        slim = half_pruned(factory(shape, classes), example)
        macs_dense, params_dense = tp.utils.count_ops_and_params(dense, example)
        macs_slim, params_slim = tp.utils.count_ops_and_params(slim, example)
        x = torch.randn(large, *shape)
        for threads in args.threads:
            torch.set_num_threads(threads)
            timed = latency.compare(slim, dense, x, {"1": 1, str(large): large}, args.warmup, args.repeats)
            for batch, t in timed.items():
                rows.append([label, threads, batch, f"{t['parent_ms']['median']:.3f} ± {t['parent_ms']['iqr']:.3f}",
                             f"{t['pruned_ms']['median']:.3f} ± {t['pruned_ms']['iqr']:.3f}", f"{t['speedup']:.2f}",
                             f"{macs_dense / macs_slim:.2f}", f"{params_dense / params_slim:.2f}"])
    print(f"CPU: {device_name(torch.device('cpu'))}; torch {torch.__version__}; {args.repeats} repeats after "
          f"{args.warmup} warm-up passes; median ± interquartile range (ms)")
    print(tabulate(rows, headers=["model", "threads", "batch", "dense ms", "50%-pruned ms", "speed-up",
                                  "MAC ratio", "param ratio"], tablefmt="github"))


if __name__ == "__main__":
    main()
