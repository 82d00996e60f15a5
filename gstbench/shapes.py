"""Shapes without tensors: what planning needs of a dataset and a model (sizes, prunable layers, MACs), no torch.

A dataset factory may carry ``factory.shape(**options) -> DataShape`` and a model factory
``factory.shapes(input_shape, num_classes, **options) -> ModelShape``. With them, ``gstbench
suites show`` checks layer names and schedules and estimates a suite's cost without importing
torch (a 10,000-cell suite in about a second); a component without them is built once instead.
``ConvNetShape`` counts a conv net's layers as torch-pruning's counter does (a test holds the
built-in models to it): convolutions and linear layers by their multiply-accumulates (a linear
layer's bias too), BatchNorm as two operations per output, a ReLU module and a max-pool as one
per input, functional calls not at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DataShape:
    """A dataset's examples' shape (channels first), its classes, and how many examples each split holds."""

    input_shape: tuple[int, ...]
    num_classes: int
    n_train: int
    n_test: int


@dataclass(frozen=True)
class ModelShape:
    """A model's prunable layers (name -> filters or a group's units), the weights of every layer whose weights may be pruned one by
    one (a prunable layer's name or a conv/linear module's path -> its weight count), and its forward MACs per
    example."""

    units: dict[str, int]
    weights: dict[str, int]
    macs: float
    groups: dict[str, str] = field(default_factory=dict)  # the prunable layers that are groups -> their units' kind


@dataclass
class ConvNetShape:
    """A conv net's shape built layer by layer: each call follows the tensor through one module."""

    channels: int
    spatial: list[int]
    macs: float = 0.0
    units: dict[str, int] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=dict)  # each conv/linear module's path -> its weights
    declared: dict[str, int] = field(default_factory=dict)  # each prunable layer's name -> its conv's weights

    @property
    def numel(self) -> int:
        return self.channels * math.prod(self.spatial)

    def conv(self, path: str, c_out: int, kernel: int, stride: int = 1, padding: int | None = None,
             c_in: int | None = None) -> "ConvNetShape":
        """A convolution (no bias) from ``c_in`` channels (default: the current ones) to ``c_out``."""
        c_in = self.channels if c_in is None else c_in
        padding = kernel // 2 if padding is None else padding
        self.spatial = [(s + 2 * padding - kernel) // stride + 1 for s in self.spatial]
        self.channels = c_out
        per_output = c_in * kernel ** len(self.spatial)
        self.macs += self.numel * per_output
        self.weights[path] = c_out * per_output
        return self

    def batchnorm(self) -> "ConvNetShape":
        self.macs += 2 * self.numel
        return self

    def relu(self) -> "ConvNetShape":
        self.macs += self.numel
        return self

    def maxpool(self, kernel: int = 2) -> "ConvNetShape":
        self.macs += self.numel
        self.spatial = [s // kernel for s in self.spatial]
        return self

    def linear(self, path: str, features_in: int, features_out: int) -> "ConvNetShape":
        self.macs += features_in * features_out + features_out
        self.weights[path] = features_in * features_out
        return self

    def prunable(self, name: str, conv_path: str) -> None:
        """Declare the prunable layer ``name``: the last convolution's filters, at ``conv_path``."""
        self.units[name] = self.channels
        self.declared[name] = self.weights[conv_path]

    def model(self) -> ModelShape:
        # a declared name is found before a module's path, as pruning.weight_layer looks them up
        return ModelShape(dict(self.units), {**self.weights, **self.declared}, float(self.macs))
