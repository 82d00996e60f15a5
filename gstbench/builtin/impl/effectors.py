"""What the built-in effectors build: masking, physical removal, and temporary zeroing or noise.

Registered, with their options, in gstbench/builtin/effectors.py; imported only when a cell builds one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gstbench.components import LayerState, PrunableGroup, PrunableLayer, PruningContext
from gstbench.pruning import (coupled_outputs, dependency_graph, group_slices, remove_filters, removal_slices,
                              zero_slices)


class MaskEffector:
    """Zero what removal would cut, and keep it zero after every optimizer step.

    That is the filters and the next BatchNorm's gamma and beta (the paper's mask), plus
    the input slices of the layers that consume the channel: they only ever see zeros, so
    the function is the paper's, and the consumers' norm scores match physical removal.
    """

    def __init__(self):
        self.graph = None
        self.slices: dict[str, list] = {}
        self.masked: dict[str, torch.Tensor] = {}  # each layer's units whose slices are in self.slices
        self.weight_masks: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        if layer.granularity == "weights":
            weight = layer.conv.weight
            self.weight_masks[layer.name] = (weight, layer.alive.to(weight.device, weight.dtype))
            self.after_step()
            return None
        if self.graph is None and not layer.is_group:  # masking never changes shapes: one graph serves the cell
            self.graph = dependency_graph(ctx.model, ctx.example_input)
        dead = (~layer.alive).nonzero().flatten()
        masked = self.masked.get(layer.name, torch.zeros(0, dtype=torch.long))
        new = dead[~torch.isin(dead, masked)]
        if new.numel():  # the slices of the units newly dead only: torch-pruning's mapping costs per index
            self.slices[layer.name] = _merged(self.slices.get(layer.name, []),
                                              removal_slices(ctx.model, self.graph, layer, new))
            self.masked[layer.name] = dead
        zero_slices(self.slices.get(layer.name, []))
        return None

    @torch.no_grad()
    def after_step(self) -> None:
        for slices in self.slices.values():
            zero_slices(slices)
        for weight, keep in self.weight_masks.values():
            weight.mul_(keep)


def _merged(slices: list, more: list) -> list:
    """One (parameter, dim, indices) per parameter and dim: the union of both lists' indices, sorted."""
    out: dict[tuple[int, int], tuple] = {}
    for param, dim, idx in [*slices, *more]:
        key = (id(param), dim)
        out[key] = (param, dim, idx if key not in out else torch.cat([out[key][2], idx]).unique())
    return list(out.values())


class RemoveEffector:
    """Remove the units physically (filters with torch-pruning, a group's declared slices by cutting them); the
    optimizer state is sliced to match."""

    def check_layer(self, model: nn.Module, layer_name: str, layer: PrunableLayer | PrunableGroup,
                    example_input: torch.Tensor) -> str | None:
        if isinstance(layer, PrunableGroup):
            return None  # its slices are all it owns: nothing else is coupled to them
        others = coupled_outputs(model, layer, example_input)
        if others:
            return (f"removing filters of '{layer_name}' would also cut the coupled output channels of "
                    f"{', '.join(others)} (a residual sum); `mask` keeps the shortcut's contribution instead")
        return None

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        return remove_filters(ctx.model, layer, indices, ctx.optimizer, ctx.example_input)


class SoftEffector:
    """Soft filter pruning (He et al. 2018): an event zeroes the picked filters' weights (and conv bias), which
    go on training and may regrow; the engine re-picks the layer's whole share at each event. After the layer's
    last event (``harden``) its picks are masked for good, as ``mask`` does (filter, BatchNorm gamma and beta,
    consumers' inputs): the paper's final hard pruning. On a group a unit's own weights are its rows (its slices
    along dim 0: a head's query, key and value rows, a neuron's first-layer row, with their biases); the columns
    the next layer reads it through stay, so its gradient does not vanish and it can regrow, as a filter can."""

    def __init__(self):
        self.mask = MaskEffector()
        self.hardened: list[str] = []

    @torch.no_grad()
    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        if layer.is_group:
            zero_slices([part for part in group_slices(ctx.model, layer.spec, indices) if part[1] == 0])
            return None
        idx = indices.to(layer.conv.weight.device)
        layer.conv.weight[idx] = 0
        if layer.conv.bias is not None:
            layer.conv.bias[idx] = 0
        return None

    def harden(self, layer: LayerState, ctx: PruningContext) -> None:
        self.mask.apply(layer, (~layer.alive).flatten().nonzero().flatten(), ctx)
        self.hardened.append(layer.name)

    def after_step(self) -> None:
        self.mask.after_step()

    def state_dict(self) -> dict:
        return {"hardened": list(self.hardened)}

    def load_state_dict(self, state: dict, ctx: PruningContext, layers: dict[str, LayerState]) -> None:
        """The layers already hardened are masked again (the loaded alive units say which); the rest train."""
        for name in state["hardened"]:
            self.harden(layers[name], ctx)


