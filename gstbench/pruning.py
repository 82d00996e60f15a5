"""Structured-pruning mechanics shared by effectors: masks, physical removal, optimizer state.

A conv layer's filters are removed through torch-pruning's DependencyGraph; a declared group's units (heads,
MLP neurons: components.PrunableGroup) by cutting the slices the model declares for them. Afterwards the optimizer
still holds the old tensors, so ``remove_filters`` rebuilds its per-parameter state
(Adam moments, SGD momentum) by slicing the kept entries: it tags every parameter with
its own flat element indices before the cut and reads them back after, which gives
exact kept indices for any layer torch-pruning touches (conv, BN, the next conv, a
flatten into a linear layer).
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from gstbench.components import LayerState, PrunableGroup, PrunableLayer

if TYPE_CHECKING:
    import torch_pruning as tp


def get_module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        raise KeyError(f"model has no module '{path}'") from None


def weight_layer(model: nn.Module, name: str) -> PrunableLayer | None:
    """A layer whose individual weights may be pruned: a declared prunable layer, or any conv/linear module."""
    declared: dict[str, PrunableLayer | PrunableGroup] = getattr(model, "prunable_layers", {})
    if name in declared and isinstance(declared[name], PrunableLayer):
        return declared[name]
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    return PrunableLayer(conv=name) if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) else None


def layer_states(model: nn.Module, names: Sequence[str], granularity: str = "filters") -> dict[str, LayerState]:
    declared: dict[str, PrunableLayer | PrunableGroup] = getattr(model, "prunable_layers", {})
    states = {}
    for name in names:
        spec = declared[name] if granularity == "filters" else weight_layer(model, name)
        if isinstance(spec, PrunableGroup):
            n = spec.units_of(lambda path: model.get_parameter(path).shape)
            owner = get_module(model, spec.slices[0].param.rpartition(".")[0])
            states[name] = LayerState(name, spec, owner, None, n, torch.arange(n), torch.ones(n, dtype=torch.bool))
            continue
        conv = get_module(model, spec.conv)
        bn = get_module(model, spec.bn) if spec.bn else None
        shape = conv.weight.shape[:1] if granularity == "filters" else conv.weight.shape
        n = shape.numel()
        states[name] = LayerState(name, spec, conv, bn, n, torch.arange(n), torch.ones(shape, dtype=torch.bool),
                                  granularity)
    return states


def unit_weight_keys(spec: PrunableLayer | PrunableGroup) -> list[str]:
    """The state-dict keys of the weights a layer's units own: a conv's weight, or every slice of a group."""
    if isinstance(spec, PrunableGroup):
        return [part.param for part in spec.slices]
    return [f"{spec.conv}.weight"]


def stored_units(spec: PrunableLayer | PrunableGroup, state: dict[str, torch.Tensor]) -> int | None:
    """How many units a layer has in a stored state dict (None where the state lacks its weight)."""
    key = unit_weight_keys(spec)[0]
    if key not in state:
        return None
    return spec.units_of(lambda path: state[path].shape) if isinstance(spec, PrunableGroup) else state[key].shape[0]


def group_slices(model: nn.Module, group: PrunableGroup, indices: torch.Tensor) -> list:
    """(parameter, dim, element indices) of the group's ``indices`` units: what masking zeroes, what removal cuts."""
    units = group.units_of(lambda path: model.get_parameter(path).shape)
    return [(model.get_parameter(part.param), part.dim, part.elements(units, indices)) for part in group.slices]


