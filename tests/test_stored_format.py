"""Result directories written before typed results (tests/data/stored-eb9532a) load, report and resume unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gstbench.store.cell_result import CellResult, Curves, LayerPruned, ModeConnectivity, PruningEvent, Round
from gstbench.store.reader import load_results
from conftest import run_cli

STORED = Path(__file__).parent / "data" / "stored-eb9532a"


@pytest.fixture
def stored(tmp_path) -> Path:
    """A writable copy of the stored runs (schedule: 4 cells, one failed; rounds: 3 cells with LMC)."""
    shutil.copytree(STORED, tmp_path / "stored")
    return tmp_path / "stored"


def _files(cell_dir: Path) -> tuple[dict, list[dict]]:
    events = [json.loads(line) for line in (cell_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    return json.loads((cell_dir / "result.json").read_text()), events


def test_a_schedule_run_loads_as_typed_results():
    results = load_results(STORED / "schedule")
    assert len(results.cells) == 4 and len(results.configurations) == 4
    assert sorted(c.status for c in results.cells) == ["failed", "ok", "ok", "ok"]
    failed = next(c.result for c in results.cells if c.status == "failed")
    assert failed.error == "RuntimeError: this metric always fails" and "Traceback" in failed.traceback
    assert failed.metrics == {} and failed.events == [] and failed.curves is None
    for spec, result in results.finished:
        assert isinstance(result, CellResult) and isinstance(result.curves, Curves)
        assert len(result.curves.test_acc) == len(result.curves.epoch) == 3
        assert result.environment.gstbench == "0.1.0" and result.environment.threads >= 1
        assert result.steps_per_epoch * 3 == result.total_steps and result.timing["eval_s"] > 0
        if spec.prune is None:
            assert result.events == [] and result.parent == "cached"  # a pruned cell's metric trained it first
            continue
        assert result.parent is None and [e.epoch for e in result.events] == [1, 2]
        for event in result.events:
            assert isinstance(event, PruningEvent) and event.round is None
            layer = event.layers["conv2"]
            assert isinstance(layer, LayerPruned) and layer.count == len(layer.pruned) == 4 and layer.of == 2
        assert result.metrics["n_events"] == 2 and "excess_error_mean" in result.metrics


def test_a_rounds_run_loads_its_rounds_and_mode_connectivity():
    results = load_results(STORED / "rounds")
    assert [c.status for c in results.cells] == ["ok"] * 3
    for _, result in results.finished:
        assert [r.round for r in result.rounds] == [0, 1, 2] and [e.round for e in result.events] == [1, 2]
        assert all(x.pruned is None for e in result.events for x in e.layers.values())  # single weights
        for r in result.rounds:
            assert isinstance(r, Round) and r.metrics is None  # the suite asks for no metric
            assert isinstance(r.lmc, ModeConnectivity) and len(r.lmc.test_error) == r.lmc.points == 5
            assert r.lmc.barrier == pytest.approx(max(r.lmc.test_error) - (r.lmc.test_error[0]
                                                                             + r.lmc.test_error[-1]) / 2)
        assert result.metrics["lmc_barrier"] == result.rounds[-1].lmc.barrier
        assert result.curves == result.rounds[-1].curves


@pytest.mark.parametrize("run", ["schedule", "rounds"])
def test_reading_and_writing_back_gives_todays_files_exactly(run):
    for cell_dir in sorted((STORED / run / "cells").iterdir()):
        data, events = _files(cell_dir)
        result = CellResult.from_json(data, events)
        assert result.to_json() == data and result.events_json() == events


def test_every_reader_command_works_on_the_stored_runs(stored, tmp_path):
    proc = run_cli("report", str(stored / "schedule"), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["totals"] == {"cells": 4, "ok": 3, "failed": 1, "corrupt": 0, "missing": 0}
    assert [e["error"] for r in report["rows"] for e in r["errors"]] == ["RuntimeError: this metric always fails"]
    rounds = json.loads(run_cli("report", str(stored / "rounds"), "--json").stdout)
    assert all(len(r["rounds"]) == 3 and r["lmc_barrier"]["n"] == 1 for r in rounds["rows"])
    assert run_cli("export", str(stored / "rounds"), str(tmp_path / "base.json")).returncode == 0
    proc = run_cli("compare", str(tmp_path / "base.json"), str(stored / "rounds"), "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["counts"]["unchanged"] > 0
    proc = run_cli("plot", str(stored / "rounds"), "--out", str(tmp_path / "plots"))
    assert proc.returncode == 0 and (tmp_path / "plots" / "lmc_curves.png").stat().st_size > 0
    assert run_cli("claims", str(stored / "schedule"), str(stored / "rounds"), "--json").returncode == 0


def test_a_rerun_of_a_stored_suite_finds_every_cell_finished(stored):
    proc = run_cli("run", "--suite", str(stored / "schedule.toml"), "--out", str(stored / "schedule"), "--json",
                   env={"GSTBENCH_PLUGINS_DIR": str(stored / "plugins")})
    assert proc.returncode == 1, proc.stderr  # the stored failed cell stays failed
    summary = json.loads(proc.stdout)["run"]
    assert summary["skipped"] == 4 and summary["ran"] == 0


def test_a_result_of_the_wrong_shape_is_counted_corrupt_with_a_warning_naming_file_and_field(stored):
    cell_dir = next(d for d in (stored / "rounds" / "cells").iterdir())
    data, _ = _files(cell_dir)
    data["rounds"][1]["lmc"]["barrier"] = "high"
    (cell_dir / "result.json").write_text(json.dumps(data))
    proc = run_cli("report", str(stored / "rounds"))
    assert proc.returncode == 0 and "cells: 2 ok, 0 failed, 1 corrupt, 0 missing" in proc.stdout
    warning = proc.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith(f"warning: {cell_dir}: result.json:")
    assert "'barrier' in the LMC of round entry 1 must be a number, not str" in warning[0]
