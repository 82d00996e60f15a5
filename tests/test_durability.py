"""Nothing lost, nothing raw: corrupt files, read-only and full disks, and runs sharing one directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, run_cli
from gstbench.testing import stored_results
from gstbench.testing.forkserver import popen_gstbench

pytestmark = pytest.mark.slow
TINY = str(DATA / "tiny.toml")
FAULTS = str(Path(__file__).parent / "faults")  # sitecustomize.py: faults at the OS edge


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (3 cells, seed 0), copied by each test that changes it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return out


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    return out


def _one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("Error: "), proc.stderr
    return lines[-1]


def _cell_dirs(out: Path) -> list[Path]:
    return sorted(d for d in (out / "cells").iterdir() if d.is_dir())


CORRUPTIONS = {
    "truncated result.json": ("result.json", lambda t: t[: len(t) // 2]),
    "empty result.json": ("result.json", lambda t: ""),
    "result.json of the wrong shape": ("result.json", lambda t: json.dumps({"status": "ok", "hash": 3})),
    "binary spec.json": ("spec.json", lambda t: "\udcff\x00garbage"),
    "cut events.jsonl": ("events.jsonl", lambda t: t[: len(t) // 3]),
}


@pytest.mark.parametrize("what", list(CORRUPTIONS))
def test_a_corrupt_file_is_counted_by_readers_then_moved_aside_and_recomputed_by_run(finished, tmp_path, what):
    out = _copy(finished, tmp_path)
    name, damage = CORRUPTIONS[what]
    cell = next(d for d in _cell_dirs(out) if (d / "events.jsonl").stat().st_size > 0)  # a pruned cell
    path = cell / name
    path.write_bytes(damage(path.read_text()).encode("utf-8", "surrogateescape"))
    before = stored_results(finished)

    report = run_cli("report", str(out), "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["totals"]["corrupt"] == 1 and data["totals"]["ok"] == 2
    assert f"warning: {cell}" in report.stderr and name in report.stderr
    commands = [["report", str(out)]]
    if what == "truncated result.json":  # every reader, once
        commands += [["plot", str(out), "--out", str(tmp_path / "plots")], ["export", str(out), str(tmp_path / "e.json")],
                     ["claims", str(out)], ["compare", str(finished), str(out)]]
    for command in commands:
        proc = run_cli(*command)
        # compare's gate fails: NEW has no finished run of that configuration (it is corrupt)
        expected = 1 if command[0] == "compare" else 0
        assert proc.returncode == expected and "Traceback" not in proc.stderr, (command, proc.stderr)
        assert command[0] != "compare" or "a configuration only in BASE fails the gate" in proc.stdout
        assert "corrupt" in proc.stderr
        assert command[0] != "report" or "cells: 2 ok, 0 failed, 1 corrupt" in proc.stdout
    assert path.exists()  # readers change nothing

    rerun = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["run"]["ran"] == 1
    assert f"warning: {path}" in rerun.stderr and "moved it to" in rerun.stderr
    aside = list(cell.glob(f"{name}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == damage(  # kept, byte for byte, never deleted
        (finished / "cells" / cell.name / name).read_text()).encode("utf-8", "surrogateescape")
    assert stored_results(out) == before  # recomputed: the same numbers


def test_a_corrupt_parent_cache_entry_is_moved_aside_and_trained_again(finished, tmp_path):
    out = _copy(finished, tmp_path)
    entry = next((out / "parents").iterdir())
    (entry / "states.pt").write_bytes(b"not a torch file")
    unpruned = next(d for d in _cell_dirs(out) if (d / "events.jsonl").stat().st_size == 0)
    shutil.rmtree(unpruned)  # its cell needs the parent
    shutil.rmtree(out / "trainings")  # else its stored training serves it
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert f"parent cache entry {entry / 'states.pt'} could not be read" in proc.stderr
    assert list(entry.glob("states.pt.corrupt-*")) and (entry / "states.pt").exists()
    assert stored_results(out) == stored_results(finished)


def test_a_finished_run_on_read_only_storage_reports_plots_exports_compares_and_reruns(finished, tmp_path):
    out = _copy(finished, tmp_path)
    env = {"PYTHONPATH": FAULTS, "GSTBENCH_TEST_READONLY": str(out)}
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rerun = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "cells: 3 ok" in rerun.stdout and "3 cells already finished" in rerun.stderr
    assert run_cli("report", str(out), env=env).returncode == 0
    assert run_cli("export", str(out), str(tmp_path / "e.json"), env=env).returncode == 0
    assert run_cli("compare", str(tmp_path / "e.json"), str(out), env=env).returncode == 0
    assert run_cli("claims", str(out), env=env).returncode == 0
    assert run_cli("plot", str(out), "--out", str(tmp_path / "plots"), env=env).returncode == 0
    plot = run_cli("plot", str(out), env=env)  # its default folder is inside the read-only run
    assert plot.returncode == 2 and "pass `gstbench plot --out` a writable directory" in _one_line_error(plot)
    more = run_cli("run", "--suite", TINY, "--seeds", "2", "--out", str(out), env=env)
    assert more.returncode == 2
    assert _one_line_error(more) == (f"Error: cannot write to {out} (Read-only file system); pass `gstbench run "
                                     f"--out` a writable directory, or make this one writable")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_an_out_that_is_a_file_or_unwritable_is_refused_before_training(tmp_path):
    afile = tmp_path / "results.txt"
    afile.write_text("not a directory")
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(afile))
    assert proc.returncode == 2 and str(afile) in _one_line_error(proc) and "is a file" in proc.stderr
    below = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(afile / "sub"))
    assert below.returncode == 2 and str(afile / "sub") in _one_line_error(below)
    locked = tmp_path / "shared"
    env = {"PYTHONPATH": FAULTS, "GSTBENCH_TEST_READONLY": str(locked)}
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(locked), env=env)
    assert proc.returncode == 2 and f"cannot write to {locked}" in _one_line_error(proc)
    assert "cell/s" not in proc.stderr and not locked.exists()  # refused before any training
    for command in ("report", "plot", "export", "claims"):
        args = [command, str(afile)] + ([str(tmp_path / "e.json")] if command == "export" else [])
        refused = run_cli(*args)
        assert refused.returncode == 2 and str(afile) in _one_line_error(refused), command


def test_a_full_disk_stops_the_run_in_one_line_and_leaves_nothing_partial(tmp_path):
    out = tmp_path / "run"
    # the first cell's training and result are written; then the disk is full: the second cell's training
    # is not kept (a warning), and its result stops the run
    env = {"PYTHONPATH": FAULTS, "GSTBENCH_TEST_ENOSPC": "result.json:2"}
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), env=env)
    assert proc.returncode == 74
    line = _one_line_error(proc)
    assert "No space left on device" in line and str(out / "cells") in line and "run the same command again" in line
    assert "could not store the training of cell" in proc.stderr and "trains it again" in proc.stderr
    stored = [d for d in _cell_dirs(out) if (d / "result.json").exists()]
    assert len(stored) == 1 and json.loads((stored[0] / "result.json").read_text())["status"] == "ok"
    assert not list(out.rglob("*.tmp")) and not list(out.glob("cells/*/lease.json"))
    for d in _cell_dirs(out):
        assert (d / "result.json").exists() == (d / "events.jsonl").exists()  # both or neither
        assert (d / "spec.json").exists()
    first = (stored[0] / "result.json").read_bytes()
    again = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["run"]["ran"] == 2
    assert (stored[0] / "result.json").read_bytes() == first  # earlier results untouched


def _lease(cell: Path, host: str, pid: int, age_s: float = 0.0) -> None:
    (cell / "lease.json").write_text(json.dumps({"host": host, "pid": pid, "run": "other", "since": time.time()}))
    then = time.time() - age_s
    os.utime(cell / "lease.json", (then, then))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_lease_is_left_to_its_run_and_a_dead_or_expired_one_is_taken_over(finished, tmp_path):
    out = _copy(finished, tmp_path)
    cells = _cell_dirs(out)
    for d in cells:
        (d / "result.json").unlink()
    live, dead, expired = cells
    _lease(live, socket.gethostname(), os.getpid())  # this test process: alive
    (live / ".result.json.abc.tmp").write_text("another run's write in flight")
    _lease(dead, socket.gethostname(), _dead_pid())
    _lease(expired, "another-host", 1, age_s=120)
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--json", "--lease-timeout", "60")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["run"]
    assert (summary["ran"], summary["claimed_elsewhere"]) == (2, 1)
    assert not (live / "result.json").exists() and (dead / "result.json").exists()
    assert (expired / "result.json").exists()
    assert (live / ".result.json.abc.tmp").exists() and (live / "lease.json").exists()  # not ours to touch
    assert not (dead / "lease.json").exists() and not (expired / "lease.json").exists()
    text = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out))
    assert "1 cell is being trained by another run" in text.stderr


def test_a_killed_writers_temp_files_in_trainings_parents_and_leases_go_even_when_every_cell_has_finished(
        finished, tmp_path):
    out = _copy(finished, tmp_path)
    host = socket.gethostname()
    dead, live = _dead_pid(), os.getpid()
    lease = out / "training-leases" / "eb86b4ac1916c95d"  # a run killed while it wrote a training's lease
    lease.mkdir(parents=True)
    holders = [next((out / "trainings").iterdir()), *(out / "parents").iterdir(), lease]
    assert len(holders) >= 2  # the tiny run stores trainings and a parent
    for d in holders:
        (d / f".events.jsonl.{dead}@{host}.abcd1234.tmp").write_text("killed mid-write")
        (d / f".result.json.{live}@{host}.abcd1234.tmp").write_text("a live writer's")
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["run"]["ran"] == 0, proc.stderr
    for d in holders:
        assert [t.name for t in d.glob(".*.tmp")] == [f".result.json.{live}@{host}.abcd1234.tmp"]


def test_two_runs_into_one_directory_train_each_cell_once(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": ""}
    command = ["run", "--suite", TINY, "--seeds", "3", "--out", str(out), "--json"]
    runs = [popen_gstbench(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in runs]
    assert [proc.returncode for proc in runs] == [0, 0], [err for _, err in outputs]
    summaries = [json.loads(stdout)["run"] for stdout, _ in outputs]
    assert sum(s["ran"] for s in summaries) == 9  # every cell once, none twice
    for s in summaries:
        assert s["ran"] + s["skipped"] + s["claimed_elsewhere"] == 9
    assert len(stored_results(out)) == 9 and not list(out.glob("cells/*/lease.json"))
