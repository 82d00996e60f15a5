"""Every script in benchmarks/ runs at its --tiny size: a change that breaks a benchmark fails here, not months later.

They are part of CI. Together they take about 3 minutes on one core, most of it `gstbench run` subprocesses
starting torch; ``python -m pytest -m bench`` runs only them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gstbench.testing.forkserver import run_script

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "tiny.py")


def test_every_benchmark_is_covered():
    assert len(SCRIPTS) >= 14 and all("tiny.add_flag(parser)" in p.read_text() for p in SCRIPTS), \
        [p.name for p in SCRIPTS if "tiny.add_flag(parser)" not in p.read_text()]


@pytest.mark.bench
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_a_benchmark_runs_at_its_tiny_size(script, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = run_script(script, "--tiny", cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:] + done.stdout[-2000:]
    assert done.stdout.strip(), "printed nothing"
