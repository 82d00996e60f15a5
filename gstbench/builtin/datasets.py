"""Built-in datasets: MNIST-1D, generated procedurally by the mnist1d package (no download), with shifted test sets.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/datasets.py.
"""

from __future__ import annotations

from gstbench.components import TensorData
from gstbench.plugins import hookimpl
from gstbench.shapes import DataShape


def mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> TensorData:
    """MNIST-1D (Greydanus 2020): 10 classes of 40-sample 1-D signals, generated in about a second."""
    from gstbench.builtin.impl.datasets import _generate

    if num_samples < 20 or not 0 < train_split < 1:
        raise ValueError("mnist1d needs num_samples >= 20 and 0 < train_split < 1")
    return _generate(int(num_samples), float(train_split), int(seed))


def _mnist1d_shape(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42) -> DataShape:
    """The generator's sizes without generating: it keeps a whole number of examples per class, then splits."""
    if num_samples < 20 or not 0 < train_split < 1:
        raise ValueError("mnist1d needs num_samples >= 20 and 0 < train_split < 1")
    total = int(num_samples) // 10 * 10
    n_train = int(total * float(train_split))
    return DataShape((1, 40), 10, n_train, total - n_train)


mnist1d.shape = _mnist1d_shape


@hookimpl
def register_datasets(register):
    register("mnist1d", mnist1d)
