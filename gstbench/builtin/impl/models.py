"""The built-in networks: 1-D CNNs, VGG and ResNets (CIFAR and 1-D), one code for 1-D and 2-D inputs.

Registered, with their options, in gstbench/builtin/models.py; imported only when a cell builds one.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from gstbench.components import PrunableLayer

_LAYERS = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d), 2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)}


def _layers(input_shape: Sequence[int]) -> tuple[type, type, type]:
    dims = len(input_shape) - 1
    if dims not in _LAYERS:
        raise ValueError(f"inputs of shape {tuple(input_shape)}: need (channels, length) or (channels, height, width)")
    return _LAYERS[dims]


class VGG(nn.Module):
    """Conv-BN-ReLU blocks with max-pooling and a single linear classifier (the paper's VGG variant)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int],
                 pool_after: Sequence[int]):
        super().__init__()
        conv, bn, pool = _layers(input_shape)
        blocks: list[tuple[str, nn.Module]] = []
        c_in, spatial = input_shape[0], list(input_shape[1:])
        self.prunable_layers: dict[str, PrunableLayer] = {}
        for i, c_out in enumerate(channels, start=1):
            block = OrderedDict([("conv", conv(c_in, c_out, 3, padding=1, bias=False)), ("bn", bn(c_out)),
                                 ("relu", nn.ReLU(inplace=True))])
            blocks.append((f"block{i}", nn.Sequential(block)))
            self.prunable_layers[f"conv{i}"] = PrunableLayer(conv=f"features.block{i}.conv",
                                                             bn=f"features.block{i}.bn")
            if i in pool_after:
                blocks.append((f"pool{i}", pool(2)))
                spatial = [s // 2 for s in spatial]
            c_in = c_out
        if min(spatial) < 1:
            raise ValueError(f"inputs of shape {tuple(input_shape)} are too small for {len(pool_after)} poolings")
        self.features = nn.Sequential(OrderedDict(blocks))
        self.classifier = nn.Linear(c_in * math.prod(spatial), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, conv: type, bn: type):
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = bn(c_out)
        self.conv2 = conv(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = bn(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:  # a 1x1 projection, as in OpenLTH's CIFAR ResNets
            self.shortcut = nn.Sequential(conv(c_in, c_out, 1, stride=stride, bias=False), bn(c_out))
        self.add = _Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.add(self.bn2(self.conv2(out)), self.shortcut(x))
        return torch.relu(out)


class _Add(nn.Module):
    """The residual sum as a module, so the activation scorer can read the post-shortcut output."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ResNet(nn.Module):
    """A CIFAR-style ResNet: 3x3 stem (no max-pool), stages of basic blocks, global average pool, one linear layer."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int], blocks: int):
        super().__init__()
        conv, bn, _ = _layers(input_shape)
        self.stem = nn.Sequential(conv(input_shape[0], channels[0], 3, padding=1, bias=False),
                                  bn(channels[0]), nn.ReLU(inplace=True))
        stages, c_in = [], channels[0]
        self.prunable_layers: dict[str, PrunableLayer] = {}
        for s, c_out in enumerate(channels, start=1):
            stage = []
            for b in range(1, blocks + 1):
                stage.append(BasicBlock(c_in, c_out, 2 if (b == 1 and s > 1) else 1, conv, bn))
                prefix = f"layer{s}.{b - 1}"
                self.prunable_layers[f"layer{s}.{b}.conv1"] = PrunableLayer(f"{prefix}.conv1", f"{prefix}.bn1")
                # conv2 feeds the residual sum: the shortcut still adds into a masked channel.
                self.prunable_layers[f"layer{s}.{b}.conv2"] = PrunableLayer(f"{prefix}.conv2", f"{prefix}.bn2",
                                                                            activation=f"{prefix}.add")
                c_in = c_out
            stages.append((f"layer{s}", nn.Sequential(*stage)))
        for name, stage in stages:
            self.add_module(name, stage)
        self.n_stages = len(stages)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        for s in range(1, self.n_stages + 1):
            out = getattr(self, f"layer{s}")(out)
        return self.fc(out.flatten(2).mean(dim=-1))


def imagenet_resnet50(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """torchvision's ResNet-50 (He et al. 2016, ImageNet form: 7x7 stem, max-pool, 16 bottlenecks), untrained, with
    each bottleneck's inner convolutions (conv1, conv2) declared prunable: conv3 feeds the residual sum, whose
    channels stay, as in Torch-Pruning's and DepGraph's tables of it."""
    from torchvision.models import resnet50

    if len(input_shape) != 3 or input_shape[0] != 3:
        raise ValueError(f"resnet50 takes 3-channel images (3, height, width), not inputs of shape "
                         f"{tuple(input_shape)}")
    model = resnet50(weights=None, num_classes=num_classes)
    model.prunable_layers = {}
    for s in range(1, 5):
        for b, _ in enumerate(getattr(model, f"layer{s}")):
            for c in (1, 2):
                model.prunable_layers[f"layer{s}.{b + 1}.conv{c}"] = PrunableLayer(f"layer{s}.{b}.conv{c}",
                                                                                 f"layer{s}.{b}.bn{c}")
    return model
