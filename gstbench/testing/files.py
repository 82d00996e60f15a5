"""The kit's files in real formats: CIFAR archives with random images, and a run directory's stored results.

PYTEST_DONT_REWRITE (the kit raises its own errors)
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def files_outside(root: Path | str, *allowed: Path | str) -> list[Path]:
    """The files under ``root`` that lie in none of ``allowed`` (files or directories): what a command
    wrote where it was not told to, when ``root`` held only ``allowed`` before."""
    keep = [Path(a).resolve() for a in allowed]

    def where(p: Path) -> Path:  # a link is where it lies, not where it points
        return p.parent.resolve() / p.name

    return sorted(p for p in Path(root).rglob("*") if (p.is_file() or p.is_symlink())
                  and not any(where(p) == a or a in where(p).parents for a in keep))


def stored_results(out: Path | str) -> dict[str, dict]:
    """hash -> what each finished cell of a run directory computed: status, metrics (without their wall
    times), curves, events and rounds (their metrics too). Two runs of the same cells compare equal when
    they computed the same."""
    from gstbench.store.store import Store

    def measured(metrics: dict | None) -> dict | None:
        return None if metrics is None else {k: v for k, v in metrics.items() if k != "metric_wall_s"}

    found = {}
    for cell in Store(out).iter_cells():
        result = cell.result
        if result is not None:
            rounds = [{**r.to_json(), "metrics": measured(r.metrics)} for r in result.rounds]
            found[result.hash] = {"status": result.status, "metrics": measured(result.metrics),
                                  "curves": result.curves, "events": result.events, "rounds": rounds}
    return found


def write_cifar(root: Path | str, name: str = "cifar10", n_train: int = 100, n_test: int = 50, seed: int = 0,
                learnable: bool = True) -> Path:
    """Write CIFAR-10 or CIFAR-100 python pickles (the official archives' layout) with random images.

    ``learnable`` paints each image with a class-dependent color offset so a network can fit
    the labels (useful for a short end-to-end run). Returns ``root``, the data directory.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100

    def batch(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, classes, n)
        images = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.float64)
        if learnable:
            palette = np.random.default_rng(12345).uniform(-90, 90, (classes, 3))
            images += palette[labels][:, :, None, None]
        return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072), labels.tolist()

    def dump(path: Path, obj: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        parts = np.array_split(np.arange(n_train), 5)
        for i, part in enumerate(parts, start=1):
            data, labels = batch(len(part))
            dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": data,
                                              "labels": labels, "filenames": [f"{j}.png" for j in part]})
        data, labels = batch(n_test)
        dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": data, "labels": labels,
                                     "filenames": [f"{j}.png" for j in range(n_test)]})
        dump(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": n_train // 5,
                                       "num_vis": 3072})
    elif name == "cifar100":
        folder = root / "cifar-100-python"
        for split, n in (("train", n_train), ("test", n_test)):
            data, labels = batch(n)
            dump(folder / split, {"data": data, "fine_labels": labels, "coarse_labels": [c // 5 for c in labels],
                                  "filenames": [f"{j}.png" for j in range(n)], "batch_label": split})
        dump(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                               "coarse_label_names": [f"super{i}" for i in range(20)]})
    else:
        raise ValueError(f"unknown CIFAR variant {name!r}: cifar10 or cifar100")
    return root
