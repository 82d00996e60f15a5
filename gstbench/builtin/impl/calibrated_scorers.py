"""What the single-weight scorers of post-training pruning build: magnitude and Wanda, each with its comparison group.

Registered, with their options, in gstbench/builtin/scorers.py; imported only when a cell builds one. Wanda reads
the inputs of linear layers on calibration examples; on a group (heads, neurons) it sums its per-weight score over
each unit's weights (the structured variant).
"""

from __future__ import annotations

import torch
from torch import nn

from gstbench.components import LayerState, PruningContext
from gstbench.pruning import get_module, unit_rows, unit_weights

COMPARE = ("layer", "output", "2:4")


def compared(scores: torch.Tensor, compare: str) -> torch.Tensor:
    """Scores for a ranking over the whole layer that picks as a ranking within each output row would.

    "layer": the scores as they are. "output": each weight's rank within its row (0 the smallest), so that the
    layer's smallest ranks are every row's smallest weights: a target that prunes a share of the layer takes
    that share from every row (rows differing by one where the count does not divide; ties between rows broken
    by the cell's seeded permutation, as every tie is). "2:4": each weight's rank within its group of 4
    consecutive inputs of a row, so that half of the layer taken smallest-first is the 2 smallest of every 4:
    NVIDIA's semi-structured pattern (Mishra et al. 2021), at a fraction of 0.5."""
    if compare == "layer":
        return scores
    if compare == "2:4":
        if scores.dim() < 2 or scores[0].numel() % 4:
            raise ValueError(f"compare = \"2:4\" ranks groups of 4 consecutive inputs, and a weight of shape "
                             f"{tuple(scores.shape)} has {scores[0].numel()} inputs a row, not a multiple of 4")
        return compared(scores.reshape(-1, 4), "output").reshape(scores.shape)
    rows = scores.reshape(scores.shape[0], -1)
    ranks = torch.empty_like(rows)
    ranks.scatter_(1, rows.argsort(dim=1, stable=True), torch.arange(rows.shape[1], dtype=rows.dtype).expand_as(rows))
    return ranks.reshape(scores.shape)


def _check_compare(name: str, compare: str) -> str:
    if compare not in COMPARE:
        raise ValueError(f"{name}'s compare must be one of {', '.join(COMPARE)}, got {compare!r}")
    return compare


class MagnitudeScorer:
    """|w| of each weight, compared within the layer or within each output row; a filter, head or neuron: the
    mean |w| of its weights, which compares across layers as |w| does (a norm grows with the unit's size), so a
    global ranking of units by it is global magnitude pruning's structured form."""

    def __init__(self, compare: str):
        self.compare = _check_compare("magnitude", compare)

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        if layer.granularity == "weights":
            return compared(layer.conv.weight.detach().abs().float(), self.compare).cpu()
        if self.compare != "layer":
            raise ValueError(f"magnitude compares a filter, head or neuron with the others of its ranking "
                             f"(compare = \"layer\"); compare = {self.compare!r} ranks single weights, and layer "
                             f"'{layer.name}' is pruned by units")
        rows = unit_weights(ctx.model, layer.spec) if layer.is_group else layer.conv.weight.detach().flatten(1)
        return rows.abs().float().mean(dim=1).cpu()


def input_rows(model: nn.Module, modules: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per linear module: every row of its inputs on ``x`` (examples x tokens, features), in float64, eval mode."""
    from gstbench.engine.evaluation import eval_mode

    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for path in modules:
        module = get_module(model, path)
        if not isinstance(module, nn.Linear):
            raise ValueError(f"'{path}' is a {type(module).__name__}: these methods read the inputs of linear "
                             f"layers, as the papers prune ViTs, ConvNeXt and LLMs")

        def hook(m, inputs, out, path=path):
            seen.setdefault(path, []).append(inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double())
        handles.append(module.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {path: torch.cat(rows) for path, rows in seen.items()}


def input_norms(model: nn.Module, modules: list[str], x: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
    """Per linear module: the L2 norm of each input feature over every row it sees, and the number of rows."""
    return {path: (rows.norm(dim=0).float(), rows.shape[0]) for path, rows in input_rows(model, modules, x).items()}


class WandaScorer:
    """Wanda (Sun et al. 2024): S_ij = |W_ij| * ||X_j||_2, X the layer's inputs over ``examples`` calibration
    examples (every token a row), compared per output row (default) or per layer; no weight update."""

    def __init__(self, examples: int, compare: str):
        if examples < 1:
            raise ValueError(f"wanda needs examples >= 1, got {examples!r}")
        self.examples, self.compare = examples, _check_compare("wanda", compare)

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        x, _ = ctx.training_batch(self.examples)
        if layer.is_group:
            return self._group(layer, ctx, x)
        if layer.granularity != "weights":
            raise ValueError(f"wanda scores single weights, or a group's units; layer '{layer.name}' is pruned by "
                             f"filters")
        path = layer.spec.conv
        norms, _ = input_norms(ctx.model, [path], x)[path]
        return compared(layer.conv.weight.detach().abs().float() * norms.to(layer.conv.weight.device), self.compare).cpu()

    def _group(self, layer: LayerState, ctx: PruningContext, x: torch.Tensor) -> torch.Tensor:
        """The structured variant: each weight's |W_ij| * ||X_j|| summed over the unit's weights; a bias counts as
        a weight on a constant input of 1, whose norm is the square root of the rows seen."""
        parts = [part.param.rpartition(".") for part in layer.spec.slices]
        seen = input_norms(ctx.model, sorted({path for path, _, _ in parts}), x)
        saliency = []
        for (path, _, attr), part in zip(parts, layer.spec.slices):
            value = ctx.model.get_parameter(part.param).detach().abs().float()
            norms, rows = seen[path]
            saliency.append(value * norms.to(value.device) if attr == "weight" else value * rows ** 0.5)
        return unit_rows(layer.spec, saliency).sum(1).cpu()
