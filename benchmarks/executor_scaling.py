"""Benchmark: cells per hour with 1 and 2 workers, for the process pool and (when installed) Ray, in one run.

Runs the same matrix (a tradeoff-like suite on MNIST-1D, 8 cells: 2 targets x 4 seeds) into a
fresh directory per setting, through the real CLI, and prints cells/hour and the 2-worker /
1-worker ratio per executor. Every setting runs one CPU thread per cell, so the results are
bitwise equal across settings (checked) and the ratio is the executor's scaling alone.

    python benchmarks/executor_scaling.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

from gstbench.testing import stored_results

import tiny

SUITE = """
name = "scaling"
seeds = 4
[base]
model = "cnn1d"
dataset = {{ name = "mnist1d", num_samples = 3000, train_split = 0.25 }}
train = {{ epochs = {epochs}, batch_size = 128 }}
prune = {{ scorer = "bn-gamma", target = "smallest", effector = "mask", start = "2ep", end = "{end}ep", period = "2ep", layers = {{ conv4 = {{ fraction = 0.5 }} }} }}
[axes]
"prune.target" = ["smallest", "largest"]
[scales.quick]
"""


def run(suite: Path, executor: str, workers: int, small: bool) -> tuple[float, dict]:
    out = Path(tempfile.mkdtemp(prefix=f"scaling-{executor}-{workers}-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_ADDRESS": ""}
    cmd = ["run", "--suite", str(suite), "--out", str(out), "--json", "--executor", executor]
    if executor != "sequential":
        cmd += ["--workers", str(workers)]
    t0 = time.perf_counter()
    proc = tiny.gstbench(cmd, small, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{executor} x{workers} failed:\n{proc.stderr[-2000:]}")
    results = stored_results(out)
    return wall, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per cell, at least 6 (pruning from epoch 2 to 4 before the end)")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.epochs < 6:
        parser.error(f"--epochs {args.epochs}: at least 6 (the cells prune from epoch 2 to 4 epochs before the end)")
    suite = Path(tempfile.mkdtemp()) / "scaling.toml"
    suite.write_text(tiny.TINY_SUITE if args.tiny else SUITE.format(epochs=args.epochs, end=args.epochs - 4))
    executors = ["pool"] + (["ray"] if importlib.util.find_spec("gstbench_ray") and not args.tiny else [])
    print(f"{os.cpu_count()} CPU cores; {'3 tiny cells' if args.tiny else f'8 cells of {args.epochs} epochs'}; one thread per cell; "
          f"wall time of the whole `gstbench run` (start-up included)")
    reference = None
    for executor in executors:
        rates = {}
        for workers in (1, 2):
            wall, results = run(suite, executor, workers, args.tiny)
            if reference is None:
                reference = results
            assert results == reference, f"{executor} x{workers}: results differ from the first run"
            rates[workers] = len(results) / wall * 3600
            print(f"{executor:>5} x{workers}: {wall:6.1f} s, {rates[workers]:7.0f} cells/hour", flush=True)
        print(f"{executor:>5}: 2 workers / 1 worker = {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
