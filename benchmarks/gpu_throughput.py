"""Benchmark (any CUDA machine): VGG11-BN epochs on CIFAR-shaped data, through gstbench and through a bare loop.

Synthetic data of CIFAR-10's shape (50,000 train / 10,000 test images, 3x32x32, 10 classes,
random labels) lives on the GPU. For batch 128 and 512, fp32 and bf16, it runs one gstbench
cell (VGG11-BN, Adam, no pruning, a test evaluation after every epoch) and a bare PyTorch
loop doing the same training steps (same model, channels-last, autocast), and prints:
  - training images/s of the steady-state epochs (the first epoch, with cuDNN autotuning, is left out);
  - the achieved share of the GPU's peak, counting 3 x forward FLOPs per trained image
    (forward, and backward at twice the forward);
  - gstbench's epoch time over the bare loop's (its overhead on a GPU).
fp32 convolutions run on TF32 tensor cores (PyTorch's default, cudnn.allow_tf32); the share is
given against the TF32 peak for fp32 and the bf16 peak for bf16 (dense, from NVIDIA's data sheets).

    python benchmarks/gpu_throughput.py [--epochs 3] [--batches 128 512] [--peak-tflops TF32 BF16]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch_pruning as tp
from torch.nn import functional as F

from gstbench.builtin.models import vgg11_bn
from gstbench.components import TensorData
from gstbench.plan.parse import cell_from_config
from gstbench.engine import run_cell
from gstbench.plugins import Registry, hookimpl

import tiny

# Dense peak TFLOP/s (TF32 tensor core, bf16 tensor core) from NVIDIA's data sheets.
PEAKS = {"H100 PCIe": (378.0, 756.0), "H100": (494.7, 989.4), "H200": (494.7, 989.4), "A100": (156.0, 312.0),
         "L40S": (183.0, 362.0), "A10": (62.5, 125.0), "V100": (15.7, 125.0)}
N_TRAIN, N_TEST = 50_000, 10_000


class SyntheticCifar:
    @hookimpl
    def register_datasets(self, register):
        register("synthetic-cifar", synthetic_cifar)


def synthetic_cifar():
    """CIFAR-10-shaped random images and labels (seeded)."""
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.randn(N_TRAIN, 3, 32, 32, generator=g), torch.randint(0, 10, (N_TRAIN,), generator=g),
                      torch.randn(N_TEST, 3, 32, 32, generator=g), torch.randint(0, 10, (N_TEST,), generator=g), 10)


def peak_for(name: str) -> tuple[float, float] | None:
    for key in sorted(PEAKS, key=len, reverse=True):  # "H100 PCIe" before "H100"
        if key in name:
            return PEAKS[key]
    return None


def gstbench_epochs(registry, batch: int, precision: str, epochs: int) -> list[float]:
    """Seconds of each epoch of one gstbench cell (progress timestamps; each includes its test evaluation)."""
    config = {"model": "vgg11-bn", "dataset": "synthetic-cifar", "prune": False,
              "train": {"epochs": epochs, "batch_size": batch, "precision": precision}}
    spec = cell_from_config(config, 0, registry)
    stamps: list[float] = []

    def progress(done, total):
        torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    torch.cuda.synchronize()
    start = time.perf_counter()
    result = run_cell(spec, registry, device="cuda", progress=progress)
    if result.status != "ok":
        raise SystemExit(result.error)
    return [b - a for a, b in zip([start] + stamps, stamps)]


def bare_epochs(batch: int, precision: str, epochs: int) -> list[float]:
    """The same steps and per-epoch test evaluation in a plain loop."""
    data = synthetic_cifar()
    x, y = data.x_train.cuda().contiguous(memory_format=torch.channels_last), data.y_train.cuda()
    xt, yt = data.x_test.cuda().contiguous(memory_format=torch.channels_last), data.y_test.cuda()
    torch.manual_seed(0)
    model = vgg11_bn((3, 32, 32), 10).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    bf16 = precision == "bf16"
    times = []
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        order = torch.randperm(N_TRAIN, generator=gen).cuda()
        model.train()
        for i in range(0, N_TRAIN, batch):
            idx = order[i:i + batch]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            correct = sum((model(xt[i:i + 2048]).argmax(1) == yt[i:i + 2048]).sum() for i in range(0, N_TEST, 2048))
        float(correct)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--peak-tflops", type=float, nargs=2, metavar=("TF32", "BF16"), default=None)
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.epochs, args.batches = 2, [128]
    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to measure (this benchmark needs one)")
        return
    name = torch.cuda.get_device_name()
    peaks = tuple(args.peak_tflops) if args.peak_tflops else peak_for(name)
    macs, _ = tp.utils.count_ops_and_params(vgg11_bn((3, 32, 32), 10), example_inputs=torch.randn(1, 3, 32, 32))
    train_flops = 3 * 2 * macs  # per trained image
    print(f"{name}; torch {torch.__version__}; VGG11-BN {macs / 1e6:.1f} MMAC per image; "
          f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}; peaks (TF32, bf16 TFLOP/s): {peaks or 'unknown'}")
    registry = Registry(extra_plugins=[("bench", SyntheticCifar())])
    print(f"{'batch':>5} {'precision':>9} {'gstbench img/s':>15} {'bare img/s':>11} {'overhead':>9} {'of peak':>8}")
    for batch in args.batches:
        for precision in ("fp32", "bf16"):
            ours = gstbench_epochs(registry, batch, precision, args.epochs)[1:]
            bare = bare_epochs(batch, precision, args.epochs)[1:]
            ours_s, bare_s = min(ours), min(bare)
            rate = N_TRAIN / ours_s
            share = "-" if peaks is None else \
                f"{100 * rate * train_flops / (peaks[precision == 'bf16'] * 1e12):.1f}%"
            print(f"{batch:>5} {precision:>9} {rate:>15,.0f} {N_TRAIN / bare_s:>11,.0f} "
                  f"{ours_s / bare_s - 1:>+9.1%} {share:>8}", flush=True)
    print("img/s: training images per second of an epoch that includes its 10,000-image test evaluation "
          "(the best of the steady-state epochs); of peak: 6 x MACs per image x img/s over the dense peak")


if __name__ == "__main__":
    main()
