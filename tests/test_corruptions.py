"""Image corruptions and MNIST-1D shifts: deterministic for a seed, shape and range kept, stronger with severity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gstbench.builtin.datasets import mnist1d
from gstbench.builtin.impl.datasets import SHIFTS, _args, _raw_signals
from gstbench.components import Evaluated, MetricContext, TensorData
from gstbench.builtin.corruptions import CORRUPTIONS, NOT_IMPLEMENTED, CorruptionShifts, corrupt

REQUIRED = {"gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur", "defocus_blur",
            "contrast", "brightness", "saturate", "pixelate", "jpeg_compression"}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.rand(8, 3, 32, 32, generator=g)


def test_the_required_corruptions_exist_and_the_rest_are_named():
    assert REQUIRED <= set(CORRUPTIONS)
    assert len(set(CORRUPTIONS) | set(NOT_IMPLEMENTED)) == 19  # REFERENCE.md's list, all accounted for


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corruption_is_seeded_keeps_shape_and_range_and_grows_with_severity(images, name):
    out = {s: corrupt(images, name, s, seed=1) for s in range(1, 6)}
    for s, x in out.items():
        assert x.shape == images.shape and x.dtype == images.dtype
        assert float(x.min()) >= 0 and float(x.max()) <= 1
        assert torch.equal(x, corrupt(images, name, s, seed=1))  # deterministic for a seed
    change = [float((out[s] - images).abs().mean()) for s in range(1, 6)]
    assert change[0] > 0
    if name == "saturate":  # CIFAR-10-C's saturate desaturates at 1-2 and oversaturates at 3-5
        assert change[0] < change[1] and change[2] < change[3] < change[4]
    elif name == "pixelate":  # its resolutions shrink (30, 28, 27, 24, 20 of 32); aliasing makes the change uneven
        assert change[4] > change[0]
    else:
        assert all(a < b for a, b in zip(change, change[1:])), change


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"])
def test_noise_differs_between_seeds(images, name):
    assert not torch.equal(corrupt(images, name, 3, seed=1), corrupt(images, name, 3, seed=2))


def test_bad_requests_name_what_is_wrong(images):
    with pytest.raises(ValueError, match="not implemented in gstbench"):
        corrupt(images, "fog", 1)
    with pytest.raises(ValueError, match="severity 6"):
        corrupt(images, "contrast", 6)
    with pytest.raises(ValueError, match="RGB"):
        corrupt(images[:, :1], "saturate", 1)


def test_corruption_shifts_work_on_normalized_tensors(images):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    shifts = CorruptionShifts((images - m) / s, torch.zeros(8, dtype=torch.long), mean, std)
    x, _ = shifts.test_set("contrast", 2)
    assert torch.allclose(x * s + m, corrupt(images, "contrast", 2), atol=1e-5)
    gray = CorruptionShifts(images[:, :1], torch.zeros(8, dtype=torch.long), (0.0,), (1.0,))
    assert "saturate" not in gray.names and "contrast" in gray.names


def test_ood_accuracy_on_images_reports_every_corruption(registry, images):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.Linear(4 * 30 * 30, 10))
    data = TensorData(images, torch.arange(8), images, torch.arange(8), 10, normalization=((0, 0, 0), (1, 1, 1)))
    metric = registry.get("metrics", "ood-accuracy").factory(severities=[3])
    assert metric.check(data, model) is None
    out = metric.compute(MetricContext(Evaluated(model), data, torch.device("cpu")))
    assert set(out["ood_acc"]) == set(CORRUPTIONS)
    assert out["ood_acc_settings"]["kind"].startswith("image corruptions")


def test_mnist1d_raw_signals_are_make_datasets_before_normalization():
    from mnist1d.data import make_dataset

    xs, ys = _raw_signals(_args(200, 0.5, 3))
    ref = make_dataset(_args(200, 0.5, 3))
    assert np.allclose((xs - xs.mean()) / xs.std(), np.concatenate([ref["x"], ref["x_test"]]))
    assert (ys == np.concatenate([ref["y"], ref["y_test"]])).all()


def test_mnist1d_shifts_are_seeded_stronger_settings_of_test_size():
    data = mnist1d(num_samples=200, train_split=0.5)
    assert set(data.shifts.names) == set(SHIFTS)
    for name in SHIFTS:
        x1, y1 = data.shifts.test_set(name, 1)
        x5, _ = data.shifts.test_set(name, 5)
        assert x1.shape == data.x_test.shape and y1.shape == data.y_test.shape
        assert torch.equal(x1, mnist1d(num_samples=200, train_split=0.5).shifts.test_set(name, 1)[0])
        assert not torch.equal(x1, x5)
        (param, value1), = data.shifts.describe(name, 1).items()
        assert data.shifts.describe(name, 5)[param] > value1 > getattr(_args(1, 0.5, 0), param)
    # normalized with the nominal statistics, not their own: noise widens the spread
    assert float(data.shifts.test_set("iid_noise", 5)[0].std()) > float(data.x_test.std())
