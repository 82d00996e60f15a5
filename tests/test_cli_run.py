"""The user's story through real subprocesses: run, re-run, kill and resume, failures, reports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA, run_cli, stop
from gstbench.testing.forkserver import popen_gstbench

pytestmark = pytest.mark.slow
TINY = str(DATA / "tiny.toml")


def results(out: Path) -> dict[str, bytes]:
    return {p.parent.name: p.read_bytes() for p in (out / "cells").glob("*/result.json")}


def test_run_prints_leaderboard_stores_cells_and_rerun_skips_everything(tmp_path):
    out = tmp_path / "out"
    first = run_cli("run", "--suite", TINY, "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "tiny (quick): 6 cells, 6 to run" in first.stderr
    assert "6/6 cells, 18/18 epochs (100%)" in first.stderr  # progress counts epochs (in a pipe: plain lines)
    # the last screen: a line per configuration, the totals, and the command that prints every table
    lines = first.stdout.splitlines()
    assert max(map(len, lines)) <= 100
    header = next(i for i, line in enumerate(lines) if line.startswith("configuration"))
    assert "stability %" in lines[header] and "best test %" in lines[header]
    rows = lines[header + 2:lines.index("", header)]
    assert sorted(row.split("  ")[0].strip() for row in rows) == ["l2 largest mask 1ep", "l2 smallest mask 1ep",
                                                                   "unpruned"]
    assert "cells: 6 ok, 0 failed, 0 missing" in first.stdout
    assert f"  gstbench report {out}" in lines
    full = run_cli("report", str(out)).stdout
    for header in ("scorer", "target", "stability %", "best test %", "Pearson r", "Kendall tau"):
        assert header in full
    stored = results(out)
    assert len(stored) == 6
    for cell in (out / "cells").iterdir():
        assert {"spec.json", "result.json", "events.jsonl"} <= {p.name for p in cell.iterdir()}
        assert not list(cell.glob(".*.tmp"))
    second = run_cli("run", "--suite", TINY, "--out", str(out))
    assert second.returncode == 0
    assert "6 cells already finished (skipped), 0 run" in second.stderr
    assert results(out) == stored
    assert second.stdout == first.stdout

    report = run_cli("report", str(out), "--json")
    data = json.loads(report.stdout)
    assert data["totals"] == {"cells": 6, "ok": 6, "failed": 0, "corrupt": 0, "missing": 0}
    assert {r["target"] for r in data["rows"]} == {"smallest", "largest", "-"}
    assert data["correlation"]["n"] == 4 and data["correlation"]["pearson_r"] is not None
    for fmt, marker in (("github", "|"), ("latex", "\\begin{tabular}"), ("csv", "stability_mean")):
        rendered = run_cli("report", str(out), "--format", fmt)
        assert rendered.returncode == 0 and marker in rendered.stdout
    as_json = run_cli("run", "--suite", TINY, "--out", str(out), "--json")
    assert json.loads(as_json.stdout)["run"]["skipped"] == 6


@pytest.mark.parametrize("sig, executor", [(signal.SIGINT, "sequential"), (signal.SIGTERM, "sequential"),
                                           (signal.SIGTERM, "pool"), (signal.SIGKILL, "sequential")])
def test_a_killed_run_resumes_with_only_the_missing_cells(tmp_path, sig, executor):
    out = tmp_path / "out"
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": ""}
    proc = popen_gstbench("run", "--suite", TINY, "--seeds", "3", "--out", str(out), "--executor", executor,
                          *(["--workers", "2"] if executor == "pool" else []), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, sigint_default=True)
    deadline = time.time() + 240
    while len(results(out)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    stderr = stop(proc, sig, 60)
    done = results(out)
    assert 2 <= len(done) < 9, "the run should have been stopped midway"
    if sig != signal.SIGKILL:  # SIGTERM (Slurm, Kubernetes) stops like Ctrl-C, pool workers included
        assert proc.returncode == (130 if sig == signal.SIGINT else 143), stderr
        assert "run the same command again" in stderr and "Traceback" not in stderr
        assert not list(out.glob("cells/*/lease.json"))  # its leases are dropped
    for blob in done.values():
        json.loads(blob)  # every stored result is complete
    again = run_cli("run", "--suite", TINY, "--seeds", "3", "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} cells already finished (skipped), {9 - len(done)} run" in again.stderr
    final = results(out)
    assert len(final) == 9
    assert all(final[k] == v for k, v in done.items())  # finished results were not touched
    assert not list(out.glob("cells/*/.*.tmp"))


CTRL_C_IN_EXEC = '''
"""A scorer during which Ctrl-C lands inside an exec of a string, as it may while a lazy import builds a dataclass."""
import os, signal, time

from gstbench import hookimpl


class CtrlCInExec:
    def score(self, layer, ctx):
        exec("os.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(3000): time.sleep(0.01)",
             {"os": os, "signal": signal, "time": time})
        raise AssertionError("the Ctrl-C did not stop the run")


@hookimpl
def register_scorers(register):
    register("ctrlc", CtrlCInExec, description="Ctrl-C inside an exec")
'''


def test_ctrl_c_inside_an_exec_of_a_string_still_exits_130_from_python_m(tmp_path):
    (tmp_path / "ctrlc.py").write_text(CTRL_C_IN_EXEC)
    proc = subprocess.run([sys.executable, "-m", "gstbench", "--plugins-dir", str(tmp_path), "run", "--suite", TINY,
                           "--seeds", "1", "--scorer", "ctrlc:ctrlc", "--executor", "sequential",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GSTBENCH_LOAD_PLUGINS": ""})
    # CPython ends `python -m` by SIGINT (-2) after a KeyboardInterrupt escaped an exec, unless told otherwise
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "interrupted: finished cells are stored in" in proc.stderr and "Traceback" not in proc.stderr


def test_a_failing_cell_is_recorded_the_rest_goes_on_and_the_exit_code_says_so(tmp_path):
    suite = tmp_path / "failing.toml"
    suite.write_text((DATA / "tiny.toml").read_text() + '''
[[include]]
prune = false
"train.optimizer" = "sgd"
"train.lr" = 1e38
''')
    out = tmp_path / "out"
    proc = run_cli("run", "--suite", str(suite), "--out", str(out))
    assert proc.returncode == 1
    assert "failed: CellFailed: non-finite training loss" in proc.stderr
    assert "cells: 6 ok, 2 failed, 0 missing" in proc.stdout
    assert "failed cell" in proc.stdout and "non-finite training loss" in proc.stdout
    statuses = sorted(json.loads(b)["status"] for b in results(out).values())
    assert statuses == ["failed"] * 2 + ["ok"] * 6
    again = run_cli("run", "--suite", str(suite), "--out", str(out))
    assert "8 cells already finished (skipped), 0 run" in again.stderr and again.returncode == 1
    retried = run_cli("run", "--suite", str(suite), "--out", str(out), "--retry-failed")
    assert "6 cells already finished (skipped), 2 run" in retried.stderr


def test_suites_list_and_show_and_list_components():
    listed = run_cli("suites")
    assert listed.returncode == 0 and "gstbench:tradeoff" in listed.stdout and "quick, paper" in listed.stdout
    shown = run_cli("suites", "show", "tradeoff")
    assert "7 configurations x 7 seeds (0-6) = 49 cells" in shown.stdout
    assert "axis prune.target: smallest, random, largest" in shown.stdout
    paper = run_cli("suites", "show", "tradeoff", "--scale", "quik")
    assert paper.returncode == 2 and "suite has no scale 'quik' (did you mean: quick?)" in paper.stderr
    comps = json.loads(run_cli("list", "effectors", "--json").stdout)
    assert {c["id"] for c in comps} >= {"gstbench:mask", "gstbench:remove"}
    assert all(c["description"] for c in comps)
    bad = run_cli("list", "scorerz")
    assert bad.returncode == 2 and "scorers" in bad.stderr
    missing = run_cli("report", str(DATA))
    assert missing.returncode == 2 and "no suite.json" in missing.stderr


def test_every_axis_of_a_suite_gets_a_leaderboard_column(tmp_path):
    suite = tmp_path / "lr.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace("seeds = 2", "seeds = 1").replace(
        '"prune.target" = ["smallest", "largest"]', '"train.lr" = [0.001, 0.003]'))
    out = tmp_path / "out"
    proc = run_cli("run", "--suite", str(suite), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "l2 smallest mask 1ep 0.003" in proc.stdout  # run's own line per configuration names the axis value
    full = run_cli("report", str(out)).stdout
    header = full.splitlines()[0]
    assert "train.lr" in header
    assert sorted(line.split()[4] for line in full.splitlines()[2:5]) == ["0.001", "0.001", "0.003"]


def test_separate_processes_with_the_same_seeds_store_the_same_numbers(tmp_path):
    stored = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out)).returncode == 0
        stored.append({k: json.loads(v) for k, v in results(out).items()})
    a, b = stored
    assert a.keys() == b.keys() and len(a) == 3
    for key in a:
        assert a[key]["metrics"] == b[key]["metrics"] and a[key]["curves"] == b[key]["curves"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_missing_device_is_refused_before_any_cell_runs(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("run", "--suite", TINY, "--device", "cuda", "--out", str(out))
    assert proc.returncode == 2 and "CUDA is not available on this machine" in proc.stderr
    assert not out.exists()
    bad = run_cli("run", "--suite", TINY, "--device", "gpu9", "--out", str(out))
    assert bad.returncode == 2 and "--device" in bad.stderr


def test_a_rounds_suite_reports_accuracy_and_stability_per_round(tmp_path):
    out = tmp_path / "out"
    run = run_cli("run", "--suite", str(DATA / "tiny_rounds.toml"), "--out", str(out))
    assert run.returncode == 0, run.stderr
    for text in ("2 rounds", "LMC barrier %", "final test accuracy % per round", "r0 (0.0%)", "r1 (50.0%)",
                 "r2 (75.0%)", "weights@1ep", "lr@1ep", "cells: 6 ok, 0 failed, 0 missing"):
        assert text in run_cli("report", str(out)).stdout, text
    data = json.loads(run_cli("report", str(out), "--json").stdout)
    rows = {(r["target"], r["rewind"]): r for r in data["rows"]}
    assert set(rows) == {("smallest", "weights@1ep"), ("smallest", "lr@1ep"), ("random", "weights@1ep")}
    for row in rows.values():
        assert [x["round"] for x in row["rounds"]] == [0, 1, 2] and row["lmc_barrier"]["n"] == 2
    csv_rows = run_cli("report", str(out), "--format", "csv").stdout.splitlines()
    assert csv_rows[0].startswith("scorer,target,effector,period,rewind,units,rate") and "lmc_barrier_mean" in csv_rows[0]
    assert len(csv_rows) == 4
    cell = next((out / "cells").iterdir())
    stored = json.loads((cell / "result.json").read_text())
    assert len(stored["rounds"]) == 3 and len(stored["rounds"][2]["lmc"]["test_error"]) == 5


def answer_order(out: Path) -> list[str]:
    return json.loads(run_cli("report", str(out), "--json").stdout)["answer"]["groups"]


def test_a_suite_question_is_answered_per_group_and_split(tmp_path):
    out = tmp_path / "out"
    run = run_cli("run", "--suite", str(DATA / "tiny_question.toml"), "--out", str(out))
    assert run.returncode == 0, run.stderr
    full = run_cli("report", str(out)).stdout
    assert "Does it need permanent removal?" in full and "temporary - permanent" in full
    assert answer_order(out) == ["temporary", "permanent", "unpruned"]  # the suite's order, not sorted
    answer = json.loads(run_cli("report", str(out), "--json").stdout)["answer"]
    assert [r["split"] for r in answer["rows"]] == ["all", "largest", "smallest"]
    all_runs = answer["rows"][0]["groups"]
    assert (all_runs["permanent"]["n"], all_runs["temporary"]["n"], all_runs["unpruned"]["n"]) == (4, 4, 2)
    assert answer["rows"][1]["groups"]["unpruned"]["n"] == 2  # the baseline joins every split
    assert answer["rows"][1]["groups"]["permanent"]["n"] == 2


@pytest.mark.parametrize("command", [["report"], ["plot"], ["export"], ["claims"]])
def test_bad_input_exits_2_with_one_line_from_every_command(tmp_path, command):
    """One exit-code rule (README, Exit codes): a refused input is one line and exit 2, whichever command."""
    args = [*command, str(DATA)] + ([str(tmp_path / "x.json")] if command == ["export"] else [])
    proc = run_cli(*args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
