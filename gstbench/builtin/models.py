"""Built-in models: CNNs and a transformer for the embedded MNIST-1D and the papers' CIFAR nets, one code for both.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/models.py.
"""

from __future__ import annotations

import math

from gstbench.plugins import hookimpl
from gstbench.shapes import ConvNetShape, ModelShape


def cnn1d(input_shape, num_classes, channels=(32, 64, 64, 64), pool_after=(2, 3)):
    """VGG-style 1-D CNN (conv-BN-ReLU x4, one linear layer); prunable layers conv1..convN."""
    from gstbench.builtin.impl.models import VGG

    return VGG(input_shape, num_classes, tuple(channels), tuple(pool_after))


def resnet1d(input_shape, num_classes, channels=(32, 64), blocks=1):
    """CIFAR-style 1-D ResNet; prunable layers layerS.B.conv1 and layerS.B.conv2 (post-shortcut)."""
    from gstbench.builtin.impl.models import ResNet

    return ResNet(input_shape, num_classes, tuple(channels), int(blocks))


def vgg11_bn(input_shape, num_classes):
    """VGG11-BN with a single linear classifier (Bartoldson et al.); prunable conv1..conv8, the last four 512-wide."""
    from gstbench.builtin.impl.models import VGG

    return VGG(input_shape, num_classes, (64, 128, 256, 256, 512, 512, 512, 512), (1, 2, 4, 6, 8))


def resnet18_cifar(input_shape, num_classes):
    """ResNet18 in CIFAR form (3x3 stem, no max-pool), 64-512 channels; the last four convs are layer4.*."""
    from gstbench.builtin.impl.models import ResNet

    return ResNet(input_shape, num_classes, (64, 128, 256, 512), 2)


