"""gstbench-timm: every timm model as a gstbench model, ``timm:<name>``, built for the dataset's classes.

The model is created untrained (``pretrained=False``: runs stay offline and start from a
seeded initialization) with ``num_classes`` and ``in_chans`` taken from the dataset. Its
prunable layers are its convolutions, named by module path (``layer4.1.conv2``,
``features.0``), each with the BatchNorm that directly follows it when there is one.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import gstbench
from gstbench.components import PrunableLayer
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


def _create(model_name: str, input_shape, num_classes, drop_rate: float = 0.0, drop_path_rate: float = 0.0):
    import timm

    if len(input_shape) != 3:
        raise ValueError(f"timm:{model_name} takes images (channels, height, width); the dataset gives "
                         f"inputs of shape {tuple(input_shape)}")
    kwargs = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
    model = timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=input_shape[0],
                              drop_rate=drop_rate, **kwargs)
    model.prunable_layers = prunable_convs(model)
    return model


def resolve(name: str):
    """The factory of timm model ``name``."""
    import timm

    if not timm.is_model(name):
        raise UnknownComponent(f"timm has no model '{name}'{closest(name, timm.list_models())}; "
                               f"`python -c \"import timm; print(timm.list_models())\"` lists them")
    factory = functools.partial(_create, name)
    factory.__doc__ = f"timm's {name}, untrained, for the dataset's classes; prunable layers: its convs"
    return factory


@gstbench.hookimpl
def register_models(register):
    register("*", resolve, description="any timm model as timm:<name> (e.g. timm:resnet18, timm:vgg11_bn)")
