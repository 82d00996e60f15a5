"""Testing kit for gstbench and its plugins: pytest fixtures, contract checks, and files in real formats.

A plugin's tests opt in with ``pytest_plugins = "gstbench.testing"``, which provides the
fixtures ``register_plugin`` (a fresh registry with your plugin, for one test),
``tiny_data`` and ``tiny_model``. The ``check_*`` functions run a component through the
engine's calling protocol on a tiny real model and data and raise ``ContractError``
naming the component, the broken rule and the fix. docs/plugins.md describes each rule.
The checks raise their own errors, so pytest need not rewrite this module:
PYTEST_DONT_REWRITE (which also spares a plugin's test module a warning when it imports
the kit before ``pytest_plugins`` loads it).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from gstbench.components import TensorData

try:
    import pytest
except ImportError:  # the kit's helpers work without pytest; its fixtures need it
    pytest = None

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def stored_results(out: Path | str) -> dict[str, dict]:
    """hash -> what each finished cell of a run directory computed: status, metrics (without their wall
    times), curves and events. Two runs of the same cells compare equal when they computed the same."""
    from gstbench.store import Store

    found = {}
    for _, result in Store(out).iter_cells():
        if result is not None:
            metrics = {k: v for k, v in result.get("metrics", {}).items() if k != "metric_wall_s"}
            found[result["hash"]] = {"status": result["status"], "metrics": metrics,
                                     "curves": result.get("curves"), "events": result["events"]}
    return found


def write_cifar(root: Path | str, name: str = "cifar10", n_train: int = 100, n_test: int = 50, seed: int = 0,
                learnable: bool = True) -> Path:
    """Write CIFAR-10 or CIFAR-100 python pickles (the official archives' layout) with random images.

    ``learnable`` paints each image with a class-dependent color offset so a network can fit
    the labels (useful for a short end-to-end run). Returns ``root``, the data directory.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    classes = 10 if name == "cifar10" else 100

    def batch(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, classes, n)
        images = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.float64)
        if learnable:
            palette = np.random.default_rng(12345).uniform(-90, 90, (classes, 3))
            images += palette[labels][:, :, None, None]
        return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072), labels.tolist()

    def dump(path: Path, obj: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        parts = np.array_split(np.arange(n_train), 5)
        for i, part in enumerate(parts, start=1):
            data, labels = batch(len(part))
            dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": data,
                                              "labels": labels, "filenames": [f"{j}.png" for j in part]})
        data, labels = batch(n_test)
        dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": data, "labels": labels,
                                     "filenames": [f"{j}.png" for j in range(n_test)]})
        dump(folder / "batches.meta", {"label_names": CIFAR10_CLASSES, "num_cases_per_batch": n_train // 5,
                                       "num_vis": 3072})
    elif name == "cifar100":
        folder = root / "cifar-100-python"
        for split, n in (("train", n_train), ("test", n_test)):
            data, labels = batch(n)
            dump(folder / split, {"data": data, "fine_labels": labels, "coarse_labels": [c // 5 for c in labels],
                                  "filenames": [f"{j}.png" for j in range(n)], "batch_label": split})
        dump(folder / "meta", {"fine_label_names": [f"class{i}" for i in range(100)],
                               "coarse_label_names": [f"super{i}" for i in range(20)]})
    else:
        raise ValueError(f"unknown CIFAR variant {name!r}: cifar10 or cifar100")
    return root


@dataclass(frozen=True)
class StubCell:
    """A stand-in for a CellSpec in executor tests: what an executor and ``failed_result`` read of a cell."""

    name: str
    seed: int = 0

    @property
    def hash(self) -> str:
        return self.name


@dataclass
class DyingWork:
    """Work for executor tests: cells named ``dies-once`` kill their worker process once (a marker file in
    ``marker_dir`` remembers), ``dies-always`` every time, ``raises`` raise; the others return "ok"."""

    marker_dir: str
    device: str = "cpu"

    def __call__(self, cell: StubCell, device: str | None = None) -> dict:
        marker = Path(self.marker_dir) / cell.name
        if cell.name == "dies-always" or (cell.name == "dies-once" and not marker.exists()):
            marker.touch()
            os._exit(3)  # as a lost node, an out-of-memory kill or a segfault would
        if cell.name == "raises":
            raise ValueError("the cell's own bug")
        return {"status": "ok", "hash": cell.hash, "pid": os.getpid(), "device": device}


# ---- tiny real model and data -------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def make_tiny_data(num_samples: int = 400, seed: int = 0) -> TensorData:
    """MNIST-1D with ``num_samples`` signals, half for training: (1, 40) inputs, 10 classes."""
    from gstbench.builtin.datasets import mnist1d

    return mnist1d(num_samples=num_samples, train_split=0.5, seed=seed)


def make_tiny_model(data: TensorData | None = None, seed: int = 0) -> nn.Module:
    """The built-in ``cnn1d`` at 8-16 filters per layer (prunable conv1..conv4), seeded, in train mode."""
    from gstbench.builtin.models import cnn1d

    data = data or make_tiny_data()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cnn1d(data.input_shape, data.num_classes, channels=(8, 16, 16, 16)).train()


# ---- contract checks ----------------------------------------------------------------------
class ContractError(AssertionError):
    """A component breaks a rule the engine relies on; the message names the component, the rule and the fix."""


def _resolve(kind: str, component: Any, options: dict | None,
             capabilities: Iterable[str] | None) -> tuple[str, Callable[..., Any], tuple[str, ...]]:
    """(label, zero-argument builder, capabilities) of a registered Component or a bare factory."""
    from gstbench.components import Component

    options = dict(options or {})
    if isinstance(component, Component):
        if component.kind != kind:
            raise TypeError(f"{component.id} is one of the {component.kind}, not one of the {kind}")
        label, factory, caps = f"{kind[:-1]} {component.id}", component.factory, component.capabilities
        if capabilities is not None:
            caps = tuple(capabilities)
    elif callable(component):
        label = f"{kind[:-1]} {getattr(component, '__qualname__', repr(component))}"
        factory, caps = component, tuple(capabilities or ())
    else:
        raise TypeError(f"check a registered Component (registry.get({kind!r}, 'plugin:name')) or a factory, "
                        f"not {component!r}")
    return label, functools.partial(factory, **options), caps


def _fail(label: str, rule: str, fix: str = "") -> ContractError:
    return ContractError(f"{label}: {rule}" + (f"; {fix}" if fix else ""))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _differences(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if k not in before or k not in after or before[k].shape != after[k].shape
            or not torch.equal(before[k], after[k])]


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from gstbench.flatness import eval_mode

    with eval_mode(model), torch.no_grad():
        return model(x)


def _masked(model: nn.Module, name: str, chosen: torch.Tensor, example_input: torch.Tensor,
            granularity: str = "filters") -> nn.Module:
    """A copy of ``model`` with the built-in mask on the ``chosen`` units of layer ``name``: the reference."""
    from gstbench.builtin.effectors import MaskEffector
    from gstbench.components import PruningContext
    from gstbench.engine import apply_effector
    from gstbench.pruning import layer_states

    masked = copy.deepcopy(model)
    layer = layer_states(masked, [name], granularity)[name]
    apply_effector(MaskEffector(), layer, chosen, PruningContext(masked, None, example_input, torch.Generator()))
    return masked


class _Bench:
    """One fresh copy of the model with an optimizer and a pruning context, driven as the engine drives it."""

    def __init__(self, model: nn.Module, data: TensorData, granularity: str = "filters", seed: int = 0):
        from gstbench.components import PruningContext
        from gstbench.pruning import layer_states

        self.model = copy.deepcopy(model).train()
        self.data = data
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.ctx = PruningContext(self.model, self.optimizer, data.x_train[:2].clone(),
                                  torch.Generator().manual_seed(seed), data=data, batch_seed=seed)
        names = list(getattr(self.model, "prunable_layers", {}))
        if not names:
            raise ContractError("the test model declares no prunable_layers; pass a model that does")
        self.layers = layer_states(self.model, names, granularity)
        self.granularity = granularity
        self.steps = 0

    def train(self, steps: int, before_batch: Callable | None = None, after_step: Callable | None = None) -> None:
        """Training steps on seeded batches of 32: the engine's order of calls around each step."""
        n = self.data.x_train.shape[0]
        for _ in range(steps):
            g = torch.Generator().manual_seed(1000 + self.steps)
            idx = torch.randperm(n, generator=g)[:32]
            if before_batch is not None:
                before_batch(self.steps)
            loss = F.cross_entropy(self.model(self.data.x_train[idx]), self.data.y_train[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            self.ctx.step = self.steps
            if after_step is not None:
                after_step()

    def chosen(self, name: str, share: float = 0.25) -> torch.Tensor:
        """A fixed spread of about ``share`` of the layer's alive units (flat physical indices)."""
        alive = self.layers[name].alive_flat.nonzero().flatten()
        count = max(1, int(len(alive) * share))
        return alive[torch.linspace(0, len(alive) - 1, count).round().long().unique()]

    def mask(self, name: str, indices: torch.Tensor) -> None:
        """The built-in mask on ``indices`` of layer ``name``, applied as the engine applies an effector."""
        from gstbench.builtin.effectors import MaskEffector
        from gstbench.engine import apply_effector

        apply_effector(MaskEffector(), self.layers[name], indices, self.ctx)

    def remove(self, name: str, indices: torch.Tensor, scorer: Any = None) -> None:
        """Physical removal as the engine applies it, ``units_removed`` on the scorer included."""
        from gstbench.builtin.effectors import RemoveEffector
        from gstbench.engine import apply_effector

        apply_effector(RemoveEffector(), self.layers[name], indices, self.ctx, scorer)

    def removable(self) -> list[str]:
        """The prunable layers whose removal cuts no other layer's outputs (not a residual sum)."""
        from gstbench.builtin.effectors import RemoveEffector

        return [name for name, layer in self.layers.items()
                if RemoveEffector().check_layer(self.model, name, layer.spec, self.ctx.example_input) is None]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def check_scorer(scorer: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None,
                 model: nn.Module | None = None, data: TensorData | None = None) -> dict[str, torch.Tensor]:
    """Run a scorer as the engine does and check the rules; returns the first scores per layer.

    Rules: ``score`` returns a finite float tensor of the layer's ``alive`` shape, also after
    masking and after physical removal (``units_removed`` keeps per-unit state in step);
    scoring leaves the model's parameters, buffers and mode as they were and draws nothing
    from torch's global RNG; two runs from the same seed give equal scores; ``detach``
    removes every hook ``attach`` added. With the ``weights`` capability the same holds
    for single weights.
    """
    from gstbench.components import WEIGHTS

    label, build, caps = _resolve("scorers", scorer, options, capabilities)
    data = data or make_tiny_data()
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
            if not s.is_floating_point() or not bool(torch.isfinite(s).all()):
                raise _fail(label, f"score() returned {'non-float' if not s.is_floating_point() else 'non-finite'} "
                            f"scores for {what}", "return finite float scores (dead units included)")
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
    graph = dependency_graph(bench.model, bench.ctx.example_input)
    for param, dim, idx in removal_slices(graph, layer, chosen):
        allowed[key_of[id(param)]].index_fill_(dim, idx, True)
    owners = [layer.conv] + ([layer.bn] if layer.bn is not None else [])
    for module in owners:
        for attr in ("bias", "running_mean", "running_var"):
            t = getattr(module, attr, None)
            if isinstance(t, torch.Tensor) and id(t) in key_of:
                allowed[key_of[id(t)]][chosen] = True
    return allowed


def _effector_run(label: str, build: Callable, caps: tuple[str, ...], model: nn.Module, data: TensorData,
                  granularity: str) -> dict[str, torch.Tensor]:
    from gstbench.components import REMOVES_UNITS, TEMPORARY

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
    if TEMPORARY not in caps and REMOVES_UNITS not in caps:
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


def check_rewind(rewind: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None,
                 model: nn.Module | None = None, data: TensorData | None = None) -> None:
    """Rewind between rounds as the engine does and check the rules.

    Rules: ``checkpoint_step`` is None or a step inside training; ``rewind`` returns a
    ``Resume`` inside training, keeps the model's parameter names and shapes, draws
    nothing from torch's global RNG, and gives the same result from the same state; a
    rewind without ``loads-weights`` works on a model whose filters were removed.
    """
    from gstbench.components import LOADS_WEIGHTS

    label, build, caps = _resolve("rewinds", rewind, options, capabilities)
    data = data or make_tiny_data()
    model = model if model is not None else make_tiny_model(data)
    a, b = (_rewind_run(label, build, model, data, removed=False) for _ in range(2))
    if a[0] != b[0] or _differences(a[1], b[1]):
        raise _fail(label, "two rewinds from the same state gave different results",
                    "draw randomness from a generator seeded from the context")
    if LOADS_WEIGHTS not in caps:
        try:
            _rewind_run(label, build, model, data, removed=True)
        except ContractError:
            raise
        except Exception as exc:
            raise _fail(label, f"rewind() failed on a model with removed filters: {type(exc).__name__}: {exc}",
                        "declare the loads-weights capability, so the engine refuses it with removal") from exc


def _reinitialized(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` freshly initialized from ``seed`` (every module's ``reset_parameters``)."""
    fresh = copy.deepcopy(model)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for module in fresh.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return fresh


def _rewind_run(label: str, build: Callable, model: nn.Module, data: TensorData, removed: bool):
    from gstbench.components import Resume, RewindContext

    steps_per_epoch, total = 4, 12
    obj = build()
    k = obj.checkpoint_step(steps_per_epoch, total)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < total):
        raise _fail(label, f"checkpoint_step({steps_per_epoch}, {total}) returned {k!r}",
                    f"return None or a step from 0 to {total - 1}")
    bench = _Bench(model, data)
    checkpoint = _state(bench.model) if k == 0 else None
    for step in range(1, total + 1):
        bench.train(1)
        if k == step:
            checkpoint = _state(bench.model)
    if removed:
        removable = bench.removable()
        if not removable:  # every layer feeds a residual sum: no removal to rewind after
            return None
        bench.remove(removable[0], bench.chosen(removable[0]))
    else:
        first = next(iter(bench.layers))
        bench.mask(first, bench.chosen(first))
    fresh = _reinitialized(model, seed=1234)

    def fresh_state() -> dict[str, torch.Tensor]:
        return _state(fresh)

    shapes = {k_: tuple(v.shape) for k_, v in bench.model.state_dict().items()}
    rng = torch.get_rng_state()
    resume = obj.rewind(RewindContext(bench.model, checkpoint, fresh_state, steps_per_epoch, total, round=1))
    if not torch.equal(rng, torch.get_rng_state()):
        raise _fail(label, "rewind() drew from torch's global RNG", "seed a generator from the context")
    if not isinstance(resume, Resume) or isinstance(resume.step, bool) or not isinstance(resume.step, int) \
            or not 0 <= resume.step < total:
        raise _fail(label, f"rewind() returned {resume!r}", f"return Resume(step) with 0 <= step < {total}")
    if {k_: tuple(v.shape) for k_, v in bench.model.state_dict().items()} != shapes:
        raise _fail(label, "rewind() changed the model's parameter names or shapes",
                    "load values only; the engine re-applies the masks afterwards")
    return (resume.step, resume.replay_lr), _state(bench.model)


def check_metric(metric: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None,
                 model: nn.Module | None = None, data: TensorData | None = None) -> dict[str, Any]:
    """Compute a metric as the engine does and check the rules; returns its values.

    Rules: ``compute`` returns a dict of JSON-able values with string keys, among them its
    settings (a non-empty dict under a key ending in ``_settings``); it leaves the model's
    parameters, buffers, mode, ``requires_grad`` and ``.grad`` as it found them; it
    draws nothing from torch's global RNG, and gives equal values on a fresh memo.
    """
    from gstbench.components import NEEDS_INDEPENDENT, NEEDS_PARENT, Evaluated, MetricContext
    from gstbench.engine import compute_metric

    label, build, caps = _resolve("metrics", metric, options, capabilities)
    data = data or make_tiny_data()
    model = model if model is not None else make_tiny_model(data)
    bench = _Bench(model, data)
    bench.train(5)
    subject, parent = bench.model, copy.deepcopy(model)
    for p in subject.parameters():
        p.grad = None
    obj = build()
    if hasattr(obj, "check"):
        reason = obj.check(data, subject)
        if reason is not None:
            raise _fail(label, f"check() says it cannot measure the test model and data: {reason}",
                        "pass model= and data= it applies to")
    results = []
    for _ in range(2):
        state, flags, rng = _state(subject), [p.requires_grad for p in subject.parameters()], torch.get_rng_state()
        ctx = MetricContext(Evaluated(subject), data, torch.device("cpu"),
                            Evaluated(parent) if {NEEDS_PARENT, NEEDS_INDEPENDENT} & set(caps) else None,
                            independent=Evaluated(make_tiny_model(data, seed=1)) if NEEDS_INDEPENDENT in caps else None)
        values = compute_metric(build(), ctx)
        if not isinstance(values, dict) or not all(isinstance(k, str) for k in values):
            raise _fail(label, f"compute() returned {type(values).__name__}", "return a dict with string keys")
        try:
            text = json.dumps(values, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise _fail(label, f"compute() returned a value JSON cannot store: {exc}",
                        "return numbers, strings, lists and dicts (call float() on tensors)") from None
        settings = [k for k, v in values.items() if k.endswith("_settings") and isinstance(v, dict) and v]
        if not settings:
            raise _fail(label, "compute() reports no settings",
                        "add '<name>_settings': {...} with what it measured on (samples, seed, split, ...)")
        changed = _differences(state, _state(subject))
        if changed:
            raise _fail(label, f"compute() changed the model ({', '.join(changed[:3])})",
                        "measure in eval mode on copies; keep BatchNorm running stats out of metric passes")
        if not subject.training:
            raise _fail(label, "compute() left the model in eval mode", "restore the mode it found")
        if [p.requires_grad for p in subject.parameters()] != flags:
            raise _fail(label, "compute() changed requires_grad flags", "restore them")
        if any(p.grad is not None for p in subject.parameters()):
            raise _fail(label, "compute() left gradients in .grad", "use torch.autograd.grad, or clear them")
        if not torch.equal(rng, torch.get_rng_state()):
            raise _fail(label, "compute() drew from torch's global RNG", "seed its own torch.Generator")
        results.append(text)
    if results[0] != results[1]:
        raise _fail(label, "two computations on the same model gave different values",
                    "seed every random draw (samples, probes) from the metric's settings")
    return json.loads(results[0])


def check_model(model: Any, *, options: dict | None = None, input_shape: tuple[int, ...] = (1, 40),
                num_classes: int = 10) -> None:
    """Build a model as the engine does and check the rules.

    Rules: ``factory(input_shape, num_classes, **options)`` returns a module giving
    (batch, num_classes) finite logits, built the same from the same seed; it declares
    ``prunable_layers`` whose paths exist (a conv, and a BatchNorm of as many channels);
    on every prunable layer, physical removal computes what masking computes (or the
    ``remove`` effector's check names why it cannot remove there).
    """
    from gstbench.builtin.effectors import RemoveEffector
    from gstbench.components import PrunableLayer

    label, build, _ = _resolve("models", model, options, None)

    def make() -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return build(tuple(input_shape), num_classes)

    net = make()
    if not isinstance(net, nn.Module):
        raise _fail(label, f"its factory returned {type(net).__name__}", "return a torch.nn.Module")
    if _differences(_state(net), _state(make())):
        raise _fail(label, "two builds from the same seed differ", "initialize from torch's seeded RNG only")
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(0))
    out = _outputs(net, x)
    if tuple(out.shape) != (3, num_classes) or not bool(torch.isfinite(out).all()):
        raise _fail(label, f"a batch of 3 inputs of shape {tuple(input_shape)} gave outputs of shape "
                    f"{tuple(out.shape)}", f"return finite logits of shape (batch, {num_classes})")
    layers = getattr(net, "prunable_layers", None)
    if not isinstance(layers, dict) or not layers:
        raise _fail(label, "declares no prunable_layers",
                    "set model.prunable_layers = {name: PrunableLayer(conv=..., bn=...)}")
    for name, spec in layers.items():
        if not isinstance(spec, PrunableLayer):
            raise _fail(label, f"prunable layer '{name}' is {spec!r}", "use gstbench.components.PrunableLayer")
        for path in (spec.conv, spec.bn, spec.activation):
            if path is not None:
                try:
                    net.get_submodule(path)
                except AttributeError:
                    raise _fail(label, f"prunable layer '{name}' names the module '{path}', which does not exist",
                                "use the paths of model.named_modules()") from None
        conv = net.get_submodule(spec.conv)
        if not isinstance(getattr(conv, "weight", None), torch.Tensor):
            raise _fail(label, f"prunable layer '{name}': '{spec.conv}' has no weight")
        bn = net.get_submodule(spec.bn) if spec.bn else None
        if bn is not None and getattr(bn, "num_features", None) != conv.weight.shape[0]:
            raise _fail(label, f"prunable layer '{name}': BatchNorm '{spec.bn}' has "
                        f"{getattr(bn, 'num_features', None)} channels, the conv {conv.weight.shape[0]} filters")
        if RemoveEffector().check_layer(net, name, spec, x[:2]) is None:
            _check_mask_equals_remove(label, net, name, x)


def _check_mask_equals_remove(label: str, net: nn.Module, name: str, x: torch.Tensor) -> None:
    from gstbench.pruning import layer_states, remove_filters

    removed = copy.deepcopy(net)
    chosen = torch.arange(0, layer_states(net, [name])[name].n_physical, 4)
    masked = _masked(net, name, chosen, x[:2])
    fix = "take shapes from the tensors (x.flatten(1), not x.view(-1, 512)) and use modules torch-pruning can trace"
    try:
        remove_filters(removed, layer_states(removed, [name])[name], chosen, None, x[:2])
        after = _outputs(removed, x)
    except Exception as exc:
        raise _fail(label, f"after torch-pruning removed filters of '{name}' the model fails: "
                    f"{type(exc).__name__}: {exc}", fix) from None
    if not torch.allclose(_outputs(masked, x), after, rtol=1e-4, atol=1e-5):
        raise _fail(label, f"removing filters of '{name}' computes another function than masking them", fix)


def check_dataset(dataset: Any, *, options: dict | None = None) -> TensorData:
    """Build a dataset as the engine does and check the rules; returns it.

    Rules: the factory returns a ``TensorData`` with float, finite inputs of one shape and
    long labels in [0, num_classes), the same on every call; ``normalization`` has one
    mean and std per channel; each shift gives test sets of the test shape at severities
    1 to 5; an augmentation keeps the batch's shape and gives the same output for the
    same generator seed.
    """
    from gstbench.components import TensorData

    label, build, _ = _resolve("datasets", dataset, options, None)
    data = build()
    if not isinstance(data, TensorData):
        raise _fail(label, f"its factory returned {type(data).__name__}", "return gstbench.components.TensorData")
    if not isinstance(data.num_classes, int) or data.num_classes < 2:
        raise _fail(label, f"num_classes is {data.num_classes!r}", "give the number of classes (>= 2)")
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        if not x.is_floating_point() or not bool(torch.isfinite(x).all()):
            raise _fail(label, f"x_{split} is not finite floats", "return float inputs")
        if y.dtype != torch.long or y.dim() != 1 or len(y) != len(x) or len(y) == 0:
            raise _fail(label, f"y_{split} has dtype {y.dtype} and shape {tuple(y.shape)} for {len(x)} inputs",
                        "return one long label per input")
        if int(y.min()) < 0 or int(y.max()) >= data.num_classes:
            raise _fail(label, f"y_{split} has labels outside [0, {data.num_classes})")
    if data.x_train.shape[1:] != data.x_test.shape[1:]:
        raise _fail(label, f"train inputs have shape {tuple(data.x_train.shape[1:])}, test inputs "
                    f"{tuple(data.x_test.shape[1:])}")
    again = build()
    if any(not torch.equal(getattr(data, k), getattr(again, k)) for k in ("x_train", "y_train", "x_test", "y_test")):
        raise _fail(label, "two builds with the same options differ", "generate from a seed option")
    if data.normalization is not None:
        channels = data.input_shape[0]
        if len(data.normalization) != 2 or any(len(v) != channels for v in data.normalization):
            raise _fail(label, f"normalization is {data.normalization!r}",
                        f"give ((mean per channel), (std per channel)) for {channels} channels")
    if data.shifts is not None:
        if not data.shifts.names:
            raise _fail(label, "its shifts have no names")
        for shift in data.shifts.names:
            for severity in (1, 5):
                x, y = data.shifts.test_set(shift, severity)
                if x.shape[1:] != data.x_test.shape[1:] or len(y) != len(x) or y.dtype != torch.long:
                    raise _fail(label, f"shift {shift!r} at severity {severity} gave inputs of shape {tuple(x.shape)}")
    if data.augmentation is not None:
        batch = data.x_train[:8]
        a = data.augmentation(batch.clone(), torch.Generator().manual_seed(3))
        b = data.augmentation(batch.clone(), torch.Generator().manual_seed(3))
        if a.shape != batch.shape or a.dtype != batch.dtype or not torch.equal(a, b):
            raise _fail(label, "its augmentation changes the batch's shape or dtype, or differs for the same seed",
                        "transform each input in place of itself, drawing from the generator given")
    return data


# ---- pytest fixtures (pytest_plugins = "gstbench.testing") ---------------------------------
if pytest is not None:

    @pytest.fixture
    def register_plugin(monkeypatch):
        """``register_plugin(plugin, name=None) -> Registry``: a fresh registry of the built-ins and ``plugin``
        (a module or object with hook implementations), used as gstbench's registry for this test only.

        Installed plugins are left out unless ``installed=True``. A plugin that fails to load
        raises ``PluginError`` here instead of warning.
        """
        from gstbench import plugins

        previous = plugins._REGISTRY

        def register(*items: Any, name: str | None = None, installed: bool = False) -> "plugins.Registry":
            monkeypatch.setenv("GSTBENCH_STRICT_PLUGINS", "1")
            named = [(name or getattr(item, "__name__", type(item).__name__).rsplit(".", 1)[-1], item)
                     for item in items]
            if name is not None and len(items) > 1:
                raise ValueError("name= applies to a single plugin")
            registry = plugins.Registry(named, installed=installed)
            plugins.reset_registry(registry)
            return registry

        yield register
        plugins.reset_registry(previous)

    @pytest.fixture(scope="session")
    def tiny_data():
        """MNIST-1D, 200 training and 200 test signals of shape (1, 40), 10 classes."""
        return make_tiny_data()

    @pytest.fixture
    def tiny_model(tiny_data):
        """A fresh seeded ``cnn1d`` with 8-16 filters per layer (prunable conv1..conv4), in train mode."""
        return make_tiny_model(tiny_data)
