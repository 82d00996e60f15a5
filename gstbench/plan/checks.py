"""Checks of a suite's cells that need its models and data, before any training: layer names, schedules,
rewind steps, metrics and regularizers that apply, component combinations that cannot work; and the components
a flag names (`--scorer`, `--metric`), refused against the flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from gstbench.components import ACROSS_LAYERS, GROUPS, LOADS_WEIGHTS, MAPS_2D, REMOVES_UNITS, SOFT, TEMPORARY, WEIGHTS
from gstbench.errors import GstbenchError, SpecError, UnknownComponent, closest
from gstbench.plan.config import CellSpec
from gstbench.plugins import Registry
from gstbench.shapes import DataShape, ModelShape


@dataclass
class _Subject:
    """What the checks read of a model on a dataset: built (the model and two examples), or its declared shapes
    (gstbench/shapes.py) alone, which checks names, counts and schedules but cannot run anything."""

    n_train: int
    input_shape: tuple[int, ...]
    layers: list[str]  # the prunable layers the model declares
    units: Callable[[str, str], int | None]  # (layer, granularity) -> filters or weights; None: no such layer
    model: Any = None
    data: Any = None
    groups: dict[str, str] = field(default_factory=dict)  # each group layer's units: "heads", "neurons"

    @classmethod
    def built(cls, model: Any, data: Any) -> "_Subject":
        from gstbench.pruning import layer_states, weight_layer

        declared = getattr(model, "prunable_layers", {})

        def units(name: str, granularity: str) -> int | None:
            if (weight_layer(model, name) if granularity == "weights" else declared.get(name)) is None:
                return None
            return layer_states(model, [name], granularity)[name].n_original

        from gstbench.components import PrunableGroup

        groups = {n: spec.kind for n, spec in declared.items() if isinstance(spec, PrunableGroup)}
        return cls(data.x_train.shape[0], tuple(data.x_train.shape[1:]), list(declared), units, model, data, groups)

    @classmethod
    def described(cls, shape: ModelShape, data: DataShape) -> "_Subject":
        def units(name: str, granularity: str) -> int | None:
            return (shape.weights if granularity == "weights" else shape.units).get(name)

        return cls(data.n_train, tuple(data.input_shape), list(shape.units), units, groups=dict(shape.groups))


def validate_cells(cells: list[CellSpec], registry: Registry, source: str | None = None,
                   placeholders: bool = False, build_models: bool = True) -> None:
    """Checks that need the model or data: layer names, schedules, rewind steps, component combinations.

    ``build_models=False`` (``gstbench suites show``): models and datasets that declare their shapes are neither
    built nor loaded, and torch is not imported; names, counts and schedules are checked on the shapes, and what
    needs a built model (metrics, regularizers, an effector's own check) when ``gstbench run`` starts."""
    checked: set = set()  # each check once per distinct input: a large matrix repeats them
    subjects: dict = {}
    for spec in cells:
        rewind_key = matrix_key((spec.rewind, spec.prune is not None and spec.prune.rounds))
        if rewind_key not in checked:
            checked.add(rewind_key)
            rewind = registry.component("rewinds", spec.rewind)
            if (spec.prune is None or not spec.prune.rounds) and rewind.name != "none":
                raise SpecError(f"rewind '{spec.rewind.label}' acts between prune-retrain rounds, and this "
                                f"configuration has none; set prune.rounds, or drop the rewind", source=source,
                                key="rewind")
        try:
            mkey = matrix_key((spec.model, spec.dataset))
            if mkey not in subjects:
                subjects[mkey] = _subject(spec, registry, placeholders, build_models)
            subject = subjects[mkey]
            if subject.model is not None and matrix_key((mkey, spec.metrics)) not in checked:
                checked.add(matrix_key((mkey, spec.metrics)))
                _check_metrics(spec, registry, subject.model, subject.data)
            if subject.model is not None and spec.train.regularizer is not None \
                    and matrix_key((mkey, spec.train.regularizer)) not in checked:
                checked.add(matrix_key((mkey, spec.train.regularizer)))
                _check_regularizer(spec.train.regularizer, registry, subject.model)
            # the schedule needs the steps (epochs, batch size), not the rest of training
            pruned = matrix_key((mkey, spec.prune, spec.rewind, spec.train.epochs, spec.train.batch_size))
            if spec.prune is not None and pruned not in checked:
                checked.add(pruned)
                _check_pruned(spec, registry, subject)
        except SpecError as exc:
            raise SpecError(exc.message, source=source, key=exc.key) from None


def _subject(spec: CellSpec, registry: Registry, placeholders: bool, build_models: bool) -> _Subject:
    """The model on its dataset: described by their shapes where both declare them and nothing is to be built,
    else built (and run on two examples)."""
    if not build_models:
        data = _built("dataset", spec.dataset, lambda: registry.data_shape(spec.dataset))
        shape = data and _built("model", spec.model, lambda: registry.model_shape(spec.model, data))
        if shape is not None:
            return _Subject.described(shape, data)
    data = _built("dataset", spec.dataset, lambda: registry.load_data(spec.dataset, placeholders))
    model = _built("model", spec.model, lambda: _forward(registry.build_model(spec.model, data), data))
    return _Subject.built(model, data)


def matrix_key(parts: tuple) -> Any:
    """``parts`` as a set or dict key: themselves (frozen), or their repr where an option's value is a list."""
    try:
        hash(parts)
        return parts
    except TypeError:
        return repr(parts)


def _forward(model: Any, data: Any) -> Any:
    """A model that builds must also run on two of the dataset's examples."""
    import torch

    with torch.no_grad():
        model.eval()
        model(data.x_train[:2])
    model.train()
    return model


def _built(kind: str, ref: Any, build: Any) -> Any:
    """A plugin's factory raising on its options is the suite's bad value, named with its key."""
    try:
        return build()
    except GstbenchError:
        raise
    except Exception as exc:
        options = ", ".join(f"{k} = {v!r}" for k, v in sorted(ref.kwargs.items())) or "no options"
        first_line = (str(exc).strip().splitlines() or [""])[0]  # torch appends its C++ stack
        raise SpecError(f"{kind} '{ref.id}' cannot be built with {options}: {type(exc).__name__}: {first_line}",
                        key=kind) from None


def _check_metrics(spec: CellSpec, registry: Registry, model: Any, data: Any) -> None:
    """Each metric builds with its options and applies to this model and data (its own ``check``)."""

    for i, ref in enumerate(spec.metrics):
        comp = registry.component("metrics", ref)
        try:
            metric = comp.factory(**ref.kwargs)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"metric '{comp.id}': {exc}", key=f"metrics[{i}]") from None
        check = getattr(metric, "check", None)
        problem = check(data, model) if check else None
        if problem:
            raise SpecError(f"metric '{comp.id}' cannot apply to dataset {spec.dataset.label}: {problem}",
                            key=f"metrics[{i}]")


