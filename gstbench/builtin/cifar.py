"""Built-in CIFAR-10 and CIFAR-100 datasets: torchvision's archives, read into tensors that live on the device.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/cifar.py.
"""

from __future__ import annotations

import functools
from gstbench.components import TensorData
from gstbench.plugins import hookimpl
from gstbench.shapes import DataShape


def cifar10(augment: bool = False, download: bool = True) -> TensorData:
    """CIFAR-10: 50,000 / 10,000 32x32 color images, 10 classes; ``augment``: random crop (pad 4) and flip."""
    from gstbench.builtin.impl.cifar import _dataset

    return _dataset("cifar10", 10, augment, download)


def cifar100(augment: bool = False, download: bool = True) -> TensorData:
    """CIFAR-100: 50,000 / 10,000 32x32 color images, 100 (fine) classes; ``augment``: random crop and flip."""
    from gstbench.builtin.impl.cifar import _dataset

    return _dataset("cifar100", 100, augment, download)


def _placeholder(name: str, num_classes: int) -> TensorData:
    from gstbench.builtin.impl.cifar import _placeholder as stand_in

    return stand_in(name, num_classes)


# What `gstbench suites show` checks a suite against when it is not to read the files.
def _shape(num_classes: int, augment: bool = False, download: bool = True) -> DataShape:
    return DataShape((3, 32, 32), num_classes, 50_000, 10_000)


cifar10.shape = functools.partial(_shape, 10)
cifar100.shape = functools.partial(_shape, 100)
cifar10.placeholder = functools.partial(_placeholder, "cifar10", 10)
cifar100.placeholder = functools.partial(_placeholder, "cifar100", 100)


@hookimpl
def register_datasets(register):
    register("cifar10", cifar10)
    register("cifar100", cifar100)
