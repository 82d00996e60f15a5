"""gstbench.results: a stored run as pandas DataFrames, the docs' notebook example executed, and the error without pandas."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import gstbench
from gstbench.store.reader import load_results

STORED = Path(__file__).parent / "data" / "stored-eb9532a"
DOC = Path(__file__).parents[1] / "docs" / "analysis.md"


def test_cells_events_and_curves_have_a_row_per_cell_event_and_point():
    run = gstbench.results(STORED / "schedule")
    reader = load_results(STORED / "schedule")
    cells = run.cells
    assert len(cells) == len(reader.cells) and set(cells.hash) == {c.hash for c in reader.cells}
    for axis in reader.axes:
        assert axis in cells.columns
    assert sorted(cells.status.unique()) == ["failed", "ok"]
    failed = cells[cells.status == "failed"]
    assert failed.error.str.len().min() > 0
    finished = reader.finished
    for spec, result in finished:
        row = cells[cells.hash == result.hash].iloc[0]
        assert row.seed == spec.seed and row.best_test_acc == result.metrics["best_test_acc"]
    assert len(run.events) == sum(len(r.events) for _, r in finished)
    first = finished[0][1]
    mine = run.events[run.events.hash == first.hash]
    assert mine.t_post.tolist() == [e.t_post for e in first.events]
    assert mine.removed.tolist() == [sum(layer.count for layer in e.layers.values()) for e in first.events]
    curves = run.curves[(run.curves.hash == first.hash) & (run.curves.quantity == "test_acc")]
    assert curves.step.tolist() == first.curves.step and curves.value.tolist() == first.curves.test_acc

    rounds = gstbench.results(STORED / "rounds")
    stored = load_results(STORED / "rounds").finished[0][1]
    per_round = rounds.curves[rounds.curves.hash == stored.hash].groupby("round").epoch.max()
    assert per_round.index.tolist() == [r.round for r in stored.rounds]


def test_cells_has_a_column_for_every_setting_that_differs_between_cells_axis_or_not():
    reader = load_results(STORED / "schedule")
    cells = gstbench.results(STORED / "schedule").cells
    assert "prune.scorer" in cells.columns and "prune.scorer" not in reader.axes  # no axis names the scorer
    for spec, result in reader.finished:
        row = cells[cells.hash == result.hash].iloc[0]
        assert row["prune.scorer"] == ("-" if spec.prune is None else spec.prune.scorer.label)
    settings = [c for c in cells.columns if "." in c or c in reader.axes]
    for column in settings:  # each one tells some cells apart (seeds aside)
        assert cells[column].nunique(dropna=False) > 1 or column in reader.axes, column
    assert "train.lr" not in cells.columns  # equal in every cell: no column


def test_the_notebook_example_in_docs_analysis_runs(tmp_path):
    code = "\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S))
    shutil.copytree(STORED / "schedule", tmp_path / "gstbench-results" / "tradeoff")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "stability" in proc.stdout and (tmp_path / "test_accuracy.png").stat().st_size > 5000


def test_without_pandas_the_error_says_how_to_install_it():
    script = ("import sys; sys.modules['pandas'] = None\n"  # what an environment without pandas gives
              "import gstbench\nfrom gstbench.errors import GstbenchError\n"
              f"try:\n    gstbench.results({str(STORED / 'schedule')!r})\n"
              "except GstbenchError as exc:\n    print(exc)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'gstbench[analysis]'" in proc.stdout
