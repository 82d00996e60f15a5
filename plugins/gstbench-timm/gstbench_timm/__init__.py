"""gstbench-timm: every timm model as a gstbench model, ``timm:<name>``, built for the dataset's classes.

The model is created untrained (``pretrained=False``: runs stay offline and start from a
seeded initialization) with ``num_classes`` and ``in_chans`` taken from the dataset. Its
prunable layers are its convolutions, named by module path (``layer4.1.conv2``,
``features.0``), each with the BatchNorm that directly follows it when there is one; and in
vision transformers (ViT, DeiT) each block's attention heads and MLP neurons as groups
(``blocks.0.heads``, ``blocks.0.neurons``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import gstbench
from gstbench.components import GroupSlice, PrunableGroup, PrunableLayer
from gstbench.errors import UnknownComponent, closest

if TYPE_CHECKING:  # torch loads when a model is built, not when the plugin registers
    from torch import nn

__version__ = "0.1.0"


def prunable_convs(model: nn.Module) -> dict[str, PrunableLayer]:
    """Every Conv2d by module path, paired with the BatchNorm2d registered right after it on its output."""
    from torch import nn

    layers: dict[str, PrunableLayer] = {}
    last_conv: tuple[str, nn.Conv2d] | None = None
    for path, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and module.groups == 1:
            layers[path] = PrunableLayer(conv=path)
            last_conv = (path, module)
        elif isinstance(module, nn.BatchNorm2d) and last_conv is not None:
            conv_path, conv = last_conv
            if module.num_features == conv.out_channels and layers[conv_path].bn is None:
                layers[conv_path] = PrunableLayer(conv=conv_path, bn=path)
            last_conv = None
    return layers


def prunable_groups(model: nn.Module) -> dict[str, PrunableGroup]:
    """Each transformer block's heads (timm's ``Attention``: a fused qkv projection, ``num_heads`` and
    ``attn_dim`` kept as attributes) and MLP neurons (timm's ``Mlp`` with GELU or ReLU), where zeroing a unit's
    slices silences it exactly: attention without an output gate or a norm across heads, an MLP without a norm
    between its layers."""
    from timm.layers import Mlp
    from timm.models.vision_transformer import Attention
    from torch import nn

    groups: dict[str, PrunableGroup] = {}
    for path, module in model.named_modules():
        block = path.rpartition(".")[0] if "." in path else ""
        name = f"{block}." if block else ""
        if isinstance(module, Attention) and module.gate is None and isinstance(module.norm, nn.Identity):
            d = module.head_dim
            fused = [GroupSlice(f"{path}.qkv.{t}", 0, d, block=b, blocks=3) for t in ("weight", "bias")
                     if getattr(module.qkv, t) is not None for b in range(3)]
            groups[f"{name}heads"] = PrunableGroup(
                "heads", (GroupSlice(f"{path}.proj.weight", 1, d), *fused), activation=f"{path}.norm",
                counts=((f"{path}.num_heads", 1), (f"{path}.attn_dim", d)))
        elif (isinstance(module, Mlp) and isinstance(module.norm, nn.Identity)
              and isinstance(module.act, (nn.GELU, nn.ReLU))):
            parts = [GroupSlice(f"{path}.fc1.weight", 0)]
            if module.fc1.bias is not None:
                parts.append(GroupSlice(f"{path}.fc1.bias", 0))
            groups[f"{name}neurons"] = PrunableGroup("neurons", (*parts, GroupSlice(f"{path}.fc2.weight", 1)),
                                                     activation=f"{path}.act")
    return groups


def _create(model_name: str, input_shape, num_classes, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
            img_size: int | None = None, patch_size: int | None = None, depth: int | None = None):
    import timm

    if len(input_shape) != 3:
        raise ValueError(f"timm:{model_name} takes images (channels, height, width); the dataset gives "
                         f"inputs of shape {tuple(input_shape)}")
    # a vision transformer's image and patch size (CIFAR's 32 x 32 in patches of 4) and its number of blocks
    sizes = {k: int(v) for k, v in (("img_size", img_size), ("patch_size", patch_size), ("depth", depth))
             if v is not None}
    kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0],
                              drop_rate=drop_rate, **sizes, **kwargs)
    model.prunable_layers = {**prunable_convs(model), **prunable_groups(model)}
    return model


def resolve(name: str):
    """The factory of timm model ``name``."""
    import timm

    if not timm.is_model(name):
        raise UnknownComponent(f"timm has no model '{name}'{closest(name, timm.list_models())}; "
                               f"`python -c \"import timm; print(timm.list_models())\"` lists them")
    factory = functools.partial(_create, name)
    factory.__doc__ = (f"timm's {name}, untrained, for the dataset's classes; prunable layers: its convs, and a "
                       f"transformer's heads and MLP neurons")
    return factory


@gstbench.hookimpl
def register_models(register):
    register("*", resolve, description="any timm model as timm:<name> (e.g. timm:resnet18, timm:deit_tiny_patch16_224)")
