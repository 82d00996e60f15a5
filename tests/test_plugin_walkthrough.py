"""The author guide's walkthrough, run as written: new-plugin, pip install -e, its tests, a smoke run with it."""

from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"


def walkthrough_commands() -> list[str]:
    """The commands of the bash block that follows the walkthrough marker in docs/plugins.md."""
    text = GUIDE.read_text()
    block = re.search(r"<!-- walkthrough:.*?-->\n```bash\n(.*?)```", text, re.S)
    assert block, "docs/plugins.md lost its walkthrough block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.slow
def test_the_walkthrough_in_the_author_guide_works_as_written(tmp_path):
    commands = walkthrough_commands()
    assert [c.split()[:2] for c in commands] == [["gstbench", "new-plugin"], ["pip", "install"],
                                                 ["python", "-m"], ["gstbench", "run"]]
    # A fresh environment on top of this one (which has gstbench), so `pip install -e` changes nothing
    # outside the test. `--system-site-packages` would not do: inside a virtual environment it reaches the
    # base interpreter's packages, not this environment's. A .pth line adds this environment's site
    # directories (their own .pth files included: the editable gstbench). `pip` and `gstbench` there run
    # with the new environment's own Python.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    inner = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"
                            ], check=True, capture_output=True, text=True).stdout.strip()
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(inner) / "outer_environment.pth").write_text(f"import site; list(map(site.addsitedir, {outer!r}))\n")
    for tool, module in (("pip", "pip"), ("gstbench", "gstbench")):
        shim = venv / "bin" / tool
        shim.write_text(f'#!/bin/sh\nexec "{venv / "bin" / "python"}" -m {module} "$@"\n')
        shim.chmod(0o755)
    # as a user's shell: no GSTBENCH_ settings, and torch's own thread count (not the test session's one)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GSTBENCH_") and k != "OMP_NUM_THREADS"}
    env.update({"PATH": f"{venv / 'bin'}:{env['PATH']}", "VIRTUAL_ENV": str(venv),
                "PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0"})  # offline: setuptools comes from here
    work = tmp_path / "work"
    work.mkdir()
    took = {}
    for command in commands:
        t0 = time.perf_counter()
        proc = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        took[command] = time.perf_counter() - t0
        assert proc.returncode == 0, f"`{command}` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        if command.startswith("python -m pytest"):
            assert re.search(r"\b2 passed\b", proc.stdout), proc.stdout
    print("walkthrough times:", {c: round(t, 1) for c, t in took.items()})

    # the run stored its cells where a plain `gstbench run --suite smoke` does; its rows are on the leaderboard
    report = subprocess.run(["gstbench", "report", "gstbench-results/smoke", "--json"], cwd=work, env=env,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    scorers = sorted(r["scorer"] for r in rows)
    assert scorers == ["-"] + ["mysnip"] * 2, scorers
    assert all(r["n"] == 1 and r["failed"] == 0 for r in rows)
    assert (work / "mysnip" / "gstbench_mysnip" / "__init__.py").exists()
    installed = subprocess.run(["gstbench", "plugins", "--json"], cwd=work, env=env, capture_output=True, text=True)
    assert {p["name"]: p["status"] for p in json.loads(installed.stdout)}.get("mysnip") == "loaded"
