"""Benchmark: how long and how much memory a large matrix takes to expand, and that a too-large one is refused at once.

A suite of N cells (the tests' tiny suite with two extra axes, 1 seed) is expanded the way
`gstbench suites show` does it (load_suite: every cell built, hashed and checked; the cost
estimate; the summary), in a fresh interpreter, after its imports: the seconds and the peak
memory it adds, for N = 100, 1,000 and 10,000 (the goal at 10,000: within 2 s and 300 MB).
Then the whole `gstbench suites show` of the 10,000-cell suite, start-up included, next to the
start-up alone (`gstbench suites show tiny`, 6 cells), and a suite of 10^8 cells, which must be
refused before anything is built.

    python benchmarks/matrix_expansion.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tiny

TINY = Path(__file__).resolve().parent.parent / "tests" / "data" / "tiny.toml"
GOAL_S, GOAL_MB = 2.0, 300

EXPAND = """
import json, resource, sys, time
from gstbench.run import cost
from gstbench.plugins import get_registry
from gstbench.plan.suite import load_suite
registry = get_registry()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
suite = load_suite(registry, sys.argv[1], placeholders=True, build_models=False)
cost.estimate(suite, registry, placeholders=True)
summary = suite.summary()
seconds = time.perf_counter() - t0
added = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"cells": summary["cells"], "seconds": seconds, "added_mb": added, "torch": "torch" in sys.modules}))
"""


def suite_file(directory: Path, fractions: int, rates: int) -> Path:
    """The tiny suite (2 targets + 1 unpruned) with ``fractions`` x ``rates`` more configurations per target."""
    values = ", ".join(f"{0.1 + 0.5 * i / fractions:.4f}" for i in range(fractions))
    lrs = ", ".join(f"{0.001 * (i + 1):.4f}" for i in range(rates))
    text = TINY.read_text().replace("seeds = 2", "seeds = 1").replace(
        '"prune.target" = ["smallest", "largest"]',
        f'"prune.target" = ["smallest", "largest"]\n"prune.layers.conv3.fraction" = [{values}]\n"train.lr" = [{lrs}]')
    path = directory / f"matrix-{2 * fractions * rates + 1}.toml"
    path.write_text(text.replace('name = "tiny"', f'name = "matrix-{2 * fractions * rates + 1}"'))
    return path


MEASURE = ("import json, resource, subprocess, sys, time\n"
           "t0 = time.perf_counter()\n"
           "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
           "print(json.dumps({'seconds': time.perf_counter() - t0, 'mb': resource.getrusage("
           "resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 'code': proc.returncode, 'stderr': proc.stderr}))")


def timed(args: list[str]) -> dict:
    """Seconds, peak memory (MB), exit code and stderr of a command, measured from a fresh parent."""
    proc = subprocess.run([sys.executable, "-c", MEASURE, *args], capture_output=True, text=True)
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    tiny.add_flag(parser)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="matrix-expansion-"))
    print(f"{time.strftime('%Y-%m-%d')}, {sys.platform}; expansion in a fresh interpreter after its imports")
    print(f"{'cells':>8}  {'seconds':>8}  {'us/cell':>8}  {'MB added':>9}  torch imported")
    largest = None
    for fractions, rates in ((5, 10),) if args.tiny else ((5, 10), (20, 25), (100, 50)):
        path = suite_file(directory, fractions, rates)
        proc = subprocess.run([sys.executable, "-c", EXPAND, str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{m['cells']:>8,}  {m['seconds']:>8.2f}  {1e6 * m['seconds'] / m['cells']:>8.0f}  {m['added_mb']:>9.0f}"
              f"  {'yes' if m['torch'] else 'no'}")
        largest, result = path, m
    verdict = "met" if result["seconds"] <= GOAL_S and result["added_mb"] <= GOAL_MB else "NOT met"
    print(f"goal at 10,000 cells: within {GOAL_S:g} s and {GOAL_MB} MB: {verdict}")

    gstbench = [sys.executable, "-m", "gstbench", "suites", "show"]
    startup, show = timed([*gstbench, str(TINY)]), timed([*gstbench, str(largest)])
    print(f"\nwhole command, start-up included: `suites show` of 10,001 cells {show['seconds']:.1f} s (peak "
          f"{show['mb']:.0f} MB); of the 6-cell tiny suite {startup['seconds']:.1f} s ({startup['mb']:.0f} MB): "
          f"ratio {show['seconds'] / startup['seconds']:.2f}")

    refused = timed([*gstbench, str(suite_file(directory, 10_000, 5_000))])  # 10^8 cells
    line = (refused["stderr"].strip().splitlines() or [""])[-1]
    print(f"10^8 cells: exit {refused['code']} in {refused['seconds']:.1f} s ({refused['mb']:.0f} MB; "
          f"{refused['seconds'] / startup['seconds']:.2f} x the tiny suite's time): {line[:150]}...")


if __name__ == "__main__":
    main()
