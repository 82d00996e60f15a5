"""The ``--tiny`` size every benchmark takes: a few seconds, so that the test suite runs each script and a change
that breaks one fails CI. What a script prints at this size checks that it works; its numbers measure nothing."""

from __future__ import annotations

import argparse
import subprocess
import sys

# A built-in suite's cells on 240 MNIST-1D signals for 10 epochs, pruned from epoch 1 to 8 (the tradeoff
# family's layers): about a second per cell
DATA = {"dataset.num_samples": 240, "train.epochs": 10, "train.milestones": [], "prune.layers.conv3.start": "1ep",
        "prune.layers.conv3.end": "4ep", "prune.layers.conv4.start": "1ep", "prune.layers.conv4.end": "8ep"}
TINY_SUITE = """
name = "tiny-benchmark"
seeds = 1
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 240, train_split = 0.5 }
train = { epochs = 3, batch_size = 64 }
prune = { scorer = "bn-gamma", target = "smallest", effector = "mask", start = "1ep", end = "2ep", period = "1ep", layers = { conv4 = { fraction = 0.5 } } }
[axes]
"prune.target" = ["smallest", "largest"]
[[include]]
prune = false
[scales.quick]
"""


def add_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiny", action="store_true",
                        help="run in seconds on tiny data, to check the script works (its numbers mean nothing)")


def overrides(tiny: bool) -> dict | None:
    """``load_suite(..., overrides=)`` for a tradeoff-family suite at the tiny size (None: as it is)."""
    return dict(DATA) if tiny else None


def gstbench(args: list[str], tiny: bool, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m gstbench ARGS`` as a subprocess (output captured): a fresh interpreter, as a user's command starts;
    at the tiny size forked from a warm one (``gstbench.testing.forkserver``), which spares each command the
    6 s of CPU its imports take: there the script's timings mean nothing anyway."""
    if tiny:
        from gstbench.testing.forkserver import run_gstbench

        return run_gstbench(*args, env=env)
    return subprocess.run([sys.executable, "-m", "gstbench", *args], capture_output=True, text=True, env=env)
