"""Built-in datasets: MNIST-1D, generated procedurally by the mnist1d package (no download)."""

from __future__ import annotations

import functools

import numpy as np
import torch

from gstbench.components import TensorData
from gstbench.plugins import hookimpl


@functools.lru_cache(maxsize=4)
def _generate(num_samples: int, train_split: float, seed: int) -> TensorData:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG; leave it as it was
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(state)

    def x(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.float32).unsqueeze(1)

    def y(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=torch.long)

    return TensorData(x(data["x"]), y(data["y"]), x(data["x_test"]), y(data["y_test"]), num_classes=10)


def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> TensorData:
    """MNIST-1D (Greydanus 2020): 10 classes of 40-sample 1-D signals, generated in about a second."""
    if num_samples < 20 or not 0 < train_split < 1:
        raise ValueError("mnist1d needs num_samples >= 20 and 0 < train_split < 1")
    return _generate(int(num_samples), float(train_split), int(seed))


@hookimpl
def register_datasets(register):
    register("mnist1d", mnist1d)