def _check_regularizer(ref: Any, registry: Registry, model: Any) -> None:
    """The regularizer builds with its options and gives a finite scalar penalty on this model."""
    import torch

    comp = registry.component("regularizers", ref)
    try:
        value = comp.factory(**ref.kwargs).penalty(model)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"regularizer '{comp.id}': {exc}", key="train.regularizer") from None
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not bool(torch.isfinite(value).all()):
        raise SpecError(f"regularizer '{comp.id}' returned {value!r} as its penalty; it must be a finite scalar "
                        f"tensor", key="train.regularizer")


def _check_pruned(spec: CellSpec, registry: Registry, subject: _Subject) -> None:
    from gstbench.plan.schedule import build_schedule

    prune = spec.prune
    declared = subject.layers
    for lname, _ in prune.layers:
        if subject.units(lname, prune.granularity) is None:
            what = "prunable layer or conv/linear module" if prune.granularity == "weights" else "prunable layer"
            raise SpecError(f"model {spec.model.id} has no {what} '{lname}'{closest(lname, declared)}; "
                            f"its prunable layers: {', '.join(declared) or 'none'}", key=f"prune.layers.{lname}")
    steps_per_epoch = spec.train.steps_per_epoch(subject.n_train)
    total_steps = spec.train.epochs * steps_per_epoch
    components = {kind: registry.component(kind, ref) for kind, ref in
                  (("scorers", prune.scorer), ("effectors", prune.effector), ("rewinds", spec.rewind))}
    if prune.granularity == "weights":
        for kind in ("scorers", "effectors"):
            if WEIGHTS not in components[kind].capabilities:
                raise SpecError(f"{kind[:-1]} '{components[kind].id}' works on whole filters only, and "
                                f"granularity is \"weights\"; pick one that declares the '{WEIGHTS}' capability "
                                f"(gstbench list {kind})", key=f"prune.{kind[:-1]}")
    grouped = [n for n, _ in prune.layers if n in subject.groups]
    if grouped and prune.granularity == "filters":
        for kind in ("scorers", "effectors"):
            if GROUPS not in components[kind].capabilities:
                raise SpecError(f"{kind[:-1]} '{components[kind].id}' works on conv filters only, and layer "
                                f"'{grouped[0]}' of model {spec.model.id} is a group of {subject.groups[grouped[0]]}; "
                                f"pick one that declares the '{GROUPS}' capability (gstbench list {kind})",
                                key=f"prune.{kind[:-1]}")
    if prune.scope == "global" and prune.granularity != "weights" and \
            ACROSS_LAYERS not in components["scorers"].capabilities:
        raise SpecError(f"scope = \"global\" ranks the filters, heads or neurons of all its layers in one list, and "
                        f"scorer '{components['scorers'].id}' does not declare its scores comparable across layers (a "
                        f"norm grows with a unit's size); use gstbench:magnitude (a unit's mean |w|), a scorer with "
                        f"the '{ACROSS_LAYERS}' capability, or scope = \"layer\"", key="prune.scope")
    if MAPS_2D in components["scorers"].capabilities and len(subject.input_shape) != 3:
        raise SpecError(f"scorer '{components['scorers'].id}' ranks filters by their 2-D feature maps, and dataset "
                        f"{spec.dataset.label} holds 1-D signals (examples of shape "
                        f"{tuple(subject.input_shape)}), whose 1 x L maps have rank 0 or 1 and cannot rank "
                        f"filters; pick another scorer (gstbench list scorers) or an image dataset",
                        key="prune.scorer")
    effector = components["effectors"]
    if prune.rounds:
        if TEMPORARY in effector.capabilities or SOFT in effector.capabilities:
            raise SpecError(f"effector '{effector.id}' lets pruned units come back, so rounds would never "
                            f"make the network sparser; use mask or remove", key="prune.effector")
        if REMOVES_UNITS in effector.capabilities and LOADS_WEIGHTS in components["rewinds"].capabilities:
            raise SpecError(f"rewind '{spec.rewind.label}' loads weights of the unpruned shapes, which "
                            f"'{effector.id}' has cut away; use the mask effector", key="prune.effector")
        try:
            rewind = registry.build("rewinds", spec.rewind)
            rewind.checkpoint_step(steps_per_epoch, total_steps)
        except ValueError as exc:
            raise SpecError(str(exc), key="rewind") from None
        resume_step = getattr(rewind, "resume_step", None)  # optional: a plugin's rewind may lack it
        if prune.data_order_stability and resume_step and resume_step(steps_per_epoch, total_steps) >= total_steps:
            raise SpecError(f"rewind '{spec.rewind.label}' retrains nothing, so there is no second copy to train "
                            f"with another data order; drop data_order_stability, or fine-tune", key="rewind")
    else:
        n_units = {n: subject.units(n, prune.granularity) for n, _ in prune.layers}
        build_schedule(prune, n_units, steps_per_epoch, total_steps)
    if REMOVES_UNITS in effector.capabilities and subject.model is not None:
        instance = registry.build("effectors", prune.effector)
        check = getattr(instance, "check_layer", None)
        for lname, _ in prune.layers:
            problem = check and check(subject.model, lname, subject.model.prunable_layers[lname],
                                      subject.data.x_train[:2])
            if problem:
                raise SpecError(problem, key=f"prune.layers.{lname}")


FLAGS = {"prune.scorer": ("--scorer", "scorers")}  # component overrides that `gstbench run` takes as flags


def check_flags(registry: Registry, overrides: dict[str, Any] | None, metrics: list[str]) -> None:
    """A component a flag names resolves, or is refused against the flag, with the plugin that failed to load
    when its id names one (not against the suite file, which does not name it)."""
    named = [(FLAGS[k][0], FLAGS[k][1], v) for k, v in (overrides or {}).items() if k in FLAGS and isinstance(v, str)]
    named += [("--metric", "metrics", m) for m in metrics]
    for flag, kind, value in named:
        try:
            registry.get(kind, value.split("@", 1)[0])
        except UnknownComponent as exc:
            plugin = registry.plugins.get(value.partition(":")[0]) if ":" in value else None
            failed = f"; plugin '{plugin.name}' failed to load: {plugin.error}" if plugin and plugin.status == "failed" \
                else ""
            raise GstbenchError(f"{flag} {value}: {exc}{failed}") from None
