"""Masked and removed filters compute the same function; removed layers keep training."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from gstbench.builtin.impl.effectors import MaskEffector, RemoveEffector
from gstbench.builtin.models import cnn1d, resnet1d
from gstbench.pruning import coupled_outputs, layer_states

from conftest import effector_applied, train_steps

SHAPE = (1, 40)


def trained_a_little(model, steps=5, seed=0):
    """A few Adam steps so BN statistics, gammas and betas are not at their init values."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        x = torch.randn(32, *SHAPE, generator=g)
        y = torch.randint(0, 10, (32,), generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def steps_on(model, opt, n=3, after_step=None):
    """A few optimizer steps on one fixed random batch; returns the batch's inputs."""
    x, y = torch.randn(32, *SHAPE), torch.randint(0, 10, (32,))
    train_steps(model, opt, x, y, n, after_step)
    return x


@pytest.mark.parametrize("make,layer_name", [
    (lambda: cnn1d(SHAPE, 10), "conv2"),
    (lambda: cnn1d(SHAPE, 10), "conv4"),  # feeds flatten -> linear
    (lambda: resnet1d(SHAPE, 10, channels=(16, 32)), "layer1.1.conv1"),
    (lambda: resnet1d(SHAPE, 10, channels=(16, 32)), "layer2.1.conv1"),  # block with a 1x1 shortcut
])
def test_mask_and_remove_compute_the_same_function(make, layer_name):
    torch.manual_seed(0)
    model, opt = trained_a_little(make())
    masked, removed = model, copy.deepcopy(model)
    indices = [0, 3, 5, 6, 11]
    effector_applied(MaskEffector(), masked, opt, layer_name, indices)
    removed_opt = torch.optim.Adam(removed.parameters())
    _, kept = effector_applied(RemoveEffector(), removed, removed_opt, layer_name, indices)
    assert kept is not None and len(kept) + len(indices) == layer_states(model, [layer_name])[layer_name].n_original
    assert sum(p.numel() for p in removed.parameters()) < sum(p.numel() for p in masked.parameters())
    x = torch.randn(64, *SHAPE)
    for mode in ("eval", "train"):
        getattr(masked, mode)()
        getattr(removed, mode)()
        with torch.no_grad():
            torch.testing.assert_close(removed(x), masked(x), atol=1e-5, rtol=1e-5)


def test_remove_leaves_the_model_in_train_mode():
    model, opt = trained_a_little(cnn1d(SHAPE, 10))
    model.train()
    effector_applied(RemoveEffector(), model, opt, "conv3", [1, 2])
    assert all(m.training for m in model.modules())


def test_removed_layers_still_train_and_keep_their_adam_state():
    torch.manual_seed(0)
    model, opt = trained_a_little(cnn1d(SHAPE, 10))
    conv = model.features.block3.conv
    old_weight = conv.weight.detach().clone()
    old_moment = opt.state[conv.weight]["exp_avg"].clone()
    next_conv = model.features.block4.conv
    old_next_moment = opt.state[next_conv.weight]["exp_avg"].clone()
    _, kept = effector_applied(RemoveEffector(), model, opt, "conv3", [0, 7, 9])
    # the optimizer now holds the new tensors, with the kept slices of the old state
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert id(conv.weight) in held and id(next_conv.weight) in held
    torch.testing.assert_close(conv.weight.detach(), old_weight[kept])
    torch.testing.assert_close(opt.state[conv.weight]["exp_avg"], old_moment[kept])
    torch.testing.assert_close(opt.state[next_conv.weight]["exp_avg"], old_next_moment[:, kept])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps_on(model, opt)
    for name in ("features.block3.conv.weight", "features.block3.bn.weight", "features.block4.conv.weight"):
        assert not torch.equal(dict(model.named_parameters())[name], before[name]), name


def test_mask_zeroes_filter_and_batchnorm_and_keeps_them_zero():
    torch.manual_seed(0)
    model, opt = trained_a_little(cnn1d(SHAPE, 10))
    effector = MaskEffector()
    layer, kept = effector_applied(effector, model, opt, "conv2", [1, 4])
    assert kept is None
    x = steps_on(model, opt, after_step=effector.after_step)
    for t in (layer.conv.weight, layer.bn.weight, layer.bn.bias):
        assert torch.count_nonzero(t[[1, 4]]) == 0
    assert torch.count_nonzero(layer.conv.weight[[0, 2, 3]]) > 0
    # the channel is gone: its post-BN output is exactly zero
    out = {}
    layer.bn.register_forward_hook(lambda m, i, o: out.setdefault("bn", o.detach().clone()))
    model.eval()
    model(x)
    assert torch.count_nonzero(out["bn"][:, [1, 4]]) == 0


def test_remove_is_refused_where_a_residual_sum_couples_channels():
    model = resnet1d(SHAPE, 10, channels=(16, 32))
    example = torch.randn(2, *SHAPE)
    spec = model.prunable_layers["layer1.1.conv2"]
    assert coupled_outputs(model, spec, example)  # stem and shortcut outputs are cut with it
    message = RemoveEffector().check_layer(model, "layer1.1.conv2", spec, example)
    assert "residual" in message and "mask" in message
    assert RemoveEffector().check_layer(model, "layer1.1.conv1", model.prunable_layers["layer1.1.conv1"],
                                        example) is None
