"""The papers' CIFAR models: shapes, declared prunable layers, and mask == remove on 2-D convolutions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from gstbench.builtin.impl.effectors import MaskEffector, RemoveEffector
from gstbench.builtin.models import resnet18_cifar, resnet20, resnet56, vgg11_bn
from gstbench.components import PruningContext
from gstbench.pruning import layer_states

IMAGE = (3, 32, 32)


def test_vgg11_bn_is_eight_conv_bn_blocks_and_one_linear_layer():
    model = vgg11_bn(IMAGE, 10)
    widths = [layer_states(model, [n])[n].n_original for n in model.prunable_layers]
    assert list(model.prunable_layers) == [f"conv{i}" for i in range(1, 9)]
    assert widths == [64, 128, 256, 256, 512, 512, 512, 512]  # the last four: the paper's pruned layers
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 1 and linears[0].in_features == 512  # 32 / 2**5 = 1 pixel left
    assert model(torch.randn(2, *IMAGE)).shape == (2, 10)


@pytest.mark.parametrize("make,convs,params", [
    (resnet20, 19, 272_474),  # stem + 18 block convs (+ 2 projection shortcuts, not prunable layers)
    (resnet56, 55, 855_770),
    (resnet18_cifar, 17, 11_173_962),
])
def test_cifar_resnets_have_a_3x3_stem_no_max_pool_and_their_depth(make, convs, params):
    model = make(IMAGE, 10)
    assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert len(model.prunable_layers) + 1 == convs
    assert sum(p.numel() for p in model.parameters()) == params
    assert model(torch.randn(2, *IMAGE)).shape == (2, 10)


def test_resnet18_declares_the_last_four_convs_as_layer4():
    model = resnet18_cifar(IMAGE, 10)
    last4 = list(model.prunable_layers)[-4:]
    assert last4 == ["layer4.1.conv1", "layer4.1.conv2", "layer4.2.conv1", "layer4.2.conv2"]
    assert all(layer_states(model, [n])[n].n_original == 512 for n in last4)


def _trained_a_little(model):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        loss = F.cross_entropy(model(torch.randn(16, *IMAGE, generator=g)), torch.randint(0, 10, (16,), generator=g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("make,layer_name", [
    (vgg11_bn, "conv8"),  # feeds the flatten -> linear classifier
    (vgg11_bn, "conv5"),
    (resnet20, "layer2.1.conv1"),  # inside the block with the projection shortcut
    (resnet20, "layer3.3.conv1"),
])
def test_mask_and_remove_compute_the_same_function_on_images(make, layer_name):
    torch.manual_seed(0)
    masked = _trained_a_little(make(IMAGE, 10))
    removed = copy.deepcopy(masked)
    idx = torch.tensor([0, 2, 3, 7])
    for model, effector in ((masked, MaskEffector()), (removed, RemoveEffector())):
        layer = layer_states(model, [layer_name])[layer_name]
        layer.alive[idx] = False
        ctx = PruningContext(model, torch.optim.Adam(model.parameters()), torch.randn(2, *IMAGE),
                             torch.Generator().manual_seed(0))
        effector.apply(layer, idx, ctx)
    x = torch.randn(8, *IMAGE)
    for mode in ("eval", "train"):
        masked.train(mode == "train")
        removed.train(mode == "train")
        with torch.no_grad():
            torch.testing.assert_close(removed(x), masked(x), atol=1e-4, rtol=1e-4)


def test_resnet50_is_torchvisions_with_each_bottlenecks_inner_convs_prunable_and_mask_equals_remove():
    from gstbench.builtin.models import resnet50

    torch.manual_seed(0)
    model = resnet50((3, 64, 64), 10)
    assert len(model.prunable_layers) == 32 and list(model.prunable_layers)[:2] == ["layer1.1.conv1",
                                                                                   "layer1.1.conv2"]
    assert sum(p.numel() for p in model.parameters()) == 23_528_522  # torchvision's 25.6M less the 1000-way head
    masked = model.eval()
    removed = copy.deepcopy(masked)
    idx = torch.tensor([0, 5, 9])
    for net, effector in ((masked, MaskEffector()), (removed, RemoveEffector())):
        layer = layer_states(net, ["layer3.2.conv2"])["layer3.2.conv2"]
        layer.alive[idx] = False
        effector.apply(layer, idx, PruningContext(net, torch.optim.SGD(net.parameters(), lr=0.1),
                                                  torch.randn(2, 3, 64, 64), torch.Generator().manual_seed(0)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(removed(x), masked(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="3-channel images"):
        resnet50((1, 40), 10)