# ---- temporary interventions: the permanence ablation of the paper ----------------------
@dataclass
class _Intervention:
    layer: LayerState
    indices: torch.Tensor
    remaining: int  # training steps still to go
    saved: dict[str, torch.Tensor] | None = None


def _unit_tensors(layer: LayerState) -> dict[str, torch.Tensor]:
    """Every per-channel tensor of a filter: conv weight and bias, BN affine and running stats."""
    tensors = {"conv.weight": layer.conv.weight, "conv.bias": layer.conv.bias}
    if layer.bn is not None:
        tensors.update({"bn.weight": layer.bn.weight, "bn.bias": layer.bn.bias,
                        "bn.running_mean": layer.bn.running_mean, "bn.running_var": layer.bn.running_var})
    return {k: t for k, t in tensors.items() if t is not None}


@torch.no_grad()
def _zero_with_bn(layer: LayerState, idx: torch.Tensor) -> None:
    for name, t in _unit_tensors(layer).items():
        if name in ("conv.weight", "conv.bias", "bn.weight", "bn.bias"):
            t[idx] = 0


@torch.no_grad()
def _reenter_at_zero(layer: LayerState, idx: torch.Tensor, saved: dict[str, torch.Tensor],
                     optimizer: torch.optim.Optimizer) -> None:
    """The filter restarts from zero weights (no optimizer memory); its BN is restored as it was.

    Restoring BN matters: with gamma = beta = 0 the channel's BN output is exactly 0, the
    ReLU's gradient at 0 is 0, and the unit could never train again. With its trained
    beta > 0 the channel passes gradient and the filter regrows; with beta <= 0 it stays
    off, as in the paper's code, which zeroed only the filter weights.
    """
    for name, t in _unit_tensors(layer).items():
        if name.startswith("conv."):
            t[idx] = 0
            for value in optimizer.state.get(t, {}).values():
                if torch.is_tensor(value) and value.shape == t.shape:
                    value[idx] = 0
        else:
            t[idx] = saved[name]


class _TemporaryEffector:
    """Acts on targeted filters for N training steps: ``_during`` before each, ``_release`` after the last."""

    def __init__(self, steps: int):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{type(self).name} needs steps >= 1 (training steps), got {steps!r}")
        self.steps = steps
        self.active: list[_Intervention] = []

    def _start(self, layer: LayerState, indices: torch.Tensor, saved: dict | None = None) -> None:
        iv = _Intervention(layer, indices.to(layer.conv.weight.device), self.steps, saved)
        self._during(iv)  # the first of N: seen by the event's t_post and training step 1
        self.active.append(iv)

    @torch.no_grad()
    def after_step(self) -> None:
        still = []
        for iv in self.active:
            iv.remaining -= 1
            if iv.remaining > 0:
                self._during(iv)
                still.append(iv)
            else:
                self._release(iv)
        self.active = still

    def state_dict(self) -> dict:
        """The interventions under way: layer, units, steps to go and what was saved (a checkpoint's part)."""
        return {"active": [{"layer": iv.layer.name, "indices": iv.indices.cpu(), "remaining": iv.remaining,
                            "saved": {k: v.cpu() for k, v in (iv.saved or {}).items()}} for iv in self.active]}

    def load_state_dict(self, state: dict, ctx: PruningContext, layers: dict[str, LayerState]) -> None:
        self._resume(ctx)
        self.active = []
        for iv in state["active"]:
            layer = layers[iv["layer"]]
            device = layer.conv.weight.device
            saved = {k: v.to(device) for k, v in iv["saved"].items()} or None
            self.active.append(_Intervention(layer, iv["indices"].to(device), iv["remaining"], saved))

    def _resume(self, ctx: PruningContext) -> None:
        """Take back what ``apply`` takes from the context."""

    def _during(self, iv: _Intervention) -> None:
        raise NotImplementedError

    def _release(self, iv: _Intervention) -> None:
        pass


