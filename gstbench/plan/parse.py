"""A configuration table (a suite's base merged with one point of its axes) read into a CellSpec, checked key by
key: unknown keys, types, choices and component names are refused in one line naming the file and the key."""

from __future__ import annotations

import functools
import math
import typing
from dataclasses import fields
from typing import Any

from gstbench.components import REQUIRED
from gstbench.errors import SpecError, UnknownComponent, closest
from gstbench.plan.config import (GRANULARITIES, SCOPES, CellSpec, ComponentRef, LayerSchedule, PruneConfig,
                                  TrainConfig, parse_steps)
from gstbench.plugins import Registry


CELL_KEYS = {"model", "dataset", "train", "prune", "rewind", "metrics"}
PRUNE_KEYS = {"scorer", "target", "effector", "layers", "fraction", "start", "end", "period", "granularity", "scope",
              "rounds", "data_order_stability", "lmc_points", "calibration"}
LAYER_KEYS = {"fraction", "start", "end", "period"}
OPTIMIZERS = ("adam", "sgd")
PRECISIONS = ("fp32", "bf16")


def _check_keys(d: dict, allowed: set[str], where: str, source: str | None) -> None:
    for k in d:
        if k not in allowed:
            raise SpecError(f"unknown key '{k}'{closest(k, allowed)}; known keys: {', '.join(sorted(allowed))}",
                            source=source, key=f"{where}.{k}" if where else k)


def _coerce(value: Any, typ: Any, key: str, source: str | None) -> Any:
    origin = typing.get_origin(typ)
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SpecError(f"{value!r} is not a number", source=source, key=key)
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{value!r} is not a whole number", source=source, key=key)
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise SpecError(f"{value!r} is not true or false", source=source, key=key)
        return value
    if typ is str:
        if not isinstance(value, str):
            raise SpecError(f"{value!r} is not a string", source=source, key=key)
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{value!r} is not a list", source=source, key=key)
        return tuple(parse_steps(v, key, source) for v in value)
    raise TypeError(typ)


@functools.lru_cache(maxsize=1)
def _train_hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _train(d: Any, registry: Registry, source: str | None) -> TrainConfig:
    if not isinstance(d, dict):
        raise SpecError(f"{d!r} is not a table", source=source, key="train")
    names = {f.name: f for f in fields(TrainConfig)}
    _check_keys(d, set(names), "train", source)
    hints = _train_hints()
    kwargs = {k: _coerce(v, hints[k], f"train.{k}", source) for k, v in d.items() if k != "regularizer"}
    if d.get("regularizer") not in (None, "none"):
        kwargs["regularizer"] = component_ref(registry, "regularizers", d["regularizer"], "train.regularizer", source)
    cfg = TrainConfig(**kwargs)
    checks = [
        (cfg.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}"),
        (cfg.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}"),
        (cfg.lr > 0, "lr", "must be > 0"),
        (cfg.epochs >= 0, "epochs", "must be >= 0 (0: the network at initialization, never trained)"),
        (cfg.batch_size >= 1, "batch_size", "must be >= 1"),
        (cfg.weight_decay >= 0, "weight_decay", "must be >= 0"),
        (0 <= cfg.momentum < 1, "momentum", "must be in [0, 1)"),
        (cfg.gamma > 0, "gamma", "must be > 0"),
        (cfg.checkpoint_every >= 0, "checkpoint_every", "must be >= 0 (epochs; 0: no checkpoints)"),
    ]
    for ok, key, msg in checks:
        if not ok:
            raise SpecError(f"{getattr(cfg, key)!r} {msg}", source=source, key=f"train.{key}")
    return cfg


