"""Benchmark: what measuring a stored training costs against training again, from one run of real commands.

Times, as a user would run them (the CLI, the default executor, a fresh directory each):

1. `gstbench run --suite tradeoff`                                  the cold tradeoff run
2. `gstbench run --suite flatness --reuse <1>`                     flatness on the stored trainings
3. `gstbench run --suite flatness`                                  flatness from scratch
4. `gstbench run --suite tradeoff --metric hessian-trace --reuse <1>`  one metric added, as a run
5. `gstbench measure <copy of 1> --metric hessian-trace`            one metric added in place

and prints the ratios of wall time the issue set as goals: (2) / (3) at most 0.2, and (4) / (1) at
most 0.15 (with (5) / (1) beside it), and the ratio of the flatness cells' own seconds (what the
cells took, without the commands' start and the pool), to tell the design's cost from a busy
moment of a shared machine. It also checks that (2) stored the same numbers as (3), and prints the
bytes a cell keeps (models, trainings, results).

    python benchmarks/reuse_training.py [--seeds 7] [--scale quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from gstbench.testing.files import stored_results

import tiny

GOALS = {"flatness after tradeoff / flatness from scratch": 0.2, "tradeoff + hessian-trace / cold tradeoff": 0.15}


def gstbench(*args: str, small: bool = False) -> float:
    """Run one gstbench command (``small``: at the tiny size); its wall seconds (it must succeed)."""
    t0 = time.perf_counter()
    proc = tiny.gstbench(list(args), small)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"`gstbench {' '.join(args)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"  {seconds:8.1f} s  gstbench {' '.join(args)}", flush=True)
    return seconds


def cell_seconds(run: Path) -> tuple[float, float]:
    """The run's cells' own seconds, summed: (wall, metrics). What other tenants of a shared machine add to a
    command's wall time shows as the gap between the two ratios."""
    results = [json.loads(p.read_text()) for p in run.glob("cells/*/result.json")]
    return sum(r["wall_s"] for r in results), sum(r["timing"].get("metrics_s", 0.0) for r in results)


def bytes_under(path: Path, pattern: str) -> int:
    seen, total = set(), 0
    for p in path.rglob(pattern):
        st = p.stat()
        if p.is_file() and st.st_ino not in seen:  # a hard link counts once
            seen.add(st.st_ino)
            total += st.st_size
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default=None, help="gstbench run --seeds (default: the suites' 7)")
    parser.add_argument("--scale", default="quick")
    parser.add_argument("--workdir", type=Path, default=None, help="where the run directories go (default: a temp dir)")
    tiny.add_flag(parser)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gstbench-reuse-"))
    work.mkdir(parents=True, exist_ok=True)
    suites = {"tradeoff": "tradeoff", "flatness": "flatness"}
    executor = []
    if args.tiny:  # the same two-suite shape on tiny data (the second is the first with a flatness metric), in
        # one process: a worker pool's start would be most of each command's seconds
        suites = {name: str(work / f"{name}.toml") for name in suites}
        Path(suites["tradeoff"]).write_text(tiny.TINY_SUITE)
        Path(suites["flatness"]).write_text(tiny.TINY_SUITE.replace("[axes]", "metrics = [\"hessian-trace\"]\n[axes]"))
        executor = ["--executor", "sequential"]
    common = ["--scale", args.scale, *(["--seeds", args.seeds] if args.seeds else []), *executor, "--json"]
    print(f"{datetime.date.today()}, {os.cpu_count()} CPUs, runs in {work}")
    tradeoff = gstbench("run", "--suite", suites["tradeoff"], *common, "--out", str(work / "tradeoff"), small=args.tiny)
    shutil.copytree(work / "tradeoff", work / "measured", copy_function=shutil.copy2)
    flat_reuse = gstbench("run", "--suite", suites["flatness"], *common, "--reuse", str(work / "tradeoff"),
                          "--out", str(work / "flatness-reused"), small=args.tiny)
    flat_scratch = gstbench("run", "--suite", suites["flatness"], *common, "--out", str(work / "flatness-scratch"), small=args.tiny)
    metric_run = gstbench("run", "--suite", suites["tradeoff"], *common, "--metric", "hessian-trace",
                          "--reuse", str(work / "tradeoff"), "--out", str(work / "tradeoff-hessian"), small=args.tiny)
    metric_measure = gstbench("measure", str(work / "measured"), "--metric", "hessian-trace", small=args.tiny)
    same = stored_results(work / "flatness-reused") == stored_results(work / "flatness-scratch")
    ratios = {"flatness after tradeoff / flatness from scratch": (flat_reuse, flat_scratch),
              "tradeoff + hessian-trace / cold tradeoff": (metric_run, tradeoff),
              "measure --metric hessian-trace / cold tradeoff": (metric_measure, tradeoff)}
    print()
    for name, (new, old) in ratios.items():
        goal = GOALS.get(name)
        verdict = f"  (goal <= {goal}: {'met' if new / old <= goal else 'NOT met'})" if goal else ""
        print(f"{name:<50} {new / old:6.3f}{verdict}")
    reused, scratch = cell_seconds(work / "flatness-reused"), cell_seconds(work / "flatness-scratch")
    print(f"the flatness cells' own seconds, reused / from scratch: {reused[0] / scratch[0]:.3f} "
          f"({reused[0]:.0f} s / {scratch[0]:.0f} s; their metrics {reused[1]:.0f} s / {scratch[1]:.0f} s)")
    print(f"flatness reused and from scratch stored the same numbers: {same}")
    cells = len(list((work / "tradeoff" / "cells").iterdir()))
    run = work / "tradeoff"
    print(f"bytes per tradeoff cell ({cells} cells): models {bytes_under(run, '*.safetensors') / cells:,.0f}, "
          f"training records {bytes_under(run / 'trainings', '*.json*') / cells:,.0f}, "
          f"cell records {bytes_under(run / 'cells', '*.json*') / cells:,.0f}, "
          f"parents {bytes_under(run / 'parents', '*') / cells:,.0f}")
    if not same:
        sys.exit("flatness on stored trainings differs from flatness from scratch")


if __name__ == "__main__":
    main()
