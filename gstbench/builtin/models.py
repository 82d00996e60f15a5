"""Built-in models: 1-D CNNs for the embedded MNIST-1D data and the papers' CIFAR networks, one code for both.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/models.py.
"""

from __future__ import annotations

from gstbench.plugins import hookimpl


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


@hookimpl
def register_models(register):
    register("cnn1d", cnn1d)
    register("resnet1d", resnet1d)
    register("vgg11-bn", vgg11_bn)
    register("resnet18-cifar", resnet18_cifar)
    register("resnet20", resnet20)
    register("resnet56", resnet56)
