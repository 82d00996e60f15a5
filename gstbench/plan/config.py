"""Cell specs: the typed config of one training run, its validation, canonical JSON and hash.

A cell's identity is the sha256 of its canonical JSON: sorted keys, core defaults filled
in, component names resolved to ``plugin:name`` (with ``@revision`` once a component's
author bumps it), component options only where they differ from the factory default.
A core option added after cell hashes were first pinned is marked ``ADDED_LATER`` and left
out of the canonical JSON while it holds its default, so adding an option never changes old hashes.
An option that cannot change a result (how often a cell checkpoints) is ``NOT_IN_HASH``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from gstbench.components import REQUIRED, id_parts
from gstbench.errors import SpecError, UnknownComponent, closest
from gstbench.plugins import Registry

# Field metadata of a core option added after cell hashes were first pinned: left out of the
# canonical JSON while it holds its default, so results stored before it keep their hashes.
ADDED_LATER = {"added_later": True}
NOT_IN_HASH = {"not_in_hash": True}

STEPS_RE = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")
PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
STEPS_HELP = "write e.g. '500it' (steps), '3ep' (epochs) or '0.5%' (of training)"


def parse_steps(value: Any, key: str, source: str | None = None) -> str:
    """Canonical step string: ``500it`` (steps), ``3ep`` (epochs), ``0.5%`` (of training); an int means steps."""
    if isinstance(value, bool):
        raise SpecError(f"{value!r} is not a step count; {STEPS_HELP}", source=source, key=key)
    if isinstance(value, int) and value >= 0:
        return f"{value}it"
    if isinstance(value, str):
        m = STEPS_RE.match(value)
        if m:
            return f"{int(m.group(1))}{m.group(2)}"
        m = PERCENT_RE.match(value)
        if m and float(m.group(1)) <= 100:
            return f"{float(m.group(1)):g}%"
    raise SpecError(f"{value!r} is not a step count; {STEPS_HELP}", source=source, key=key)


def steps_to_int(value: str, steps_per_epoch: int, total_steps: int) -> int:
    """A canonical step string as a training step; a percentage rounds to the nearest step."""
    m = STEPS_RE.match(value)
    if m:
        n = int(m.group(1))
        return n * steps_per_epoch if m.group(2) == "ep" else n
    m = PERCENT_RE.match(value)
    assert m, value
    return round(float(m.group(1)) / 100 * total_steps)


@dataclass(frozen=True)
class ComponentRef:
    """A component chosen by a cell: its hash id and its non-default options."""

    id: str
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def plugin(self) -> str:
        return id_parts(self.id)[0]

    @property
    def registered_id(self) -> str:
        """The id the registry knows: ``plugin:name``, without the hash's ``@revision``."""
        plugin, name, _ = id_parts(self.id)
        return f"{plugin}:{name}" if plugin else name

    def canonical(self) -> Any:
        return {"id": self.id, "options": dict(self.options)}

    @property
    def label(self) -> str:
        return component_label(self.id, dict(self.options))


