"""Stored models: --save-models writes them, load_model rebuilds them (masked and removed agree), export-model."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

import gstbench
from gstbench.engine.artifacts import model_file
from gstbench.engine.evaluation import evaluate
from gstbench.errors import GstbenchError
from gstbench.plan.suite import load_suite

from conftest import run_cli

TINY = str(Path(__file__).parent / "data" / "tiny.toml")
REMOVE = """
name = "tiny-remove"
seeds = 1
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 600, train_split = 0.5 }
train = { epochs = 3, batch_size = 64, save_model = true }
prune = { scorer = "l2", target = "smallest", effector = "remove", start = "1ep", end = "2ep", period = "1ep", layers = { conv2 = { fraction = 0.5 }, conv3 = { fraction = 0.5 } } }
[scales.quick]
"""


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A tiny run with --save-models (masked pruning, both targets, and the unpruned cell), and one whose
    suite file asks for the models itself (train.save_model) with physical removal."""
    root = tmp_path_factory.mktemp("models")
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--save-models", "--out", str(root / "masked"), "--json")
    assert proc.returncode == 0, proc.stderr
    (root / "remove.toml").write_text(textwrap.dedent(REMOVE))
    proc = run_cli("run", "--suite", str(root / "remove.toml"), "--out", str(root / "removed"), "--json")
    assert proc.returncode == 0, proc.stderr
    return root


def cells(run: Path) -> list[Path]:
    return sorted(d for d in (run / "cells").iterdir() if d.is_dir())


def test_a_loaded_model_gives_the_stored_final_test_accuracy_exactly(stored, registry):
    for cell in cells(stored / "masked") + cells(stored / "removed"):
        result = json.loads((cell / "result.json").read_text())
        model = gstbench.load_model(cell)
        assert not model.training
        data = registry.load_data(model.gstbench_spec.dataset)
        assert evaluate(model, data.x_test, data.y_test)[0] == result["metrics"]["final_test_acc"], cell.name
        assert model.gstbench_spec.hash == result["hash"]


def test_the_readmes_way_to_a_cell_loads_it_and_a_wrong_path_is_named_as_one(stored, tmp_path):
    frame = gstbench.results(stored / "masked").cells
    row = frame.iloc[0]
    model = gstbench.load_model(row.directory)  # the README's example: results(DIR).cells.directory
    assert model.gstbench_spec.hash == row.hash
    by_full_hash = gstbench.load_model(stored / "masked" / "cells" / row.hash)  # the 64-character hash
    assert by_full_hash.gstbench_spec.hash == row.hash
    with pytest.raises(GstbenchError, match="does not exist: give a cell's directory, <run>/cells/<hash16>"):
        gstbench.load_model(stored / "masked" / "cells" / "0123456789abcdef")


def test_removed_and_masked_forms_compute_the_same_function_with_fewer_parameters(stored, registry):
    pruned = 0
    for cell in cells(stored / "masked"):
        masked, removed = gstbench.load_model(cell), gstbench.load_model(cell, structured=True)
        data = registry.load_data(masked.gstbench_spec.dataset)
        with torch.no_grad():
            a, b = masked(data.x_test), removed(data.x_test)
        assert torch.allclose(a, b, atol=1e-5), cell.name
        assert torch.equal(a.argmax(1), b.argmax(1))
        params = [sum(p.numel() for p in m.parameters()) for m in (masked, removed)]
        if masked.pruning_kept:
            pruned += 1
            dead = sum(int((~k).sum()) for k in masked.pruning_kept.values())
            assert dead > 0 and params[1] < params[0]
            assert {n: int(k.sum()) for n, k in removed.pruning_kept.items()} == \
                json.loads((cell / "result.json").read_text())["metrics"]["remaining_filters"]
        else:
            assert params[1] == params[0]
    assert pruned == 2


def test_a_cell_pruned_by_removal_loads_slim_in_both_forms(stored):
    cell, = cells(stored / "removed")
    slim = gstbench.load_model(cell)
    assert slim.prunable_layers and slim.get_submodule(slim.prunable_layers["conv2"].conv).weight.shape[0] < 16
    same = gstbench.load_model(cell, structured=True)
    assert [p.shape for p in slim.parameters()] == [p.shape for p in same.parameters()]


def test_export_model_writes_a_torch_export_program_and_a_safetensors_file(stored, registry, tmp_path):
    cell = next(c for c in cells(stored / "masked") if gstbench.load_model(c).pruning_kept)
    removed = gstbench.load_model(cell, structured=True)
    x = registry.load_data(removed.gstbench_spec.dataset).x_test[:5]
    proc = run_cli("export-model", str(cell), str(tmp_path / "net.pt2"))
    assert proc.returncode == 0, proc.stderr
    assert "dead filters removed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1  # no warning from torch about the temp file's name
    program = torch.export.load(str(tmp_path / "net.pt2")).module()
    with torch.no_grad():
        assert torch.allclose(program(x), removed(x), atol=1e-6)
        assert torch.allclose(program(x[:1]), removed(x[:1]), atol=1e-6)  # batch 1 as well
    proc = run_cli("export-model", str(cell), str(tmp_path / "net.safetensors"), "--masked")
    assert proc.returncode == 0, proc.stderr
    again = gstbench.load_model(tmp_path / "net.safetensors")
    with torch.no_grad():
        assert torch.equal(again(x), gstbench.load_model(cell)(x))
    slim = tmp_path / "slim.safetensors"
    assert run_cli("export-model", str(cell), str(slim)).returncode == 0
    with torch.no_grad():  # a slim file loads slim, masked or not
        assert torch.allclose(gstbench.load_model(slim)(x), removed(x), atol=1e-6)


def test_bad_input_gets_one_line_naming_the_file_and_the_fix(stored, tmp_path):
    cell = cells(stored / "masked")[0]
    proc = run_cli("export-model", str(cell), str(tmp_path / "net.onnx"))
    assert proc.returncode == 2 and "must end in .safetensors" in proc.stderr and "Traceback" not in proc.stderr
    bare = tmp_path / "bare"
    bare.mkdir()
    proc = run_cli("export-model", str(bare), str(tmp_path / "net.pt2"))
    assert proc.returncode == 2 and "--no-models" in proc.stderr and str(bare) in proc.stderr
    proc = run_cli("export-model", str(stored / "masked"), str(tmp_path / "net.pt2"))
    assert proc.returncode == 2 and "is a run directory; give one of its cells" in proc.stderr
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a model")
    proc = run_cli("export-model", str(broken), str(tmp_path / "net.pt2"))
    assert proc.returncode == 2 and "not a readable safetensors file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_saving_models_is_not_part_of_a_cells_identity(registry):
    plain = load_suite(registry, TINY)
    saving = load_suite(registry, TINY, overrides={"train.save_model": True})
    assert [c.hash for c in plain.cells] == [c.hash for c in saving.cells]
    assert all(c.train.save_model for c in saving.cells)


def test_save_models_on_cells_finished_without_it_says_so_and_trains_nothing(stored, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(stored / "masked", out)
    model_file(cells(out)[0]).unlink()  # kept with the cell's training
    proc = run_cli("run", "--suite", TINY, "--seeds", "1", "--save-models", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["run"]["ran"] == 0
    assert "--save-models: 1 cell finished before without it has no model.safetensors" in proc.stderr
