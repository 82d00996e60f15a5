"""Contract checks of the pruning components: scorers, targets, effectors.

PYTEST_DONT_REWRITE (the kit raises its own errors)
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
from torch import nn

from gstbench.components import TensorData, scores_fault
from gstbench.testing.bench import (
    _Bench, _differences, _fail, _hooks, _masked, _outputs, _resolve, _state, make_tiny_data,
    make_tiny_images, make_tiny_model)


def check_scorer(scorer: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None,
                 model: nn.Module | None = None, data: TensorData | None = None) -> dict[str, torch.Tensor]:
    """Run a scorer as the engine does and check the rules; returns the first scores per layer.

    Rules: ``score`` returns a finite float tensor of the layer's ``alive`` shape, also after
    masking and after physical removal (``units_removed`` keeps per-unit state in step);
    scoring leaves the model's parameters, buffers and mode as they were and draws nothing
    from torch's global RNG; two runs from the same seed give equal scores; ``detach``
    removes every hook ``attach`` added. With the ``weights`` capability the same holds
    for single weights. A scorer with the ``2d-maps`` capability runs on the same data as
    5 x 8 images.
    """
    from gstbench.components import MAPS_2D, WEIGHTS

    label, build, caps = _resolve("scorers", scorer, options, capabilities)
    data = data or (make_tiny_images() if MAPS_2D in caps else make_tiny_data())
    model = model if model is not None else make_tiny_model(data)
    first: dict[str, torch.Tensor] = {}
    for granularity in ("filters", "weights") if WEIGHTS in caps else ("filters",):
        runs = [_scorer_run(label, build, model, data, granularity) for _ in range(2)]
        for (name, when, a), (_, _, b) in zip(*runs):
            if not torch.equal(a, b):
                raise _fail(label, f"two runs from the same seed gave different scores ({name} {when}, "
                            f"{granularity})", "draw randomness from ctx.generator or a generator seeded from the "
                            "context, never from torch's global RNG")
        first.update({name: s for name, when, s in runs[0] if when == "after training"})
    return first


def _scorer_run(label: str, build: Callable, model: nn.Module, data: TensorData,
                granularity: str) -> list[tuple[str, str, torch.Tensor]]:
    bench = _Bench(model, data, granularity)
    hooks = _hooks(bench.model)
    obj = build()
    if not callable(getattr(obj, "score", None)):
        raise _fail(label, f"its factory returned {type(obj).__name__}, which has no score(layer, ctx) method")
    if hasattr(obj, "attach"):
        obj.attach(bench.ctx, bench.layers)
    before_batch = getattr(obj, "before_train_batch", None)
    scored: list[tuple[str, str, torch.Tensor]] = []

    def score_all(when: str) -> None:
        for name, layer in bench.layers.items():
            state, training, rng = _state(bench.model), bench.model.training, torch.get_rng_state()
            s = obj.score(layer, bench.ctx)
            what = f"{name} {when}"
            if not isinstance(s, torch.Tensor):
                raise _fail(label, f"score() returned {type(s).__name__} for {what}", "return a torch.Tensor")
            if tuple(s.shape) != tuple(layer.alive.shape):
                raise _fail(label, f"score() returned shape {tuple(s.shape)} for {what}, whose alive units have "
                            f"shape {tuple(layer.alive.shape)}", "score every physical unit, alive or not")
            if fault := scores_fault(s):
                raise _fail(label, f"score() returned {fault} scores for {what}",
                            "return finite float scores (dead units included)")
            changed = _differences(state, _state(bench.model))
            if changed:
                raise _fail(label, f"scoring {what} changed the model ({', '.join(changed[:3])})",
                            "work on copies, or restore what you change (BatchNorm running stats included)")
            if bench.model.training != training:
                raise _fail(label, f"scoring {what} left the model in {'train' if bench.model.training else 'eval'}"
                            " mode", "restore the mode you found (torch-pruning's DependencyGraph switches to eval)")
            if not torch.equal(rng, torch.get_rng_state()):
                raise _fail(label, f"scoring {what} drew from torch's global RNG",
                            "draw from ctx.generator (seeded per cell)")
            scored.append((name, when, s.detach().cpu().float().clone()))

    bench.train(3, before_batch)
    score_all("after training")
    first = next(iter(bench.layers))
    if granularity == "filters":
        bench.mask(first, bench.chosen(first))
        bench.train(2, before_batch)
        score_all("after masking")
        removable = bench.removable()
        if removable:
            bench.remove(removable[-1], bench.chosen(removable[-1]), obj)
            bench.train(2, before_batch)
            score_all("after removal")
    else:
        bench.mask(first, bench.chosen(first))
        score_all("after masking")
    if hasattr(obj, "detach"):
        obj.detach()
    if _hooks(bench.model) != hooks:
        raise _fail(label, "hooks added by attach() are still on the model after detach()",
                    "keep the handles and remove them in detach()")
    return scored


def check_target(target: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None) -> None:
    """``select`` returns ``count`` distinct alive indices, the same for the same generator seed, without global RNG."""
    label, build, _ = _resolve("targets", target, options, capabilities)
    scores = torch.tensor([0.5, 0.1, 0.1, 0.9, 0.3, 0.7, 0.2, 0.2, 0.8, 0.4])
    alive = torch.tensor([True, True, False, True, True, True, False, True, True, True])
    for count in (0, 1, 3, int(alive.sum())):
        picks = []
        for _ in range(2):
            rng = torch.get_rng_state()
            chosen = build().select(scores.clone(), alive.clone(), count, torch.Generator().manual_seed(7))
            if not torch.equal(rng, torch.get_rng_state()):
                raise _fail(label, "select() drew from torch's global RNG", "draw from the generator it is given")
            if not isinstance(chosen, torch.Tensor) or chosen.dtype != torch.long or chosen.dim() != 1:
                raise _fail(label, f"select() returned {chosen!r}", "return a 1-D long tensor of indices")
            if chosen.numel() != count or chosen.unique().numel() != count or not bool(alive[chosen].all()):
                raise _fail(label, f"select(count={count}) returned {chosen.tolist()}",
                            f"pick exactly {count} distinct alive indices")
            picks.append(chosen)
        if not torch.equal(*picks):
            raise _fail(label, "two calls with the same generator seed picked different units")


def check_effector(effector: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None,
                   model: nn.Module | None = None, data: TensorData | None = None) -> None:
    """Apply an effector as the engine does and check the rules.

    Rules: ``apply`` changes only the targeted units (their filter, its BatchNorm channel
    and the inputs that read it; single weights with ``weights``) and changes something;
    a ``removes-units`` effector returns the kept indices, computes what masking the same
    units computes, leaves the optimizer holding the model's new tensors and the layer
    still training; a permanent effector keeps the units pruned through training
    (``after_step``); two runs from the same seed end equal.
    """
    from gstbench.components import WEIGHTS

    label, build, caps = _resolve("effectors", effector, options, capabilities)
    data = data or make_tiny_data()
    model = model if model is not None else make_tiny_model(data)
    for granularity in ("filters", "weights") if WEIGHTS in caps else ("filters",):
        a, b = (_effector_run(label, build, caps, model, data, granularity) for _ in range(2))
        if _differences(a, b):
            raise _fail(label, f"two runs from the same seed ended with different weights ({granularity})",
                        "draw randomness from ctx.generator, never from torch's global RNG")


def _allowed_changes(bench: _Bench, name: str, chosen: torch.Tensor) -> dict[str, torch.Tensor]:
    """state_dict key -> where an effector on ``chosen`` units of layer ``name`` may change values."""
    from gstbench.pruning import dependency_graph, removal_slices

    state = bench.model.state_dict(keep_vars=True)
    allowed = {k: torch.zeros(v.shape, dtype=torch.bool) for k, v in state.items()}
    key_of = {id(v): k for k, v in state.items()}
    layer = bench.layers[name]
    if bench.granularity == "weights":
        allowed[key_of[id(layer.conv.weight)]].view(-1)[chosen] = True
        return allowed
    graph = None if layer.is_group else dependency_graph(bench.model, bench.ctx.example_input)
    for param, dim, idx in removal_slices(bench.model, graph, layer, chosen):
        allowed[key_of[id(param)]].index_fill_(dim, idx, True)
    if layer.is_group:
        return allowed
    owners = [layer.conv] + ([layer.bn] if layer.bn is not None else [])
    for module in owners:
        for attr in ("bias", "running_mean", "running_var"):
            t = getattr(module, attr, None)
            if isinstance(t, torch.Tensor) and id(t) in key_of:
                allowed[key_of[id(t)]][chosen] = True
    return allowed


def _effector_run(label: str, build: Callable, caps: tuple[str, ...], model: nn.Module, data: TensorData,
                  granularity: str) -> dict[str, torch.Tensor]:
    from gstbench.components import REMOVES_UNITS, SOFT, TEMPORARY

    bench = _Bench(model, data, granularity)
    bench.train(2)
    obj = build()
    if not callable(getattr(obj, "apply", None)):
        raise _fail(label, f"its factory returned {type(obj).__name__}, which has no apply(layer, indices, ctx)")
    name = _usable_layer(label, obj, bench)
    layer = bench.layers[name]
    chosen = bench.chosen(name)
    reference = _masked(bench.model, name, chosen, bench.ctx.example_input) if REMOVES_UNITS in caps else None
    before = _state(bench.model)
    allowed = None if REMOVES_UNITS in caps else _allowed_changes(bench, name, chosen)
    layer.alive.view(-1)[chosen] = False
    kept = obj.apply(layer, chosen, bench.ctx)
    after_step = getattr(obj, "after_step", None)
    if REMOVES_UNITS in caps:
        _check_removal(label, bench, name, chosen, kept, before, reference)
    else:
        if kept is not None:
            raise _fail(label, "apply() returned kept indices without declaring the removes-units capability",
                        "return None, or register it with capabilities=['removes-units']")
        after = _state(bench.model)
        touched = False
        for key in _differences(before, after):
            if before[key].shape != after[key].shape:
                raise _fail(label, f"apply() changed the shape of {key}",
                            "declare removes-units and return the kept indices")
            changed = before[key] != after[key]
            outside = changed & ~allowed[key]
            if bool(outside.any()):
                raise _fail(label, f"apply() changed {int(outside.sum())} values of {key} outside the targeted "
                            f"units {chosen.tolist()} of layer '{name}'", "touch only the units it is given")
            touched = True
        if not touched:
            raise _fail(label, f"apply() changed nothing in the targeted units of layer '{name}'",
                        "act in apply(): the engine measures the accuracy right after it (t_post)")
    bench.train(3, after_step=after_step)
    if SOFT in caps:  # soft units train on until the layer's last event; then ``harden`` keeps them pruned
        if not callable(getattr(obj, "harden", None)):
            raise _fail(label, "declares the soft capability without harden(layer, ctx)",
                        "add harden(): the engine calls it after the layer's last event")
        obj.harden(layer, bench.ctx)
        bench.train(3, after_step=getattr(obj, "after_step", None))
        _check_still_pruned(label, bench, name, chosen)
    elif TEMPORARY not in caps and REMOVES_UNITS not in caps:
        _check_still_pruned(label, bench, name, chosen)
    return _state(bench.model)


def _usable_layer(label: str, obj: Any, bench: _Bench) -> str:
    """The first prunable layer the effector accepts (``check_layer`` may refuse one, e.g. a residual sum)."""
    check = getattr(obj, "check_layer", None)
    reasons = []
    for name, layer in bench.layers.items():
        reason = check(bench.model, name, layer.spec, bench.ctx.example_input) if check else None
        if reason is None:
            return name
        reasons.append(reason)
    raise _fail(label, f"check_layer refused every prunable layer of the test model ({reasons[0]})",
                "pass model= with a layer it can act on")


def _check_removal(label: str, bench: _Bench, name: str, chosen: torch.Tensor, kept: Any,
                   before: dict[str, torch.Tensor], reference: nn.Module) -> None:
    """``reference``: the model before ``apply``, with the built-in mask on the same units."""
    layer = bench.layers[name]
    expected = (~torch.isin(torch.arange(layer.n_physical), chosen)).nonzero().flatten()
    if not isinstance(kept, torch.Tensor) or not torch.equal(kept.cpu().long(), expected):
        raise _fail(label, f"apply() returned {kept!r} as the kept units of layer '{name}', expected "
                    f"{expected.tolist()}", "return the kept physical indices, in order")
    if layer.conv.weight.shape[0] != len(expected):
        raise _fail(label, f"layer '{name}' has {layer.conv.weight.shape[0]} filters after removing "
                    f"{len(chosen)} of {layer.n_physical}")
    conv_key = layer.spec.conv + ".weight"
    if conv_key in before and not torch.equal(before[conv_key][expected], layer.conv.weight.detach()):
        raise _fail(label, f"the surviving filters of '{name}' changed", "remove, do not retrain or rescale")
    x = bench.data.x_test[:64]
    if not torch.allclose(_outputs(bench.model, x), _outputs(reference, x), rtol=1e-4, atol=1e-5):
        raise _fail(label, f"the model after removing filters {chosen.tolist()} of '{name}' computes another "
                    "function than masking them (filter, BatchNorm gamma and beta, consumers' inputs)",
                    "remove every dependent slice (gstbench.pruning.remove_filters does)")
    held = {id(p) for group in bench.optimizer.param_groups for p in group["params"]}
    if held != {id(p) for p in bench.model.parameters()}:
        raise _fail(label, "after removal the optimizer still holds the old tensors, so the pruned layers stop "
                    "training", "rebuild the optimizer's parameters and state (gstbench.pruning.remove_filters)")
    w = layer.conv.weight.detach().clone()
    bench.train(1)
    if torch.equal(w, layer.conv.weight.detach()):
        raise _fail(label, f"layer '{name}' stopped training after removal", "rebuild the optimizer state")


def _check_still_pruned(label: str, bench: _Bench, name: str, chosen: torch.Tensor) -> None:
    """A permanent effector's units stay pruned: masking them again changes nothing the model computes."""
    again = _masked(bench.model, name, chosen, bench.ctx.example_input, bench.granularity)
    x = bench.data.x_test[:64]
    if not torch.allclose(_outputs(bench.model, x), _outputs(again, x), rtol=1e-4, atol=1e-5):
        raise _fail(label, f"after 3 training steps the targeted units of '{name}' still contribute to the output "
                    "(masking them changes it)", "keep them pruned in after_step(), or declare the temporary "
                    "capability if they come back on purpose")
