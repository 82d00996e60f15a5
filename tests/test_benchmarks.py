"""Every script in benchmarks/ runs at its --tiny size: a change that breaks a benchmark fails here, not months later.

The scripts together take about 7 minutes on 2 cores (most of it `gstbench run` subprocesses starting torch),
more than CI's budget, so they carry the ``bench`` mark, which the default run leaves out:
``python -m pytest -m bench tests/test_benchmarks.py`` runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "tiny.py")


def test_every_benchmark_is_covered():
    assert len(SCRIPTS) >= 14 and all("tiny.add_flag(parser)" in p.read_text() for p in SCRIPTS), \
        [p.name for p in SCRIPTS if "tiny.add_flag(parser)" not in p.read_text()]


@pytest.mark.bench
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_runs_at_its_tiny_size(script, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(script), "--tiny"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:] + done.stdout[-2000:]
    assert done.stdout.strip(), "printed nothing"