def unit_rows(group: PrunableGroup, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Tensors shaped like the group's parameters (the weights, their gradients), one per slice, as one row per
    unit: (units, weights per unit), the slices side by side."""
    rows = []
    for part, tensor in zip(group.slices, tensors, strict=True):
        moved = tensor.detach().movedim(part.dim, 0)
        run = moved.shape[0] // part.blocks
        rows.append(moved[part.block * run:(part.block + 1) * run].reshape(run // part.width, -1))
    return torch.cat(rows, dim=1)


def group_parameters(model: nn.Module, group: PrunableGroup) -> list[nn.Parameter]:
    return [model.get_parameter(part.param) for part in group.slices]


def unit_weights(model: nn.Module, group: PrunableGroup) -> torch.Tensor:
    """Every unit's weights as one row: (units, weights per unit), the group's slices side by side."""
    return unit_rows(group, group_parameters(model, group))


def _cut_group(model: nn.Module, group: PrunableGroup, removed: torch.Tensor) -> None:
    """Cut the ``removed`` units' slices: each parameter replaced by the rest of it (every slice of a fused
    parameter cut at once), the linear modules' sizes and the model's unit count told."""
    units = group.units_of(lambda path: model.get_parameter(path).shape)
    cut: dict[tuple[str, int], list[torch.Tensor]] = {}
    for part in group.slices:
        cut.setdefault((part.param, part.dim), []).append(part.elements(units, removed))
    for (name, dim), parts in cut.items():
        path, _, attr = name.rpartition(".")
        module = get_module(model, path)
        param = getattr(module, attr)
        keep = torch.ones(param.shape[dim], dtype=torch.bool)
        keep[torch.cat(parts)] = False
        setattr(module, attr, nn.Parameter(param.data.index_select(dim, keep.nonzero().flatten().to(param.device)),
                                           requires_grad=param.requires_grad))
        if isinstance(module, nn.Linear) and attr == "weight":
            module.out_features, module.in_features = module.weight.shape
    for name, factor in group.counts:
        path, _, attr = name.rpartition(".")
        setattr(get_module(model, path), attr, (units - removed.numel()) * factor)


@functools.cache
def _torch_pruning():
    """torch-pruning, imported on first use: it imports timm and torchvision, seconds a plain CLI call never needs."""
    import torch_pruning

    return torch_pruning


@functools.cache
def _zero_dims() -> dict:
    tp = _torch_pruning()
    return {tp.prune_conv_out_channels: 0, tp.prune_linear_out_channels: 0,
            tp.prune_conv_in_channels: 1, tp.prune_linear_in_channels: 1}


def dependency_graph(model: nn.Module, example_input: torch.Tensor) -> "tp.DependencyGraph":
    tp = _torch_pruning()
    was_training = model.training
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_input)
    finally:
        model.train(was_training)  # DependencyGraph switches to eval mode and never back


def removal_slices(model: nn.Module, dg: "tp.DependencyGraph | None", layer: LayerState, indices: torch.Tensor):
    """(parameter, dim, index) for every slice that physical removal of ``indices`` would cut.

    Zeroing these is the mask equivalent of removal: the filters, the next BatchNorm's
    gamma and beta, and the consumers' input slices (which only ever see zeros); a group's
    declared slices (``dg`` unused: None will do).
    """
    if layer.is_group:
        return group_slices(model, layer.spec, indices)
    tp, zero_dims = _torch_pruning(), _zero_dims()
    group = dg.get_pruning_group(layer.conv, tp.prune_conv_out_channels, idxs=sorted(indices.tolist()))
    slices = []
    for dep, idxs in group:
        module, handler = dep.target.module, dep.handler
        idx = torch.as_tensor(list(idxs), dtype=torch.long)
        if handler in zero_dims:
            slices.append((module.weight, zero_dims[handler], idx))
            if zero_dims[handler] == 0 and getattr(module, "bias", None) is not None:
                slices.append((module.bias, 0, idx))
        elif handler == tp.prune_batchnorm_out_channels:
            slices.extend((p, 0, idx) for p in (module.weight, module.bias) if p is not None)
    return slices


@torch.no_grad()
def zero_slices(slices) -> None:
    for param, dim, idx in slices:
        param.index_fill_(dim, idx.to(param.device), 0)


def coupled_outputs(model: nn.Module, layer: PrunableLayer | PrunableGroup, example_input: torch.Tensor) -> list[str]:
    """Other layers whose output channels torch-pruning would cut together with this layer's (a group: none)."""
    if isinstance(layer, PrunableGroup):
        return []
    tp = _torch_pruning()
    conv = get_module(model, layer.conv)
    group = dependency_graph(model, example_input).get_pruning_group(conv, tp.prune_conv_out_channels, idxs=[0])
    names = {m: n for n, m in model.named_modules()}
    others = []
    for dep, _ in group:
        target = dep.target.module
        if target is conv:
            continue
        if dep.handler in (tp.prune_conv_out_channels, tp.prune_linear_out_channels):
            others.append(names.get(target, repr(target)))
    return others


