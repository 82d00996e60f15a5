"""Cell specs: the typed config of one training run, its canonical JSON and hash (parse.py reads and checks it).

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
import re
from dataclasses import dataclass, field, fields
from typing import Any

from gstbench.components import id_parts
from gstbench.errors import SpecError

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
    # how many training examples every calibrated scorer and effector draws (None: each its own count)
    calibration: int | None = field(default=None, metadata=ADDED_LATER)


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
