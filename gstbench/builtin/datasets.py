"""Built-in datasets: MNIST-1D, generated procedurally by the mnist1d package (no download), with shifted test sets."""

from __future__ import annotations

import functools
import random

import numpy as np
import torch

from gstbench.components import TensorData
from gstbench.plugins import hookimpl

# Shifted MNIST-1D test sets: the generator's own transformations, made stronger. Severity s
# sets the parameter to nominal + s * step (nominal: iid noise 0.02, correlated noise 0.25,
# shear 0.75, scale 0.4). Steps chosen so that severity 3 costs a trained cnn1d about as
# much accuracy as CIFAR-10-C's severity 3 costs a CIFAR network (docs/definitions.md).
SHIFTS = {
    "iid_noise": ("iid_noise_scale", 0.015),
    "corr_noise": ("corr_noise_scale", 0.08),
    "shear": ("shear_scale", 0.5),
    "scale": ("scale_coeff", 0.3),
}
SHIFT_SEED_OFFSET = 1_000_003  # shifted sets draw new signals, never the nominal test signals


def _args(num_samples: int, train_split: float, seed: int, **changes: float):
    from mnist1d.data import get_dataset_args

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    for k, v in changes.items():
        setattr(args, k, v)
    return args


def _raw_signals(args) -> tuple[np.ndarray, np.ndarray]:
    """make_dataset's signals before its normalization (same seed, same draws, same order)."""
    from mnist1d.data import get_templates
    from mnist1d.transform import transform

    templates = get_templates()
    state, py_state = np.random.get_state(), random.getstate()
    try:
        random.seed(args.seed)
        np.random.seed(args.seed)
        xs, ys = [], []
        for label in range(len(templates["y"])):
            for _ in range(args.num_samples // len(templates["y"])):
                x, _ = transform(templates["x"][label], templates["t"], args)
                xs.append(x)
                ys.append(templates["y"][label])
        order = np.random.permutation(len(ys))
        return np.stack(xs)[order], np.stack(ys)[order]
    finally:
        np.random.set_state(state)
        random.setstate(py_state)


class MNIST1DShifts:
    """Test sets of the same size drawn with stronger generator settings, normalized as the nominal data."""

    names = tuple(SHIFTS)

    def __init__(self, num_samples: int, train_split: float, seed: int):
        self.num_samples, self.train_split, self.seed = num_samples, train_split, seed

    def describe(self, name: str, severity: int) -> dict[str, float]:
        return dict([_setting(name, severity)])

    def test_set(self, name: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in SHIFTS or not 1 <= severity <= 5:
            raise ValueError(f"mnist1d has no shift {name!r} at severity {severity}; shifts: {', '.join(SHIFTS)}, "
                             f"severities 1-5")
        return _shifted(self.num_samples, self.train_split, self.seed, name, severity)


def _setting(name: str, severity: int) -> tuple[str, float]:
    """The generator parameter a shift strengthens, and its value at ``severity``."""
    param, step = SHIFTS[name]
    return param, getattr(_args(1, 0.5, 0), param) + severity * step


@functools.lru_cache(maxsize=None)
def _nominal_stats(num_samples: int, train_split: float, seed: int) -> tuple[float, float]:
    xs, _ = _raw_signals(_args(num_samples, train_split, seed))
    return float(xs.mean()), float(xs.std())


@functools.lru_cache(maxsize=64)
def _shifted(num_samples: int, train_split: float, seed: int, name: str, severity: int):
    n_test = num_samples - int(num_samples * train_split)
    param, value = _setting(name, severity)
    args = _args(n_test, 0.0, seed + SHIFT_SEED_OFFSET * severity + list(SHIFTS).index(name), **{param: value})
    xs, ys = _raw_signals(args)
    mean, std = _nominal_stats(num_samples, train_split, seed)
    return (torch.as_tensor((xs - mean) / std, dtype=torch.float32).unsqueeze(1),
            torch.as_tensor(ys, dtype=torch.long))


@functools.lru_cache(maxsize=4)
def _generate(num_samples: int, train_split: float, seed: int) -> TensorData:
    from mnist1d.data import make_dataset

    state = np.random.get_state()  # make_dataset seeds numpy's global RNG; leave it as it was
    try:
        data = make_dataset(_args(num_samples, train_split, seed))
    finally:
        np.random.set_state(state)

    def x(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)

    def y(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long)

    return TensorData(x(data["x"]), y(data["y"]), x(data["x_test"]), y(data["y_test"]), num_classes=10,
                      shifts=MNIST1DShifts(num_samples, train_split, seed))


def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> TensorData:
    """MNIST-1D (Greydanus 2020): 10 classes of 40-sample 1-D signals, generated in about a second."""
    if num_samples < 20 or not 0 < train_split < 1:
        raise ValueError("mnist1d needs num_samples >= 20 and 0 < train_split < 1")
    return _generate(int(num_samples), float(train_split), int(seed))


@hookimpl
def register_datasets(register):
    register("mnist1d", mnist1d)
