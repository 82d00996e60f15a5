"""Built-in datasets: MNIST-1D, generated procedurally by the mnist1d package (no download), with shifted test sets;
and random images of a given shape, for what depends on shapes alone (the speed of a network).

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


def random_images(channels: int = 3, height: int = 32, width: int = 32, classes: int = 10, num_samples: int = 512,
                  seed: int = 0) -> TensorData:
    """Standard-normal images with random labels, half for training: inputs of a real dataset's shape (CIFAR's by
    default) where only the shape matters, as for a network's speed; nothing to learn, nothing to download."""
    import torch

    if min(channels, height, width, num_samples) < 1 or classes < 2 or num_samples < 4:
        raise ValueError("random-images needs channels, height, width >= 1, classes >= 2 and num_samples >= 4")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(int(num_samples), int(channels), int(height), int(width), generator=g)
    y = torch.randint(0, int(classes), (int(num_samples),), generator=g)
    half = int(num_samples) // 2
    return TensorData(x[:half], y[:half], x[half:], y[half:], int(classes))


def _random_images_shape(channels: int = 3, height: int = 32, width: int = 32, classes: int = 10,
                         num_samples: int = 512, seed: int = 0) -> DataShape:
    return DataShape((int(channels), int(height), int(width)), int(classes), int(num_samples) // 2,
                     int(num_samples) - int(num_samples) // 2)


random_images.shape = _random_images_shape


@hookimpl
def register_datasets(register):
    register("mnist1d", mnist1d)
    register("random-images", random_images)