def component_ref(registry: Registry, kind: str, value: Any, key: str, source: str | None) -> ComponentRef:
    """``"name"`` or ``{name = "...", option = value}`` -> a resolved ComponentRef."""
    if isinstance(value, str):
        name, options = value, {}
    elif isinstance(value, dict) and isinstance(value.get("name"), str):
        options = {k: v for k, v in value.items() if k != "name"}
        name = value["name"]
    else:
        raise SpecError(f"{value!r} is not a {kind[:-1]} name (a string, or a table with 'name')",
                        source=source, key=key)
    try:
        comp = registry.get(kind, name)
    except UnknownComponent as exc:
        raise SpecError(str(exc), source=source, key=key) from None
    defaults = comp.option_defaults()
    kept = {}
    for k, v in options.items():
        if defaults is not None and k not in defaults:
            raise SpecError(f"{comp.id} has no option '{k}'{closest(k, defaults)}"
                            f"; its options: {', '.join(defaults) or 'none'}", source=source, key=f"{key}.{k}")
        if defaults is not None and defaults.get(k) == v and type(defaults.get(k)) is type(v):
            continue  # explicit default: same cell as implicit default
        if isinstance(v, dict):
            raise SpecError(f"option value {v!r} must be a scalar or list", source=source, key=f"{key}.{k}")
        kept[k] = tuple(v) if isinstance(v, list) else v
    if defaults:
        missing = [k for k, d in defaults.items() if d is REQUIRED and k not in options]
        if missing:
            hint = f" (write e.g. '{comp.name}@500it')" if missing == ["at"] and kind == "rewinds" else ""
            raise SpecError(f"{comp.id} needs option(s) {', '.join(missing)}{hint}", source=source, key=key)
    return ComponentRef(comp.hash_id, tuple(sorted(kept.items())))


def _prune(d: Any, registry: Registry, source: str | None) -> PruneConfig | None:
    if d is False:
        return None
    if not isinstance(d, dict):
        raise SpecError(f"{d!r} is not a table (or false for no pruning)", source=source, key="prune")
    _check_keys(d, PRUNE_KEYS, "prune", source)
    for k in ("scorer", "target", "effector", "layers"):
        if k not in d:
            raise SpecError(f"missing key '{k}'", source=source, key=f"prune.{k}")
    granularity = _choice(d.get("granularity", "filters"), GRANULARITIES, "prune.granularity", source)
    scope = _choice(d.get("scope", "layer"), SCOPES, "prune.scope", source)
    rounds = _coerce(d.get("rounds", 0), int, "prune.rounds", source)
    if rounds < 0:
        raise SpecError(f"{rounds!r} must be >= 0 (0: prune during training)", source=source, key="prune.rounds")
    twins = d.get("data_order_stability", False)
    if not isinstance(twins, bool):
        raise SpecError(f"{twins!r} is not true or false", source=source, key="prune.data_order_stability")
    if twins and not rounds:
        raise SpecError("data-order stability compares two copies trained from a rewind point: set prune.rounds",
                        source=source, key="prune.data_order_stability")
    lmc_points = _coerce(d.get("lmc_points", 30), int, "prune.lmc_points", source)
    if lmc_points < 2:
        raise SpecError(f"{lmc_points!r} must be >= 2 (the two endpoints)", source=source, key="prune.lmc_points")
    calibration = d.get("calibration")
    if calibration is not None:
        calibration = _coerce(calibration, int, "prune.calibration", source)
        if calibration < 1:
            raise SpecError(f"{calibration!r} must be >= 1 (training examples each calibrated scorer draws)",
                            source=source, key="prune.calibration")
    layers_in = d["layers"]
    if isinstance(layers_in, list) and all(isinstance(n, str) for n in layers_in):
        layers_in = {n: {} for n in layers_in}  # every layer takes the schedule written under [prune]
    if not isinstance(layers_in, dict) or not layers_in:
        raise SpecError("must be a non-empty table of layer name -> schedule, or a list of layer names",
                        source=source, key="prune.layers")
    timing_keys = ("start", "end", "period")
    if rounds:
        for k in timing_keys:
            where = f"prune.{k}" if k in d else next((f"prune.layers.{n}.{k}" for n, v in layers_in.items()
                                                      if isinstance(v, dict) and k in v), None)
            if where:
                raise SpecError(f"rounds prune at the end of each training run, so '{k}' has no meaning; "
                                f"drop it, or set rounds = 0 to prune during training", source=source, key=where)
    layers = []
    for lname, sched in sorted(layers_in.items()):
        key = f"prune.layers.{lname}"
        if not isinstance(sched, dict):
            raise SpecError(f"{sched!r} is not a table", source=source, key=key)
        _check_keys(sched, LAYER_KEYS, key, source)
        needed = ("fraction",) if rounds else ("fraction", *timing_keys)
        merged = {k: sched.get(k, d.get(k)) for k in needed}
        where = {k: f"{key}.{k}" if k in sched else f"prune.{k}" for k in needed}  # where it was written
        for k, v in merged.items():
            if v is None:
                raise SpecError(f"missing '{k}' (set it here or once under [prune])", source=source, key=f"{key}.{k}")
        frac = _coerce(merged["fraction"], float, where["fraction"], source)
        if not 0 < frac < 1:
            raise SpecError(f"{frac!r} must be in (0, 1)" + (" (cut from what remains, each round)" if rounds else ""),
                            source=source, key=where["fraction"])
        if rounds:
            layers.append((lname, LayerSchedule(frac)))
            continue
        start, end, period = (parse_steps(merged[k], where[k], source) for k in timing_keys)
        if period in ("0it", "0ep", "0%"):
            raise SpecError(f"{period!r} must be > 0", source=source, key=where["period"])
        layers.append((lname, LayerSchedule(frac, start, end, period)))
    if scope == "global" and len({s for _, s in layers}) > 1:
        raise SpecError("a global ranking needs one schedule for all layers; set fraction (and start, end, "
                        "period) once under [prune]", source=source, key="prune.layers")
    return PruneConfig(
        scorer=component_ref(registry, "scorers", d["scorer"], "prune.scorer", source),
        target=component_ref(registry, "targets", d["target"], "prune.target", source),
        effector=component_ref(registry, "effectors", d["effector"], "prune.effector", source),
        layers=tuple(layers), granularity=granularity, scope=scope, rounds=rounds,
        data_order_stability=twins, lmc_points=lmc_points, calibration=calibration,
    )


