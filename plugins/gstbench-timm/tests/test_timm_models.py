"""gstbench-timm: timm:<name> models for the dataset's classes, their convs prunable through torch-pruning, a vision
transformer's heads and MLP neurons as groups."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch

from gstbench.builtin.impl.effectors import MaskEffector, RemoveEffector
from gstbench.components import PrunableGroup, PruningContext
from gstbench.errors import UnknownComponent
from gstbench.plugins import Registry
from gstbench.pruning import layer_states
from gstbench.testing.forkserver import run_gstbench

IMAGE = (3, 32, 32)


@pytest.fixture(scope="module")
def registry():
    return Registry()


def test_any_timm_name_builds_for_the_datasets_classes(registry):
    comp = registry.get("models", "timm:resnet18")
    assert comp.id == "timm:resnet18" and comp.option_defaults() == {
        "drop_rate": 0.0, "drop_path_rate": 0.0, "img_size": None, "patch_size": None, "depth": None}
    model = comp.factory(IMAGE, 7)
    assert model(torch.randn(2, *IMAGE)).shape == (2, 7)
    assert model.prunable_layers["layer4.1.conv2"].bn == "layer4.1.bn2"


def test_a_misspelt_timm_name_gets_the_closest_names(registry):
    with pytest.raises(UnknownComponent, match=r"timm has no model 'resnt18' \(did you mean: resnet18"):
        registry.get("models", "timm:resnt18")


@pytest.mark.parametrize("name,layer_name", [
    ("resnet18", "layer4.1.conv1"),
    ("resnet18", "layer3.0.conv1"),  # the block with the downsampling shortcut
    ("vgg11_bn", "features.25"),  # the last conv: feeds timm's convolutional pre-logits
])
def test_torch_pruning_removal_matches_masking_on_timm_models(registry, name, layer_name):
    import timm

    from gstbench_timm import prunable_convs

    torch.manual_seed(0)
    if name == "vgg11_bn":  # its pre-logits 4096 wide are 100M weights: the same structure 256 wide
        model = timm.create_model(name, num_classes=10, mlp_ratio=1 / 16)
        model.prunable_layers = prunable_convs(model)
    else:
        model = registry.get("models", f"timm:{name}").factory(IMAGE, 10)
    model.eval()  # BN statistics from a few batches: not at their init values
    with torch.no_grad():
        model.train()
        for _ in range(2):
            model(torch.randn(16, *IMAGE))
    masked, removed = model, copy.deepcopy(model)
    idx = torch.tensor([1, 4, 9])
    for net, effector in ((masked, MaskEffector()), (removed, RemoveEffector())):
        layer = layer_states(net, [layer_name])[layer_name]
        layer.alive[idx] = False
        ctx = PruningContext(net, torch.optim.SGD(net.parameters(), lr=0.1), torch.randn(2, *IMAGE),
                             torch.Generator().manual_seed(0))
        kept = effector.apply(layer, idx, ctx)
    conv = removed.get_submodule(layer_name)
    assert conv.out_channels == len(kept) == layer_states(model, [layer_name])[layer_name].n_original - 3
    x = torch.randn(4, *IMAGE)
    masked.eval()
    removed.eval()
    with torch.no_grad():
        torch.testing.assert_close(removed(x), masked(x), atol=1e-4, rtol=1e-4)


def test_a_timm_model_trains_and_prunes_in_a_cell(tmp_path):
    from gstbench.testing import write_cifar

    data = write_cifar(tmp_path / "data", "cifar10", n_train=64, n_test=32)
    suite = tmp_path / "timm.toml"
    suite.write_text("""
name = "timm-tiny"
seeds = 1
[base]
model = "timm:resnet18"
dataset = "cifar10"
train = { epochs = 2, batch_size = 32 }
prune = { scorer = "l2", target = "smallest", effector = "remove", start = "1ep", end = "1ep", period = "1ep", layers = { "layer4.1.conv1" = { fraction = 0.5 } } }
[scales.quick]
""")
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "timm"}
    proc = run_gstbench("run", "--suite", str(suite), "--data-dir", str(data), "--out", str(tmp_path / "out"), "--json",
                        env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(next((tmp_path / "out").glob("cells/*/result.json")).read_text())
    assert result["status"] == "ok"
    assert result["metrics"]["remaining_filters"] == {"layer4.1.conv1": 256}


VIT = {"img_size": 32, "patch_size": 8, "depth": 2}


def test_a_vision_transformers_heads_and_neurons_are_groups_that_mask_and_cut_alike(registry):
    from gstbench.testing import check_model

    factory = registry.get("models", "timm:deit_tiny_patch16_224").factory
    model = factory(IMAGE, 10, **VIT)
    groups = {n: (s.kind, len(s.slices), s.counts) for n, s in model.prunable_layers.items()
              if isinstance(s, PrunableGroup)}
    assert list(groups) == ["blocks.0.heads", "blocks.0.neurons", "blocks.1.heads", "blocks.1.neurons"]
    assert groups["blocks.0.heads"] == ("heads", 7, (("blocks.0.attn.num_heads", 1), ("blocks.0.attn.attn_dim", 64)))
    assert layer_states(model, ["blocks.1.heads"])["blocks.1.heads"].n_original == 3
    check_model(factory, options=VIT, input_shape=IMAGE)  # every group: cut == masked, the model runs after


def test_cutting_a_vision_transformers_heads_keeps_its_attention_consistent_and_exportable(registry):
    torch.manual_seed(0)
    model = registry.get("models", "timm:deit_tiny_patch16_224").factory(IMAGE, 10, **VIT).eval()
    masked = copy.deepcopy(model)
    for net, effector in ((masked, MaskEffector()), (model, RemoveEffector())):
        layer = layer_states(net, ["blocks.0.heads"])["blocks.0.heads"]
        idx = torch.tensor([1])
        layer.alive[idx] = False
        effector.apply(layer, idx, PruningContext(net, None, torch.randn(2, *IMAGE), torch.Generator()))
    attention = model.blocks[0].attn
    assert attention.num_heads == 2 and attention.attn_dim == 128 and attention.qkv.out_features == 384
    x = torch.randn(3, *IMAGE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), masked(x), atol=1e-5, rtol=1e-5)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), atol=1e-5, rtol=1e-5)