def remove_filters(model: nn.Module, layer: LayerState, indices: torch.Tensor,
                   optimizer: torch.optim.Optimizer | None, example_input: torch.Tensor) -> torch.Tensor:
    """Physically remove filters (and what depends on them) or a group's units; return the kept physical indices."""
    keep = torch.ones(layer.n_physical, dtype=torch.bool)
    keep[indices.cpu()] = False
    kept = keep.nonzero().flatten()
    if layer.is_group:
        _prune_keeping_optimizer(model, optimizer, lambda: _cut_group(model, layer.spec, indices.cpu()))
        return kept
    tp = _torch_pruning()
    dg = dependency_graph(model, example_input)
    group = dg.get_pruning_group(layer.conv, tp.prune_conv_out_channels, idxs=sorted(indices.tolist()))
    was_training = model.training
    try:
        _prune_keeping_optimizer(model, optimizer, group.prune)
    finally:
        model.train(was_training)
    return kept


@torch.no_grad()
def _prune_keeping_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer | None, prune) -> None:
    before = dict(model.named_parameters())
    values = {}
    for name, p in before.items():
        values[name] = p.data
        p.grad = None  # stale between steps; the next backward recomputes it
        p.data = torch.arange(p.numel(), dtype=torch.float64, device=p.device).view(p.shape)
    try:
        prune()
    finally:
        after = dict(model.named_parameters())
        kept = {}
        for name, p in after.items():
            flat_idx = p.data.flatten().long()
            kept[name] = flat_idx
            p.data = values[name].flatten()[flat_idx].view(p.shape)
    if optimizer is None:
        return
    replace = {id(before[n]): (before[n], after[n], kept[n]) for n in after if n in before}
    for group in optimizer.param_groups:
        new_params = []
        for p in group["params"]:
            old, new, flat_idx = replace.get(id(p), (p, p, None))
            new_params.append(new)
            if flat_idx is None or old not in optimizer.state:
                continue
            state = optimizer.state.pop(old)
            optimizer.state[new] = {
                k: (v.flatten()[flat_idx.to(v.device)].view(new.shape).clone()
                    if torch.is_tensor(v) and v.shape == old.shape else v)
                for k, v in state.items()
            }
        group["params"] = new_params


def dead_filters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per declared prunable layer, its dead filters (bool): conv filter all zero, and its BatchNorm gamma and
    beta zero where it has one (what the mask effector leaves); a group's units whose slices are all zero."""
    dead = {}
    for name, state in layer_states(model, list(getattr(model, "prunable_layers", {}))).items():
        if state.is_group:
            dead[name] = (unit_weights(model, state.spec).abs().sum(1) == 0).cpu()
            continue
        is_dead = state.conv.weight.detach().flatten(1).abs().sum(1) == 0
        if state.bn is not None:
            is_dead &= (state.bn.weight.detach() == 0) & (state.bn.bias.detach() == 0)
        dead[name] = is_dead.cpu()
    return dead


def remove_dead_filters(model: nn.Module, dead: dict[str, torch.Tensor], example_input: torch.Tensor) -> int:
    """Physically remove, in place, each listed layer's ``dead`` filters (bool per physical filter; a layer
    with none dead, or all, is left as it is); returns how many were removed."""
    removed = 0
    with torch.enable_grad():  # torch-pruning traces with autograd: callers under no_grad too
        for name, is_dead in dead.items():
            if 0 < int(is_dead.sum()) < is_dead.numel():
                remove_filters(model, layer_states(model, [name])[name], is_dead.nonzero().flatten(), None,
                               example_input)
                removed += int(is_dead.sum())
    return removed


def without_dead_filters(model: nn.Module, example_input: torch.Tensor) -> tuple[nn.Module, int]:
    """A copy of ``model`` with its dead filters physically removed (the deployed network), and how many."""
    slim = copy.deepcopy(model)
    return slim, remove_dead_filters(slim, dead_filters(model), example_input)
