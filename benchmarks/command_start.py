"""Benchmark: how long each command takes to start, against a bare ``python -c pass``, in one run.

Runs every command ``--repeats`` times in rotated order (each a fresh interpreter, as a
user's shell starts it) and prints the median wall time, the time above a bare
interpreter, and the goal each is held to: ``--help`` within 0.5 s; ``list``, ``suites``,
``plugins``, ``report`` and ``claims`` within 1.5 s (the two readers on a small stored
run: tests/data/stored-eb9532a). Also prints whether the command loaded torch.

    python benchmarks/command_start.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import tiny

STORED = Path(__file__).resolve().parents[1] / "tests" / "data" / "stored-eb9532a" / "schedule"

COMMANDS = {  # name -> (argv after gstbench, goal in seconds)
    "--help": (["--help"], 0.5),
    "list scorers": (["list", "scorers"], 1.5),
    "suites": (["suites"], 1.5),
    "plugins": (["plugins"], 1.5),
    "report": (["report", str(STORED)], 1.5),
    "claims": (["claims", str(STORED)], 1.5),
}
PROBE = ("import sys, json, runpy\nsys.argv = ['gstbench', *json.loads(sys.argv[1])]\n"
         "try:\n    runpy.run_module('gstbench', run_name='__main__')\nexcept SystemExit:\n    pass\n"
         "print('torch' in sys.modules, file=sys.stderr)")


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.repeats = 1
    gstbench = shutil.which("gstbench") or sys.exit("gstbench is not installed in this environment")
    times: dict[str, list[float]] = {"python -c pass": [], **{name: [] for name in COMMANDS}}
    names = list(times)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotated: drift hits every command alike
            argv = [sys.executable, "-c", "pass"] if name == "python -c pass" else [gstbench, *COMMANDS[name][0]]
            times[name].append(timed(argv))
    bare = statistics.median(times["python -c pass"])
    print(f"{time.strftime('%Y-%m-%d')}, {args.repeats} runs each, median wall seconds")
    print(f"{'command':<16}{'median s':>10}{'above bare':>12}{'goal s':>8}  {'torch':<6} within goal")
    print(f"{'python -c pass':<16}{bare:>10.3f}{0:>12.3f}")
    for name, (argv, goal) in COMMANDS.items():
        median = statistics.median(times[name])
        probe = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], capture_output=True, text=True)
        torch = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "?"
        print(f"{name:<16}{median:>10.3f}{median - bare:>12.3f}{goal:>8.1f}  {torch:<6} "
              f"{'yes' if median <= goal else 'NO'}")


if __name__ == "__main__":
    main()
