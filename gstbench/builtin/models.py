"""Built-in models: small 1-D CNNs for the embedded MNIST-1D data (a VGG-style stack, a ResNet)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
from torch import nn

from gstbench.components import PrunableLayer
from gstbench.plugins import hookimpl


def _conv_bn(c_in: int, c_out: int) -> list[tuple[str, nn.Module]]:
    return [("conv", nn.Conv1d(c_in, c_out, 3, padding=1, bias=False)), ("bn", nn.BatchNorm1d(c_out)),
            ("relu", nn.ReLU(inplace=True))]


class VGG1d(nn.Module):
    """Conv-BN-ReLU blocks with max-pooling and a single linear classifier (the paper's VGG variant)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int],
                 pool_after: Sequence[int]):
        super().__init__()
        blocks: list[tuple[str, nn.Module]] = []
        c_in, length = input_shape[0], input_shape[-1]
        self.prunable_layers: dict[str, PrunableLayer] = {}
        for i, c_out in enumerate(channels, start=1):
            blocks.append((f"block{i}", nn.Sequential(OrderedDict(_conv_bn(c_in, c_out)))))
            self.prunable_layers[f"conv{i}"] = PrunableLayer(conv=f"features.block{i}.conv",
                                                             bn=f"features.block{i}.bn")
            if i in pool_after:
                blocks.append((f"pool{i}", nn.MaxPool1d(2)))
                length //= 2
            c_in = c_out
        self.features = nn.Sequential(OrderedDict(blocks))
        self.classifier = nn.Linear(c_in * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock1d(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))
        self.add = _Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.add(self.bn2(self.conv2(out)), self.shortcut(x))
        return torch.relu(out)


class _Add(nn.Module):
    """The residual sum as a module, so the activation scorer can read the post-shortcut output."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class ResNet1d(nn.Module):
    """A CIFAR-style ResNet in 1-D: 3-tap stem, stages of basic blocks, global average pool."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int], blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv1d(input_shape[0], channels[0], 3, padding=1, bias=False),
                                  nn.BatchNorm1d(channels[0]), nn.ReLU(inplace=True))
        stages, c_in = [], channels[0]
        self.prunable_layers: dict[str, PrunableLayer] = {}
        for s, c_out in enumerate(channels, start=1):
            stage = []
            for b in range(1, blocks + 1):
                stage.append(BasicBlock1d(c_in, c_out, stride=2 if (b == 1 and s > 1) else 1))
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
        return self.fc(out.mean(dim=-1))


def cnn1d(input_shape, num_classes, channels=(32, 64, 64, 64), pool_after=(2, 3)):
    """VGG-style 1-D CNN (conv-BN-ReLU x4, one linear layer); prunable layers conv1..convN."""
    return VGG1d(input_shape, num_classes, tuple(channels), tuple(pool_after))


def resnet1d(input_shape, num_classes, channels=(32, 64), blocks=1):
    """CIFAR-style 1-D ResNet; prunable layers layerS.B.conv1 and layerS.B.conv2 (post-shortcut)."""
    return ResNet1d(input_shape, num_classes, tuple(channels), int(blocks))


@hookimpl
def register_models(register):
    register("cnn1d", cnn1d)
    register("resnet1d", resnet1d)