def resnet20(input_shape, num_classes):
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages of 3 blocks, 16/32/64 channels."""
    from gstbench.builtin.impl.models import ResNet

    return ResNet(input_shape, num_classes, (16, 32, 64), 3)


def resnet56(input_shape, num_classes):
    """ResNet-56 for CIFAR (He et al. 2016): 3 stages of 9 blocks, 16/32/64 channels."""
    from gstbench.builtin.impl.models import ResNet

    return ResNet(input_shape, num_classes, (16, 32, 64), 9)


def resnet50(input_shape, num_classes):
    """ResNet-50 in ImageNet form (torchvision's: 7x7 stem, max-pool, 16 bottlenecks); prunable layerS.B.conv1 and
    layerS.B.conv2, each bottleneck's inner convolutions."""
    from gstbench.builtin.impl.models import imagenet_resnet50

    return imagenet_resnet50(input_shape, num_classes)


def transformer(input_shape, num_classes, dim=32, depth=2, heads=4, head_dim=8, hidden=64, patch=4):
    """ViT-style transformer on patch tokens (1-D signals or images); prunable blockN.heads and blockN.neurons
    (``heads`` and ``hidden``: one count, or one per block)."""
    from gstbench.builtin.impl.transformers import Transformer

    return Transformer(input_shape, num_classes, int(dim), int(depth), _counts(heads), int(head_dim), _counts(hidden),
                       int(patch))


def _counts(value):
    """An int, or a per-block list (a suite file's list arrives as a tuple)."""
    return int(value) if isinstance(value, (int, float, str)) else [int(v) for v in value]


def _net(input_shape) -> ConvNetShape:
    if len(input_shape) - 1 not in (1, 2):
        raise ValueError(f"inputs of shape {tuple(input_shape)}: need (channels, length) or (channels, height, width)")
    return ConvNetShape(input_shape[0], list(input_shape[1:]))


def vgg_shape(input_shape, num_classes, channels, pool_after) -> ModelShape:
    """impl/models.py's VGG, as shapes (gstbench/shapes.py)."""
    net = _net(input_shape)
    for i, c_out in enumerate(channels, start=1):
        net.conv(f"features.block{i}.conv", c_out, 3).batchnorm().relu()
        net.prunable(f"conv{i}", f"features.block{i}.conv")
        if i in pool_after:
            net.maxpool(2)
    if min(net.spatial) < 1:
        raise ValueError(f"inputs of shape {tuple(input_shape)} are too small for {len(pool_after)} poolings")
    return net.linear("classifier", net.numel, num_classes).model()


def resnet_shape(input_shape, num_classes, channels, blocks) -> ModelShape:
    """impl/models.py's ResNet, as shapes: each block's 1x1 projection where its stride or width changes."""
    net = _net(input_shape)
    net.conv("stem.0", channels[0], 3).batchnorm().relu()
    for s, c_out in enumerate(channels, start=1):
        for b in range(1, int(blocks) + 1):
            stride, prefix = (2 if (b == 1 and s > 1) else 1), f"layer{s}.{b - 1}"
            entry = ConvNetShape(net.channels, list(net.spatial))
            net.conv(f"{prefix}.conv1", c_out, 3, stride=stride).batchnorm()
            net.prunable(f"layer{s}.{b}.conv1", f"{prefix}.conv1")
            net.conv(f"{prefix}.conv2", c_out, 3).batchnorm()
            net.prunable(f"layer{s}.{b}.conv2", f"{prefix}.conv2")
            if stride != 1 or entry.channels != c_out:
                entry.conv(f"{prefix}.shortcut.0", c_out, 1, stride=stride, padding=0).batchnorm()
                net.macs += entry.macs
                net.weights.update(entry.weights)
    return net.linear("fc", net.channels, num_classes).model()


def transformer_shape(input_shape, num_classes, dim=32, depth=2, heads=4, head_dim=8, hidden=64,
                      patch=4) -> ModelShape:
    """impl/transformers.py's Transformer, as shapes, counted as torch-pruning's counter counts it: a linear
    layer's multiply-accumulates per token plus its bias once, LayerNorm as two operations per input, GELU as
    one; the attention's own matrix products are functional calls, uncounted there and here."""
    if len(input_shape) - 1 not in (1, 2) or any(s % int(patch) for s in input_shape[1:]):
        raise ValueError(f"inputs of shape {tuple(input_shape)}: need (channels, length) or (channels, height, "
                         f"width) that split into patches of {patch}")
    depth, dim, patch = int(depth), int(dim), int(patch)
    heads = [int(heads)] * depth if isinstance(heads, (int, float, str)) else [int(h) for h in heads]
    hidden = [int(hidden)] * depth if isinstance(hidden, (int, float, str)) else [int(n) for n in hidden]
    if len(heads) != depth or len(hidden) != depth:
        raise ValueError(f"heads = {heads} and hidden = {hidden}: give one count, or one per block ({depth})")
    tokens = math.prod(s // patch for s in input_shape[1:])
    kernel = input_shape[0] * patch ** (len(input_shape) - 1)
    weights = {"patches": dim * kernel}
    macs = tokens * dim * kernel + tokens * dim
    units, groups = {}, {}

    def linear(path: str, features_in: int, features_out: int, rows: int) -> float:
        weights[path] = features_in * features_out
        return rows * features_in * features_out + features_out

    for b in range(depth):
        prefix, width = f"blocks.{b}", heads[b] * int(head_dim)
        macs += 4 * tokens * dim  # the two LayerNorms
        macs += sum(linear(f"{prefix}.attn.{p}", dim, width, tokens) for p in "qkv")
        macs += linear(f"{prefix}.attn.out", width, dim, tokens)
        macs += linear(f"{prefix}.mlp.fc1", dim, hidden[b], tokens) + linear(f"{prefix}.mlp.fc2", hidden[b], dim, tokens)
        macs += tokens * hidden[b]  # GELU
        units[f"block{b + 1}.heads"], units[f"block{b + 1}.neurons"] = heads[b], hidden[b]
        groups[f"block{b + 1}.heads"], groups[f"block{b + 1}.neurons"] = "heads", "neurons"
    macs += 2 * tokens * dim + linear("head", dim, num_classes, 1)
    return ModelShape(units, weights, float(macs), groups)


transformer.shapes = transformer_shape
cnn1d.shapes = lambda input_shape, num_classes, channels=(32, 64, 64, 64), pool_after=(2, 3): vgg_shape(
    input_shape, num_classes, tuple(channels), tuple(pool_after))
resnet1d.shapes = lambda input_shape, num_classes, channels=(32, 64), blocks=1: resnet_shape(
    input_shape, num_classes, tuple(channels), int(blocks))
vgg11_bn.shapes = lambda input_shape, num_classes: vgg_shape(
    input_shape, num_classes, (64, 128, 256, 256, 512, 512, 512, 512), (1, 2, 4, 6, 8))
resnet18_cifar.shapes = lambda input_shape, num_classes: resnet_shape(input_shape, num_classes, (64, 128, 256, 512), 2)
resnet20.shapes = lambda input_shape, num_classes: resnet_shape(input_shape, num_classes, (16, 32, 64), 3)
resnet56.shapes = lambda input_shape, num_classes: resnet_shape(input_shape, num_classes, (16, 32, 64), 9)


@hookimpl
def register_models(register):
    register("cnn1d", cnn1d)
    register("resnet1d", resnet1d)
    register("vgg11-bn", vgg11_bn)
    register("resnet18-cifar", resnet18_cifar)
    register("resnet20", resnet20)
    register("resnet56", resnet56)
    register("resnet50", resnet50)
    register("transformer", transformer)
