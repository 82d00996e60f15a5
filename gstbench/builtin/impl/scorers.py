"""What the built-in scorers build: filter norms, BatchNorm |gamma|, random and moving-average activation scores.

Registered, with their options, in gstbench/builtin/scorers.py; imported only when a cell builds one.
"""

from __future__ import annotations

import torch

from gstbench.components import LayerState, PruningContext
from gstbench.pruning import get_module, unit_weights


class NormScorer:
    def __init__(self, p: int):
        self.p = p

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        if layer.is_group:  # the norm of all the group's slices together, as for coupled channels
            return unit_weights(ctx.model, layer.spec).norm(p=self.p, dim=1).cpu()
        w = layer.conv.weight.detach()
        if layer.granularity == "weights":
            return w.abs().cpu()  # a single weight's L1 and L2 norm are both its magnitude
        return w.flatten(1).norm(p=self.p, dim=1).cpu()


class BatchNormScaleScorer:
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        if layer.bn is None or layer.bn.weight is None:
            raise ValueError(f"bn-gamma needs a BatchNorm with affine weights after layer '{layer.name}'")
        return layer.bn.weight.detach().abs().cpu()


class RandomScorer:
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        return torch.rand(layer.alive.shape, generator=ctx.generator)


class ActivationL1Scorer:
    """Moving average of each channel's mean |activation|, updated every ``every``-th training batch.

    Reads the output of the layer's BatchNorm (before the ReLU), or of the module the
    model names as the layer's ``activation`` (e.g. the post-shortcut sum of a ResNet
    block, as in the paper's ResNet18 code). Averages over batch and positions.
    """

    def __init__(self, momentum: float, every: int):
        if not 0 < momentum <= 1 or every < 1:
            raise ValueError("activation-l1 needs 0 < momentum <= 1 and every >= 1")
        self.momentum, self.every = momentum, every
        self.averages: dict[str, torch.Tensor] = {}
        self.handles: list = []
        self.batches = 0
        self.active = False

    def attach(self, ctx: PruningContext, layers: dict[str, LayerState]) -> None:
        for name, layer in layers.items():
            path = layer.spec.activation or layer.spec.bn or layer.spec.conv
            self.averages[name] = torch.zeros(layer.n_physical)
            self.handles.append(get_module(ctx.model, path).register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if self.active and module.training:
                dims = [d for d in range(output.dim()) if d != 1]
                new = output.detach().abs().mean(dim=dims).float().cpu()
                self.averages[name] = self.momentum * new + (1 - self.momentum) * self.averages[name]
        return hook

    def before_train_batch(self, step: int) -> None:
        self.batches += 1
        self.active = self.batches % self.every == 0

    def units_removed(self, layer: LayerState, kept: torch.Tensor) -> None:
        self.averages[layer.name] = self.averages[layer.name][kept]

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        return self.averages[layer.name].clone()

    def state_dict(self) -> dict:
        return {"averages": {k: v.clone() for k, v in self.averages.items()}, "batches": self.batches,
                "active": self.active}

    def load_state_dict(self, state: dict, ctx: PruningContext, layers: dict[str, LayerState]) -> None:
        self.averages = {k: v.clone() for k, v in state["averages"].items()}
        self.batches, self.active = state["batches"], state["active"]

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


# ---- pruning-at-initialization saliencies, applied at each event (docs/definitions.md#scorers-and-targets) ----

def _per_unit(saliency: torch.Tensor, layer: LayerState) -> torch.Tensor:
    """A weight-shaped saliency as scores of ``layer``'s units: per weight, or summed over each filter."""
    saliency = saliency.detach()
    return (saliency if layer.granularity == "weights" else saliency.flatten(1).sum(1)).cpu()


def _weights(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the model's convolutions and linear layers (what these methods score; not BatchNorm's)."""
    return [m.weight for m in model.modules() if isinstance(m, (torch.nn.modules.conv._ConvNd, torch.nn.Linear))]


class SnipScorer:
    """SNIP (Lee et al. 2019): connection sensitivity |w * dL/dw| on a training batch, in eval mode."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        from torch.nn import functional as F

        from gstbench.engine.evaluation import eval_mode

        x, y = ctx.training_batch(self.batch_size)
        with eval_mode(ctx.model):  # BatchNorm's running statistics stay as they were
            (grad,) = torch.autograd.grad(F.cross_entropy(ctx.model(x), y), layer.conv.weight)
        return _per_unit((layer.conv.weight * grad).abs(), layer)


class GraspScorer:
    """GraSP (Wang et al. 2020): importance theta * Hg, the negative of the paper's S(-theta) = -theta * Hg (which
    removes the largest S): g and H of the temperature-scaled loss over the conv and linear weights."""

    def __init__(self, batch_size: int, temperature: float):
        self.batch_size = batch_size
        self.temperature = temperature

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        from torch.nn import functional as F

        from gstbench.engine.evaluation import eval_mode

        x, y = ctx.training_batch(self.batch_size)
        weights = _weights(ctx.model)
        with eval_mode(ctx.model):
            loss = lambda: F.cross_entropy(ctx.model(x) / self.temperature, y)  # noqa: E731
            g = [t.detach() for t in torch.autograd.grad(loss(), weights)]
            grads = torch.autograd.grad(loss(), weights, create_graph=True)
            gHg = sum((a * b).sum() for a, b in zip(g, grads))  # g^T g with one side kept in the graph
            (hg,) = torch.autograd.grad(gHg, layer.conv.weight)  # H g, the Hessian-gradient product
        return _per_unit(layer.conv.weight * hg, layer)


class SynFlowScorer:
    """SynFlow (Tanaka et al. 2020): |theta * dR/dtheta| with R = 1^T (prod_l |W_l|) 1, the network's output summed
    on an all-ones input with every entry of the state made positive, buffers included (a copy in float64, eval
    mode). As the official code's ``linearize`` does (``abs_`` over ``state_dict()``), BatchNorm's running means
    and variances are made positive too, so an eval-mode BatchNorm stays a positive linear map."""

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        import copy

        model = copy.deepcopy(ctx.model).double().eval()
        with torch.no_grad():
            for value in model.state_dict().values():
                if value.is_floating_point():
                    value.abs_()
        weight = get_module(model, layer.spec.conv).weight
        ones = torch.ones((1, *ctx.example_input.shape[1:]), dtype=torch.float64, device=weight.device)
        (grad,) = torch.autograd.grad(model(ones).sum(), weight)
        return _per_unit((weight * grad).abs(), layer).float()


class HRankScorer:
    """HRank (Lin et al. 2020): each filter's score is the rank of its 2-D feature maps (after the layer's BatchNorm,
    or the module the model names as its activation, and a ReLU) on ``examples`` training examples, in eval mode,
    averaged over the examples as the paper does; the rank in float32 with torch's default tolerance, as the
    paper's code computes it. Images only: a 1-D signal's 1 x L map has rank 0 or 1, which cannot rank filters,
    so suites refuse it there (the "2d-maps" capability)."""

    def __init__(self, examples: int):
        if examples < 1:
            raise ValueError(f"hrank needs examples >= 1, got {examples!r}")
        self.examples = examples

    @torch.no_grad()
    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:
        from gstbench.engine.evaluation import eval_mode

        x, _ = ctx.training_batch(self.examples)
        maps: list[torch.Tensor] = []
        path = layer.spec.activation or layer.spec.bn or layer.spec.conv
        handle = get_module(ctx.model, path).register_forward_hook(lambda m, i, out: maps.append(out.detach()))
        try:
            with eval_mode(ctx.model):
                ctx.model(x)
        finally:
            handle.remove()
        return feature_map_ranks(maps[0].relu())


def feature_map_ranks(maps: torch.Tensor) -> torch.Tensor:
    """Per channel of ``maps`` (N, C, H, W) the mean over N of each H x W map's rank, in float32."""
    if maps.dim() != 4:
        raise ValueError(f"hrank ranks 2-D feature maps (N, C, H, W), got maps of shape {tuple(maps.shape)}")
    return torch.linalg.matrix_rank(maps.float()).double().mean(0).float().cpu()