def _choice(value: Any, allowed: tuple[str, ...], key: str, source: str | None) -> str:
    if value not in allowed:
        raise SpecError(f"{value!r} must be one of {', '.join(allowed)}{closest(str(value), allowed)}",
                        source=source, key=key)
    return value


def rewind_ref(registry: Registry, value: Any, source: str | None) -> ComponentRef:
    """``"weights@2ep"`` is ``{name = "weights", at = "2ep"}``; the step is stored canonically."""
    if isinstance(value, str) and "@" in value:
        name, at = value.split("@", 1)
        value = {"name": name, "at": int(at) if at.strip().isdigit() else at}  # a bare number counts steps
    if isinstance(value, dict) and "at" in value:
        at = parse_steps(value["at"], "rewind.at", source)
        value = {**value, "at": "0it" if at in ("0ep", "0%") else at}  # one spelling of "initialization"
    return component_ref(registry, "rewinds", value, "rewind", source)


def cell_from_config(config: dict[str, Any], seed: int, registry: Registry, source: str | None = None,
                     memo: dict | None = None) -> CellSpec:
    """Validate a merged config dict and build its CellSpec (no training, no model built).

    ``memo`` (one dict for a whole matrix) builds each distinct part (model, train, prune, ...)
    once: the cells of a matrix share most of them."""
    _check_keys(config, CELL_KEYS, "", source)
    for k in ("model", "dataset"):
        if k not in config:
            raise SpecError(f"missing key '{k}'", source=source, key=k)
    metrics = config.get("metrics", [])
    if not isinstance(metrics, list):
        raise SpecError(f"{metrics!r} is not a list", source=source, key="metrics")

    def part(name: str, build: Any) -> Any:
        if memo is None:
            return build()
        key = (name, repr(config.get(name)))  # TOML data: equal reprs, equal values
        if key not in memo:
            memo[key] = build()
        return memo[key]

    return CellSpec(
        model=part("model", lambda: component_ref(registry, "models", config["model"], "model", source)),
        dataset=part("dataset", lambda: component_ref(registry, "datasets", config["dataset"], "dataset", source)),
        train=part("train", lambda: _train(config.get("train", {}), registry, source)),
        prune=part("prune", lambda: _prune(config.get("prune", False), registry, source)),
        rewind=part("rewind", lambda: rewind_ref(registry, config.get("rewind", "gstbench:none"), source)),
        metrics=part("metrics", lambda: tuple(component_ref(registry, "metrics", m, f"metrics[{i}]", source)
                                              for i, m in enumerate(metrics))),
        seed=seed,
    )
