"""Work orders: each cell resolved once (train, resume, measure a stored training), and damaged trainings kept aside."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from gstbench.plan.suite import load_suite
from gstbench.plugins import get_registry
from gstbench.run.orders import MEASURE, RESUME, TRAIN, resolve
from gstbench.store.store import CHECKPOINT, MODEL, cell_path, training_path
from gstbench.store.trainings import Trainings, TrainingStore
from gstbench.testing.files import stored_results

from conftest import run_cli

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny.toml")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny run (3 cells of seed 0) with a metric that needs the model."""
    out = tmp_path_factory.mktemp("orders") / "run"
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--metric", "cost")
    assert proc.returncode == 0, proc.stderr
    return out


def _cells(metric: bool = True):
    suite = load_suite(get_registry(), TINY, seeds=1, metrics=["cost"] if metric else [])
    return suite.cells


def _copy(finished: Path, tmp_path: Path, name: str = "run") -> Path:
    shutil.copytree(finished, tmp_path / name)
    return tmp_path / name


def test_each_case_resolves_to_its_order(finished, tmp_path):
    spec = _cells()[0]
    fresh = resolve(spec, tmp_path / "empty", Trainings([tmp_path / "empty"]))
    assert (fresh.order.action, fresh.retrains) == (TRAIN, False)
    assert fresh.order.cell_dir == cell_path(tmp_path / "empty", spec.hash)
    assert fresh.order.models == training_path(tmp_path / "empty", spec.training_hash)
    # a killed run's checkpoint in the cell's directory: go on from it
    every = dataclasses.replace(spec, train=dataclasses.replace(spec.train, checkpoint_every=1))
    fresh.order.cell_dir.mkdir(parents=True)
    (fresh.order.cell_dir / CHECKPOINT).write_bytes(b"saved")
    assert resolve(every, tmp_path / "empty", Trainings([tmp_path / "empty"])).order.action == RESUME
    assert resolve(spec, tmp_path / "empty", Trainings([tmp_path / "empty"])).order.action == TRAIN  # never saves
    # stored in this directory, then only in a --reuse one
    here = resolve(spec, finished, Trainings([finished])).order
    assert here.action == MEASURE and here.stored.directory == training_path(finished, spec.training_hash)
    assert here.stored.final_model == here.stored.directory / MODEL
    reused = resolve(spec, tmp_path / "empty", Trainings([tmp_path / "empty", finished])).order
    assert reused.action == MEASURE and reused.stored.directory == here.stored.directory
    # stored without the model its metric needs: it trains again (a cell without metrics still measures)
    bare = _copy(finished, tmp_path)
    (training_path(bare, spec.training_hash) / MODEL).unlink()
    again = resolve(spec, bare, Trainings([bare]))
    assert (again.order.action, again.retrains) == (TRAIN, True)
    plain = _cells(metric=False)[0]
    assert resolve(plain, bare, Trainings([bare])).order.action == MEASURE


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _one_line_per(stderr: str, path: Path) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if str(path) in line]


@pytest.mark.parametrize("damaged", [MODEL, "result.json"])
def test_a_damaged_training_is_kept_aside_said_in_one_line_and_trained_again(finished, tmp_path, damaged):
    spec = _cells()[0]
    # `run`: every cell finished, so the re-run trains nothing, but the damaged file goes aside
    out = _copy(finished, tmp_path)
    path = training_path(out, spec.training_hash) / damaged
    before = stored_results(out)
    _cut(path)
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(out), "--metric", "cost", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["run"]["ran"] == 0, proc.stderr
    lines = _one_line_per(proc.stderr, path)
    assert len(lines) == 1 and "moved it to" in lines[0] and "train it again" in lines[0]
    assert not path.exists() and list(path.parent.glob(f"{damaged}.corrupt-*"))
    assert stored_results(out) == before  # nothing lost
    assert list(TrainingStore(out).damaged()) == []
    # `run --reuse` of a directory with that damage: the cell trains instead of failing
    source = _copy(finished, tmp_path, "source")
    _cut(training_path(source, spec.training_hash) / damaged)
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--out", str(tmp_path / "new"), "--metric", "cost",
                   "--reuse", str(source), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run"]["failed"] == 0 and json.loads(proc.stdout)["run"]["reused"] == 2
    assert stored_results(tmp_path / "new") == before
    # `measure`: the damaged cell is reported in one line, the rest measured
    out = _copy(finished, tmp_path, "measure")
    path = training_path(out, spec.training_hash) / damaged
    _cut(path)
    proc = run_cli("measure", str(out), "--metric", "hessian-trace")
    assert proc.returncode == 0, proc.stderr
    cell = str(cell_path(out, spec.hash))
    about = [line for line in proc.stderr.splitlines() if line.startswith(cell)]
    assert len(about) == 1 and "damaged" in about[0] and "moved aside" in about[0], proc.stderr
    assert "2 cells measured" in proc.stderr and "1 cell skipped" in proc.stderr
    assert "Traceback" not in proc.stderr and list(path.parent.glob(f"{damaged}.corrupt-*"))
