"""Benchmark: the default quick tradeoff run before and after cells ran in parallel by default, in one run.

Before: `gstbench run --suite tradeoff` as it was, one cell after another in one process on
torch's default thread count (the CPU's cores): `--executor sequential --threads <that>`.
After: the default, `gstbench run --suite tradeoff` (executor auto: one worker per usable core,
one torch thread each). Both through the real CLI into fresh directories, timed end to end
(start-up, every cell, the report). Then the same suite runs once more one cell after another
in one process at one thread (`--executor sequential --threads 1`, untimed): its stored results
must equal the default's bitwise (numbers depend on the thread count, not on the executor).

    python benchmarks/default_executor.py [--suite tradeoff] [--seeds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gstbench.builtin.executors import usable_cores
from gstbench.testing import stored_results

import tiny

ENV = {k: v for k, v in os.environ.items() if k not in ("GSTBENCH_EXECUTOR", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def run(suite: str, seeds: list[str], *options: str, small: bool = False) -> tuple[float, Path]:
    out = Path(tempfile.mkdtemp(prefix="default-executor-"))
    t0 = time.perf_counter()
    proc = tiny.gstbench(["run", "--suite", suite, *seeds, "--out", str(out), "--json", *options], small, env=ENV)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"gstbench run {' '.join(options)} failed:\n{proc.stderr[-3000:]}")
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="tradeoff")
    parser.add_argument("--seeds", default=None, help="override the suite's seeds (default: the suite's)")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.suite = str(Path(tempfile.mkdtemp()) / "tiny.toml")
        Path(args.suite).write_text(tiny.TINY_SUITE)
        args.seeds = "1"
    seeds = ["--seeds", args.seeds] if args.seeds else []
    if args.tiny:  # its numbers mean nothing: spare a fresh interpreter's import of torch
        torch_default = usable_cores()
    else:
        torch_default = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                           env=ENV, capture_output=True, text=True, check=True).stdout)
    before, _ = run(args.suite, seeds, "--executor", "sequential", "--threads", str(torch_default), small=args.tiny)
    after, default_dir = run(args.suite, seeds, small=args.tiny)
    _, reference = run(args.suite, seeds, "--executor", "sequential", "--threads", "1", small=args.tiny)
    ours, theirs = stored_results(default_dir), stored_results(reference)
    equal = ours.keys() == theirs.keys() and all(ours[h] == theirs[h] for h in ours)
    print(f"{args.suite} (quick), {len(ours)} cells; {usable_cores()} usable cores, torch's default "
          f"{torch_default} threads")
    print(f"before (sequential, {torch_default} threads):     {before:7.1f} s")
    print(f"after  (default: auto, 1 thread per cell): {after:7.1f} s")
    print(f"speed-up: {before / after:.2f}x")
    print(f"default's results equal sequential at 1 thread, bitwise: {equal}")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()