def component_label(name: str, options: dict[str, Any]) -> str:
    """A component as tables and progress show it: ``name(k=v,...)``, plugin prefix dropped."""
    _, bare, revision = id_parts(name)
    short = f"{bare}@{revision}" if revision else bare
    if list(options) == ["at"]:  # a rewind step, as users write it: weights@1ep
        return f"{short}@{options['at']}"
    return short + ("(" + ",".join(f"{k}={v}" for k, v in sorted(options.items())) + ")" if options else "")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    epochs: int = 30
    batch_size: int = 128
    milestones: tuple[str, ...] = ()
    gamma: float = 0.1
    # fp32 (the papers) or bf16: autocast of forward passes in training and evaluation
    precision: str = field(default="fp32", metadata=ADDED_LATER)
    # save what a killed cell needs to go on every N epochs (0: never); resumed results are bitwise equal
    checkpoint_every: int = field(default=0, metadata=NOT_IN_HASH)
    # keep the final model (each round's, with rounds) with the cell's training (store/trainings.py), so that
    # metrics can be added later without training again; false keeps no model (--no-models)
    save_model: bool = field(default=True, metadata=NOT_IN_HASH)
    # a training-time penalty added to every step's loss (network slimming's L1 on BatchNorm gamma)
    regularizer: ComponentRef | None = field(default=None, metadata=ADDED_LATER)

    def steps_per_epoch(self, n_train: int) -> int:
        """Optimizer steps in one epoch over ``n_train`` examples: the last batch may be short, never dropped."""
        return -(-n_train // self.batch_size)


@dataclass(frozen=True)
class LayerSchedule:
    """In-training schedule: ``fraction`` in total, events from start to end every period.

    In rounds mode start/end/period are None and ``fraction`` is cut from what remains each round.
    """

    fraction: float
    start: str | None = None
    end: str | None = None
    period: str | None = None


GRANULARITIES = ("filters", "weights")
SCOPES = ("layer", "global")


@dataclass(frozen=True)
class PruneConfig:
    scorer: ComponentRef
    target: ComponentRef
    effector: ComponentRef
    layers: tuple[tuple[str, LayerSchedule], ...]
    # filters: whole output channels (structured); weights: individual weights (unstructured)
    granularity: str = field(default="filters", metadata=ADDED_LATER)
    # layer: each layer loses its own fraction; global: one ranking over all layers' units
    scope: str = field(default="layer", metadata=ADDED_LATER)
    # 0: prune during training on the schedule; R >= 1: train, prune, rewind, retrain, R times
    rounds: int = field(default=0, metadata=ADDED_LATER)
    # rounds mode: train a second copy from each rewind point with another data order, for LMC
    data_order_stability: bool = field(default=False, metadata=ADDED_LATER)
    lmc_points: int = field(default=30, metadata=ADDED_LATER)


@dataclass(frozen=True)
class CellSpec:
    model: ComponentRef
    dataset: ComponentRef
    train: TrainConfig
    prune: PruneConfig | None
    rewind: ComponentRef
    metrics: tuple[ComponentRef, ...]
    seed: int
    # An option added later is declared as field(default=..., metadata=ADDED_LATER):
    # it stays out of the canonical JSON while it holds its default (tests/test_hashes.py).

    # ---- identity (computed once: a spec is frozen, and a large matrix asks thousands of times) ----
    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON data (what its hash is computed on); one shared dict: read it, never change it."""
        return _canonical(self)  # computed once, kept on the spec (_CANONICAL_CACHE)

    def canonical_json(self) -> str:
        return canonical_json(self.canonical())

    @functools.cached_property
    def hash(self) -> str:
        return digest(self.canonical())

    @property
    def short_hash(self) -> str:
        return short_hash(self.hash)

    @functools.cached_property
    def training_hash(self) -> str:
        """The identity of the cell's training: its hash without its metrics, which never change training
        (tests/test_reuse.py). Cells that differ only in their metrics share one stored training."""
        return self.training_spec.hash

    @functools.cached_property
    def training_spec(self) -> CellSpec:
        """This cell without its metrics: the spec its stored training is kept under."""
        if not self.metrics:
            return self
        spec = dataclasses.replace(self, metrics=())
        spec.__dict__[_CANONICAL_CACHE] = {**self.canonical(), "metrics": []}
        return spec

    @property
    def planned_epochs(self) -> int:
        """The epochs its progress counts: every round's training, twice with a data-order twin."""
        rounds = self.prune.rounds if self.prune else 0
        copies = 2 if self.prune and self.prune.data_order_stability else 1
        return self.train.epochs * (rounds + 1) * copies

    def with_seed(self, seed: int) -> CellSpec:
        """This configuration at ``seed`` (its canonical form reused, not recomputed)."""
        spec = dataclasses.replace(self, seed=seed)
        spec.__dict__[_CANONICAL_CACHE] = {**self.canonical(), "seed": seed}
        return spec

    @functools.cached_property
    def config_hash(self) -> str:
        """Identity of the configuration across seeds (the leaderboard's row)."""
        return config_key(self.canonical())


HASH_SHOWN = 16  # a hash as directories, tables and trackers name it: its first 16 hex digits


def short_hash(full: str) -> str:
    """A cell's (or configuration's, or parent's) hash as its directory and every table name it."""
    return str(full)[:HASH_SHOWN]


def canonical_json(data: Any) -> str:
    """The one JSON form every identity is computed on: sorted keys, no spaces."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def digest(data: Any) -> str:
    """sha256 of ``data``'s canonical JSON (cells, configurations, parents)."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def config_key(canonical: dict[str, Any]) -> str:
    """A configuration's identity: the digest of a cell's canonical spec without its seed."""
    return digest({k: v for k, v in canonical.items() if k != "seed"})


_SCALARS = (str, int, float, bool, type(None))
_CANONICAL_CACHE = "_canonical_cache"  # in a frozen part's __dict__, outside its fields (eq, hash, replace)


@functools.lru_cache(maxsize=None)
def _hashed_fields(cls: type) -> tuple[tuple[str, bool, Any], ...]:
    """A dataclass's fields that enter the hash: (name, added later, default)."""
    return tuple((f.name, bool(f.metadata.get("added_later")), f.default) for f in fields(cls)
                 if not f.metadata.get("not_in_hash"))


def _canonical(obj: Any) -> Any:
    if isinstance(obj, _SCALARS):
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        cached = obj.__dict__.get(_CANONICAL_CACHE)  # frozen parts shared by many cells: computed once
        if cached is not None:
            return cached
        if isinstance(obj, ComponentRef):
            out = obj.canonical()
            object.__setattr__(obj, _CANONICAL_CACHE, out)
            return out
        out = {}
        for name, added_later, default in _hashed_fields(type(obj)):
            value = getattr(obj, name)
            if added_later and value == default:
                continue
            out[name] = _canonical(value)
        object.__setattr__(obj, _CANONICAL_CACHE, out)
        return out
    if isinstance(obj, tuple) and obj and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str)
                                              for x in obj):
        return {k: _canonical(v) for k, v in obj}
    if isinstance(obj, (tuple, list)):
        return [_canonical(x) for x in obj]
    return obj