class ZeroEffector(_TemporaryEffector):
    """Zero filters with the next BN's gamma and beta for N training steps, then let them return."""

    name = "zero"

    def __init__(self, steps: int, restore: bool):
        super().__init__(steps)
        self.restore = bool(restore)
        self.optimizer: torch.optim.Optimizer | None = None
        self.model: nn.Module | None = None  # a group's slices are found in it

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        self.optimizer, self.model = ctx.optimizer, ctx.model
        idx = indices.to(layer.conv.weight.device)
        if layer.is_group:
            saved = {str(i): param.index_select(dim, elements).detach().clone()
                     for i, (param, dim, elements) in enumerate(group_slices(ctx.model, layer.spec, idx))}
        else:
            saved = {k: t[idx].detach().clone() for k, t in _unit_tensors(layer).items()}
        self._start(layer, idx, saved=saved)
        return None

    def _resume(self, ctx: PruningContext) -> None:
        self.optimizer, self.model = ctx.optimizer, ctx.model

    @torch.no_grad()
    def _during(self, iv: _Intervention) -> None:
        if iv.layer.is_group:  # every slice, as mask zeroes them: the unit adds nothing
            zero_slices(group_slices(self.model, iv.layer.spec, iv.indices))
        else:
            _zero_with_bn(iv.layer, iv.indices)

    @torch.no_grad()
    def _release(self, iv: _Intervention) -> None:
        if iv.layer.is_group:
            self._release_group(iv)
        elif self.restore:
            for name, t in _unit_tensors(iv.layer).items():
                t[iv.indices] = iv.saved[name]
        else:
            _reenter_at_zero(iv.layer, iv.indices, iv.saved, self.optimizer)

    def _release_group(self, iv: _Intervention) -> None:
        """Restored as it was; or re-entering at zero: its rows (dim 0) zero with no optimizer memory, the columns the
        next layer reads it through restored (as a filter's BatchNorm is), so its gradient does not vanish."""
        for i, (param, dim, elements) in enumerate(group_slices(self.model, iv.layer.spec, iv.indices)):
            if self.restore or dim != 0:
                param.index_copy_(dim, elements, iv.saved[str(i)])
                continue
            param.index_fill_(0, elements, 0)
            for value in self.optimizer.state.get(param, {}).values():
                if torch.is_tensor(value) and value.shape == param.shape:
                    value.index_fill_(0, elements, 0)


class NoiseEffector(_TemporaryEffector):
    """For N training steps, add fresh Gaussian noise to the filters' weights before each step."""

    name = "noise"

    def __init__(self, steps: int, variance: str | float):
        super().__init__(steps)
        if variance != "untargeted" and (isinstance(variance, bool) or not isinstance(variance, (int, float))
                                         or variance <= 0):
            raise ValueError(f"noise variance must be 'untargeted' or a number > 0, got {variance!r}")
        self.variance = variance
        self.generator: torch.Generator | None = None
        self.model: nn.Module | None = None  # a group's slices are found in it

    def variance_for(self, layer: LayerState, weight: torch.Tensor | None = None, rows: torch.Tensor | None = None
                     ) -> float:
        """The variance of the layer's untargeted filters' weights (the paper), or the fixed value; on a group, of
        ``weight``'s ``rows`` (the untargeted units' rows of one of its parameters)."""
        if self.variance != "untargeted":
            return float(self.variance)
        if weight is not None:
            untargeted, units = weight.detach().index_select(0, rows), "units"
        else:
            untargeted, units = layer.conv.weight.detach()[layer.alive.to(layer.conv.weight.device)], "filters"
        if untargeted.numel() < 2:
            raise ValueError(f"noise: layer '{layer.name}' has no untargeted {units} left to take a variance from")
        return float(untargeted.var())

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext):
        self.generator, self.model = ctx.generator, ctx.model
        self._start(layer, indices)
        return None

    def _resume(self, ctx: PruningContext) -> None:
        self.generator, self.model = ctx.generator, ctx.model

    @torch.no_grad()
    def _during(self, iv: _Intervention) -> None:
        if iv.layer.is_group:
            self._during_group(iv)
            return
        w = iv.layer.conv.weight
        std = self.variance_for(iv.layer) ** 0.5
        w[iv.indices] += (torch.randn(w[iv.indices].shape, generator=self.generator) * std).to(w.device, w.dtype)

    def _during_group(self, iv: _Intervention) -> None:
        """Noise on the units' rows (dim 0: what produces each unit's activation), each parameter's own variance
        over the untargeted units' rows."""
        layer = iv.layer
        alive = layer.alive.nonzero().flatten().to(layer.conv.weight.device)
        for (param, dim, elements), (_, _, kept) in zip(group_slices(self.model, layer.spec, iv.indices),
                                                         group_slices(self.model, layer.spec, alive), strict=True):
            if dim != 0:
                continue
            std = self.variance_for(layer, param, kept) ** 0.5
            noise = torch.randn((len(elements), *param.shape[1:]), generator=self.generator) * std
            param.index_add_(0, elements, noise.to(param.device, param.dtype))
