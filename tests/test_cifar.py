"""CIFAR-10/100 from files in the official on-disk format (generated here), augmentation, and the paper scale."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time

import pytest
import torch

from gstbench.builtin import cifar
from gstbench.builtin.impl import cifar as cifar_files
from gstbench.components import DATA_DIR_ENV
from gstbench.errors import GstbenchError
from gstbench.testing import write_cifar
from gstbench.testing.terminal import TerminalProcess

from conftest import run_cli


@pytest.fixture()
def data_dir(tmp_path, monkeypatch):
    write_cifar(tmp_path, "cifar10", n_train=60, n_test=20, seed=1)
    write_cifar(tmp_path, "cifar100", n_train=40, n_test=20, seed=2)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    cifar_files._load.cache_clear()
    yield tmp_path
    cifar_files._load.cache_clear()


def _raw(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def test_cifar10_reads_the_batches_normalized_in_file_order(data_dir):
    data = cifar.cifar10()
    assert data.x_train.shape == (60, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.num_classes == 10 and data.augmentation is None
    first = _raw(data_dir / "cifar-10-batches-py" / "data_batch_1")
    assert data.y_train[:len(first["labels"])].tolist() == first["labels"]
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in data.normalization)
    pixels = torch.from_numpy(first["data"][0].reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(data.x_train[0], (pixels - mean) / std)
    assert data.y_test.tolist() == _raw(data_dir / "cifar-10-batches-py" / "test_batch")["labels"]


def test_cifar100_uses_the_fine_labels(data_dir):
    data = cifar.cifar100()
    assert data.num_classes == 100
    assert data.y_train.tolist() == _raw(data_dir / "cifar-100-python" / "train")["fine_labels"]


def test_missing_files_name_the_file_and_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    cifar_files._load.cache_clear()
    with pytest.raises(GstbenchError, match=r"data_batch_1 is missing and download = false.*--data-dir"):
        cifar.cifar10(download=False)


def test_offline_download_failure_names_the_url_and_the_file(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(url, *args, **kwargs):  # the edge of the network
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> ({url})")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    cifar_files._load.cache_clear()
    with pytest.raises(GstbenchError, match=r"cifar-100-python/train is missing and the download from "
                                            r"https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz failed"):
        cifar.cifar100()


def test_a_download_that_a_link_would_send_outside_the_data_dir_is_refused(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def never(url, *args, **kwargs):  # the edge of the network: it must not be reached
        raise AssertionError(f"downloaded {url}")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", never)
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    (data / "cifar-10-batches-py").symlink_to(elsewhere)
    monkeypatch.setenv(DATA_DIR_ENV, str(data))
    cifar_files._load.cache_clear()
    with pytest.raises(GstbenchError, match=r"lies outside .*--data-dir"):
        cifar.cifar10()
    assert not list(elsewhere.iterdir())


def test_a_corrupt_batch_is_named(data_dir):
    (data_dir / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(GstbenchError, match=r"data_batch_3: not a CIFAR python batch"):
        cifar.cifar10()


def test_augmentation_is_a_seeded_padded_crop_and_flip_of_each_image(data_dir):
    data = cifar.cifar10(augment=True)
    x = data.x_train[:32]
    a = data.augmentation(x, torch.Generator().manual_seed(5))
    b = data.augmentation(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, data.augmentation(x, torch.Generator().manual_seed(6)))
    fill = data.augmentation.fill.view(3, 1, 1)
    padded = fill.expand(32, 3, 40, 40).clone()
    padded[:, :, 4:36, 4:36] = x
    flips = 0
    for i in range(32):  # each output is one of the 81 x 2 windows of its own padded image
        windows = [(w, False) for w in [padded[i, :, r:r + 32, c:c + 32] for r in range(9) for c in range(9)]]
        match = [f for w, _ in windows for f in (False, True) if torch.equal(a[i], w.flip(-1) if f else w)]
        assert match, f"image {i} is not a crop of its padded original"
        flips += match[0]
    assert 4 <= flips <= 28
    assert data.x_test.equal(cifar.cifar10().x_test)  # the test set is never augmented


def test_augmentation_draws_per_step_so_training_is_reproducible(data_dir, registry):
    from gstbench.plan.parse import cell_from_config
    from gstbench.engine import run_cell

    config = {"model": "resnet20", "dataset": {"name": "cifar10", "augment": True}, "prune": False,
              "train": {"epochs": 2, "batch_size": 32}}
    spec = cell_from_config(config, 0, registry)
    a, b = run_cell(spec, registry), run_cell(spec, registry)
    assert a.status == "ok", a.error
    assert a.curves == b.curves
    plain = run_cell(cell_from_config({**config, "dataset": "cifar10"}, 0, registry), registry)
    assert plain.curves.train_loss != a.curves.train_loss


def test_suites_show_paper_prints_the_matrix_and_cost_without_the_files(tmp_path):
    proc = run_cli("suites", "show", "tradeoff", "--scale", "paper", env={DATA_DIR_ENV: str(tmp_path / "none")})
    assert proc.returncode == 0, proc.stderr
    assert "7 configurations x 10 seeds (0-9) = 70 cells" in proc.stdout
    assert "axis prune.period: 4ep, 40ep" in proc.stdout
    # 70 cells: 60 pruned x 325 epochs, one 325-epoch parent per seed; CIFAR-10 is 50,000 images
    assert "cost estimate: 22,750 training epochs (1.14e+09 images)" in proc.stdout
    assert "GPU-hours at 10 TFLOP/s" in proc.stdout
    assert not (tmp_path / "none").exists()  # nothing downloaded
    proc = run_cli("suites", "show", "ood", "--scale", "paper", "--tflops", "20", "--json")
    cost = json.loads(proc.stdout)["cost"]
    assert cost["tflops_assumed"] == 20 and cost["cells"] == 9 and cost["gpu_hours"] > 0


@pytest.mark.parametrize("suite", ["rate", "permanence", "flatness", "ood", "rewind"])
def test_every_suite_has_a_paper_scale(registry, suite):
    from gstbench.run.cost import estimate
    from gstbench.plan.suite import load_suite

    loaded = load_suite(registry, suite, scale="paper", placeholders=True)
    models = {spec.model.id for spec in loaded.cells}
    assert models <= {"gstbench:vgg11-bn", "gstbench:resnet20"} and len(loaded.cells) >= 9
    assert {spec.dataset.id for spec in loaded.cells} == {"gstbench:cifar10"}
    assert estimate(loaded, registry, placeholders=True)["gpu_hours"] > 1


@pytest.mark.slow
def test_paper_tradeoff_starts_training_on_cifar_format_files(tmp_path):
    """`gstbench run --suite tradeoff --scale paper --data-dir D` trains VGG11-BN on the files (its bar shows an
    epoch done); stopped by Ctrl-C."""
    data = write_cifar(tmp_path / "data", "cifar10", n_train=128, n_test=32)
    out = tmp_path / "out"
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "", "COLUMNS": "200"}
    term = TerminalProcess("run", "--suite", "tradeoff", "--scale", "paper", "--data-dir", str(data), "--out", str(out),
                           env=env, sigint_default=True)
    trained = re.compile(r"epoch [1-9]\d*/\d+")  # a cell in flight has trained an epoch on the generated images
    deadline = time.monotonic() + 240
    while not trained.search(term.text()) and time.monotonic() < deadline and term.proc.poll() is None:
        time.sleep(0.2)
    term.proc.send_signal(signal.SIGINT)
    try:
        code = term.wait(timeout=120)
    finally:
        if term.proc.poll() is None:
            term.proc.kill()
    seen = term.text()
    assert "tradeoff (paper): 70 cells, 70 to run" in seen, seen[-2000:]
    assert trained.search(seen) and not re.search(r"\b[1-9]\d* failed", seen), seen[-2000:]
    assert code == 130 and "interrupted" in seen, seen[-2000:]
    specs = [json.loads(p.read_text())["spec"] for p in out.glob("cells/*/spec.json")]
    assert len(specs) == 70
    assert {s["model"]["id"] for s in specs} == {"gstbench:vgg11-bn"}
    assert {s["dataset"]["id"] for s in specs} == {"gstbench:cifar10"}
