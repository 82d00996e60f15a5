"""Contract checks of the other components: rewinds, regularizers, metrics, models, datasets.

PYTEST_DONT_REWRITE (the kit raises its own errors)
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable, Iterable

import torch
from torch import nn

from gstbench.components import TensorData
from gstbench.testing.bench import (
    ContractError, _Bench, _differences, _fail, _masked, _outputs, _resolve, _state, make_tiny_data,
    make_tiny_model)


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


def check_regularizer(regularizer: Any, *, options: dict | None = None, model: nn.Module | None = None,
                      data: TensorData | None = None) -> float:
    """Compute a regularizer's penalty as the engine does and check the rules; returns the penalty.

    Rules: ``penalty(model)`` is a finite scalar tensor whose gradient reaches the model's
    parameters and is not zero everywhere (else it cannot change training); it changes
    nothing of the model (parameters, buffers, mode, ``.grad``), draws nothing from torch's
    global RNG, gives the same value twice, and still works after filters were removed.
    """
    label, build, _ = _resolve("regularizers", regularizer, options, ())
    data = data or make_tiny_data()
    bench = _Bench(model if model is not None else make_tiny_model(data), data)
    bench.train(3)
    subject = bench.model
    for p in subject.parameters():
        p.grad = None
    obj = build()
    if not callable(getattr(obj, "penalty", None)):
        raise _fail(label, f"its factory returned {type(obj).__name__}, which has no penalty(model)")
    values = []
    for _ in range(2):
        state, mode, rng = _state(subject), subject.training, torch.get_rng_state()
        value = obj.penalty(subject)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            raise _fail(label, f"penalty() returned {type(value).__name__} {getattr(value, 'shape', '')}",
                        "return a scalar tensor computed from the model's parameters")
        if not bool(torch.isfinite(value).all()):
            raise _fail(label, f"penalty() returned {float(value)}", "return a finite value")
        if not value.requires_grad:
            raise _fail(label, "penalty() has no gradient", "compute it from the parameters, without no_grad/detach")
        grads = torch.autograd.grad(value, [p for p in subject.parameters()], allow_unused=True)
        if not any(g is not None and bool(g.ne(0).any()) for g in grads):
            raise _fail(label, "penalty()'s gradient is zero for every parameter: it cannot change training",
                        "penalize the parameters it names")
        if _differences(state, _state(subject)) or subject.training != mode:
            raise _fail(label, "penalty() changed the model", "read the parameters only")
        if any(p.grad is not None for p in subject.parameters()):
            raise _fail(label, "penalty() left gradients in .grad", "return the tensor; the engine differentiates it")
        if not torch.equal(rng, torch.get_rng_state()):
            raise _fail(label, "penalty() drew from torch's global RNG", "a penalty is a function of the weights")
        values.append(float(value.detach()))
    if values[0] != values[1]:
        raise _fail(label, f"two penalties of the same model differ ({values[0]} and {values[1]})",
                    "compute it from the parameters alone")
    removable = bench.removable()
    if removable:
        bench.remove(removable[0], bench.chosen(removable[0]))
        try:
            obj.penalty(bench.model)
        except Exception as exc:
            raise _fail(label, f"penalty() failed on a model with removed filters: {type(exc).__name__}: {exc}",
                        "walk the model's modules as they are at each step, not as they were built") from exc
    return values[0]


def check_metric(metric: Any, *, options: dict | None = None, capabilities: Iterable[str] | None = None,
                 model: nn.Module | None = None, data: TensorData | None = None) -> dict[str, Any]:
    """Compute a metric as the engine does and check the rules; returns its values.

    Rules: ``compute`` returns a dict of JSON-able values with string keys, among them its
    settings (a non-empty dict under a key ending in ``_settings``); it leaves the model's
    parameters, buffers, mode, ``requires_grad`` and ``.grad`` as it found them; it
    draws nothing from torch's global RNG, and gives equal values on a fresh memo.
    """
    from gstbench.components import NEEDS_INDEPENDENT, NEEDS_PARENT, Evaluated, MetricContext

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
        values = build().compute(ctx)
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
    ``prunable_layers`` whose paths exist (a conv, and a BatchNorm of as many channels; or a group's
    parameters, each splitting into the same number of units);
    on every prunable layer, physical removal computes what masking computes (or the
    ``remove`` effector's check names why it cannot remove there).
    """
    from gstbench.builtin.impl.effectors import RemoveEffector
    from gstbench.components import PrunableGroup, PrunableLayer

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
        if isinstance(spec, PrunableGroup):
            _check_group(label, net, name, spec)
            _check_mask_equals_remove(label, net, name, x)
            continue
        if not isinstance(spec, PrunableLayer):
            raise _fail(label, f"prunable layer '{name}' is {spec!r}",
                        "use gstbench.components.PrunableLayer (filters) or PrunableGroup (heads, neurons)")
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


def _check_group(label: str, net: nn.Module, name: str, group: Any) -> None:
    """A group's slices name parameters that exist and split into the same number of units; its activation exists."""
    if not group.slices:
        raise _fail(label, f"group '{name}' declares no slices", "list each parameter's GroupSlice(param, dim, width)")
    counts = set()
    for part in group.slices:
        try:
            param = net.get_parameter(part.param)
        except AttributeError:
            raise _fail(label, f"group '{name}' names the parameter '{part.param}', which does not exist",
                        "use the names of model.named_parameters()") from None
        run = part.width * part.blocks
        if part.dim >= param.dim() or part.width < 1 or not 0 <= part.block < part.blocks or param.shape[part.dim] % run:
            raise _fail(label, f"group '{name}': dimension {part.dim} of '{part.param}' (shape "
                        f"{tuple(param.shape)}) does not split into {part.blocks} run(s) of units of width "
                        f"{part.width}", "give each slice the dimension, width, block and blocks of one unit")
        counts.add(param.shape[part.dim] // run)
    if len(counts) > 1:
        raise _fail(label, f"group '{name}': its slices split into different unit counts {sorted(counts)}",
                    "give every slice of a unit the same unit count")
    if group.activation is not None:
        try:
            net.get_submodule(group.activation)
        except AttributeError:
            raise _fail(label, f"group '{name}' names the module '{group.activation}', which does not exist",
                        "use the paths of model.named_modules()") from None


def _check_mask_equals_remove(label: str, net: nn.Module, name: str, x: torch.Tensor) -> None:
    from gstbench.pruning import layer_states, remove_filters

    removed = copy.deepcopy(net)
    chosen = torch.arange(0, layer_states(net, [name])[name].n_physical, 4)
    masked = _masked(net, name, chosen, x[:2])
    group = layer_states(net, [name])[name].is_group
    fix = ("read unit counts from the weights' shapes (heads = q.weight.shape[0] // head_dim), never from an "
           "attribute set at construction, and declare every slice a unit owns" if group else
           "take shapes from the tensors (x.flatten(1), not x.view(-1, 512)) and use modules torch-pruning can trace")
    what = "units" if group else "filters"
    try:
        remove_filters(removed, layer_states(removed, [name])[name], chosen, None, x[:2])
        after = _outputs(removed, x)
    except Exception as exc:
        raise _fail(label, f"after {'cutting' if group else 'torch-pruning removed'} {what} of '{name}' the model "
                    f"fails: {type(exc).__name__}: {exc}", fix) from None
    if not torch.allclose(_outputs(masked, x), after, rtol=1e-4, atol=1e-5):
        raise _fail(label, f"removing {what} of '{name}' computes another function than masking them", fix)


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
