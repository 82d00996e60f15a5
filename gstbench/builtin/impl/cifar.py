"""CIFAR-10 and CIFAR-100 read from torchvision's archives into tensors, with their augmentation.

Registered, with their options, in gstbench/builtin/cifar.py; imported only when a cell builds one.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path

import numpy as np
import torch

from gstbench.components import DATA_DIR_ENV, TensorData, data_dir
from gstbench.errors import GstbenchError
from gstbench.names import inside

# Per-channel mean and standard deviation of the training images in [0, 1].
NORMALIZATION = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _torchvision_class(name: str):
    from torchvision import datasets

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def _files(name: str, root: Path) -> tuple[list[Path], list[Path]]:
    tv = _torchvision_class(name)
    folder = root / tv.base_folder
    return [folder / f for f, _ in tv.train_list], [folder / f for f, _ in tv.test_list]


def ensure_files(name: str, root: Path, download: bool) -> tuple[list[Path], list[Path]]:
    """The train and test files, downloaded first when missing and ``download`` is set."""
    train, test = _files(name, root)
    missing = [p for p in train + test if not p.is_file()]
    if not missing:
        return train, test
    tv = _torchvision_class(name)
    label = "CIFAR-10" if name == "cifar10" else "CIFAR-100"
    hint = (f"put the extracted {tv.filename} under {root} (or pass --data-dir / set {DATA_DIR_ENV})")
    if not download:
        raise GstbenchError(f"{label}: {missing[0]} is missing and download = false; {hint}")
    for path in (root / tv.filename, *train, *test):  # a link there would send the download elsewhere
        inside(root, path, "the data directory, --data-dir")
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(tv.url, str(root), filename=tv.filename, md5=tv.tgz_md5)
    except Exception as exc:  # offline, or a bad archive
        raise GstbenchError(f"{label}: {missing[0]} is missing and the download from {tv.url} failed "
                            f"({type(exc).__name__}: {exc}); {hint}") from None
    return train, test


def _read(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels from CIFAR pickles (CIFAR-100: the fine labels)."""
    xs, ys = [], []
    for path in paths:
        try:
            with open(path, "rb") as f:
                entry = pickle.load(f, encoding="latin1")
            data = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            labels = np.asarray(entry["labels"] if "labels" in entry else entry["fine_labels"], dtype=np.int64)
        except Exception as exc:
            raise GstbenchError(f"{path}: not a CIFAR python batch ({type(exc).__name__}: {exc})") from None
        if len(labels) != len(data):
            raise GstbenchError(f"{path}: {len(data)} images but {len(labels)} labels")
        xs.append(data)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


class RandomCropFlip:
    """Random crop after padding, and a horizontal flip with probability 1/2, on a batch on its device.

    The padding is black (0 before normalization), as torchvision's ``RandomCrop(32, padding=4)``
    in front of ``Normalize``.
    """

    def __init__(self, padding: int, mean: tuple[float, ...], std: tuple[float, ...]):
        self.padding = padding
        self.fill = torch.tensor([-m / s for m, s in zip(mean, std)])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.padding
        padded = self.fill.to(x.device, x.dtype).view(1, c, 1, 1).repeat(n, 1, h + 2 * p, w + 2 * p)
        padded[:, :, p:p + h, p:p + w] = x
        dy, dx = torch.randint(0, 2 * p + 1, (2, n, 1), generator=generator, device=x.device)
        rows = (dy + torch.arange(h, device=x.device)).view(n, 1, h, 1)
        cols = (dx + torch.arange(w, device=x.device)).view(n, 1, 1, w)
        flip = torch.rand(n, generator=generator, device=x.device) < 0.5
        cols = torch.where(flip.view(n, 1, 1, 1), cols.flip(-1), cols)
        batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
        out = padded[batch, torch.arange(c, device=x.device).view(1, c, 1, 1), rows, cols]
        return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
            memory_format=torch.channels_last) else out


@functools.lru_cache(maxsize=2)
def _load(name: str, root: str, download: bool) -> tuple[torch.Tensor, ...]:
    train, test = ensure_files(name, Path(root), download)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATION[name])

    def tensors(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = _read(paths)
        return (torch.from_numpy(x).float().div_(255).sub_(mean).div_(std), torch.from_numpy(y))

    return (*tensors(train), *tensors(test))


def _dataset(name: str, num_classes: int, augment: bool, download: bool) -> TensorData:
    x_train, y_train, x_test, y_test = _load(name, str(data_dir()), bool(download))
    low, high = int(min(y_train.min(), y_test.min())), int(max(y_train.max(), y_test.max()))
    if low < 0 or high >= num_classes:
        raise GstbenchError(f"{name} in {data_dir()}: label {low if low < 0 else high} outside 0..{num_classes - 1}")
    norm = NORMALIZATION[name]
    return TensorData(x_train, y_train, x_test, y_test, num_classes=num_classes, normalization=norm,
                      augmentation=RandomCropFlip(4, *norm) if augment else None)


def _placeholder(name: str, num_classes: int) -> TensorData:
    """Blank images of the real shapes, counts and normalization (expanded views: no memory), for checks."""
    def blank(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros(1, 3, 32, 32).expand(n, 3, 32, 32), torch.zeros(1, dtype=torch.long).expand(n)

    return TensorData(*blank(50_000), *blank(10_000), num_classes=num_classes, normalization=NORMALIZATION[name])