# ---- building a CellSpec from a plain dict (a suite's merged config) ----------------
CELL_KEYS = {"model", "dataset", "train", "prune", "rewind", "metrics"}
PRUNE_KEYS = {"scorer", "target", "effector", "layers", "fraction", "start", "end", "period", "granularity", "scope",
              "rounds",
              "data_order_stability", "lmc_points"}
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
        (cfg.epochs >= 1, "epochs", "must be >= 1"),
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
    if scope == "global" and granularity == "filters":
        raise SpecError("a global ranking of filters can empty a whole layer (filter norms of different layers "
                        "are not comparable); use scope = \"layer\", or granularity = \"weights\"",
                        source=source, key="prune.scope")
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
        data_order_stability=twins, lmc_points=lmc_points,
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
        rewind=part("rewind", lambda: rewind_ref(registry, config.get("rewind", "none"), source)),
        metrics=part("metrics", lambda: tuple(component_ref(registry, "metrics", m, f"metrics[{i}]", source)
                                              for i, m in enumerate(metrics))),
        seed=seed,
    )


def stored_spec(data: dict[str, Any]) -> CellSpec:
    """A stored cell's spec, typed, that keeps the canonical JSON it was read from as its canonical form
    (lists stay lists), so that what the reports print of it is what was stored."""
    spec = spec_from_canonical(data)
    spec.__dict__[_CANONICAL_CACHE] = data
    return spec


def spec_from_canonical(data: dict[str, Any]) -> CellSpec:
    """Rebuild a CellSpec from its stored canonical JSON (spec.json)."""

    def ref(d: dict) -> ComponentRef:
        return ComponentRef(d["id"], tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                  for k, v in d["options"].items())))

    prune = data["prune"]
    return CellSpec(
        model=ref(data["model"]),
        dataset=ref(data["dataset"]),
        train=TrainConfig(**{k: ref(v) if k == "regularizer" else tuple(v) if isinstance(v, list) else v
                             for k, v in data["train"].items()}),
        prune=None if prune is None else PruneConfig(
            scorer=ref(prune["scorer"]), target=ref(prune["target"]), effector=ref(prune["effector"]),
            layers=tuple((k, LayerSchedule(**v)) for k, v in sorted(prune["layers"].items())),
            **{k: v for k, v in prune.items() if k not in ("scorer", "target", "effector", "layers")}),
        rewind=ref(data["rewind"]),
        metrics=tuple(ref(m) for m in data["metrics"]),
        seed=data["seed"],
    )
