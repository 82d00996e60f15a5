"""A cell's result as typed data: the engine builds it, the store writes and reads it, reports consume it.

On disk a result is ``result.json`` plus one line per pruning event in ``events.jsonl``
(see store.py); ``to_json`` and ``from_json`` keep that format, so every directory written
since 0.1.0 stays readable. A part that a kind of cell does not have is absent from the
file (no ``rounds`` without rounds, no ``error`` in an ok result), and None or empty here.

Metric values stay a mapping from name to a JSON value (a number, or a list or table of
numbers): metrics are plugins, and each names its own keys.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from gstbench.plan.config import CellSpec

MetricValues = dict[str, Any]  # metric key -> number, list of numbers, or table (dict) of them
CORE_METRICS = ("best_test_acc", "final_test_acc", "stability", "train_acc", "gap", "iterative_rate")  # every ok cell
# The better direction of the engine's own metrics (metric plugins declare theirs when they register).
ENGINE_BETTER = {"stability": "higher", "final_test_acc": "higher", "best_test_acc": "higher", "train_acc": "higher",
                 "gap": "lower", "final_test_loss": "lower", "train_loss": "lower", "lmc_barrier": "lower",
                 "mean_instability": "lower"}


def _check_metrics(metrics: dict[str, Any]) -> None:
    """An ok result has the engine's core numbers (every report reads them); other metrics are read where used."""
    for key in CORE_METRICS:
        value = metrics.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ResultFormatError(f"metric '{key}' of an ok result must be a number, not {value!r}")


class ResultFormatError(ValueError):
    """A stored result that does not have the shape of one (the store names the file)."""


def _get(data: Any, key: str, kinds: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    """``data[key]`` checked against ``kinds``; an optional key (a ``default``) may be absent or null."""
    if not isinstance(data, dict):
        raise ResultFormatError(f"{where} must be a JSON object, not {type(data).__name__}")
    value = data.get(key)
    if value is None:
        if default is ...:
            raise ResultFormatError(f"{where} has no '{key}'")
        return default
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = {int: "an integer", float: "a number", str: "a string", dict: "an object", list: "a list",
                 bool: "true or false"}
        wanted = " or ".join(names[k] for k in kinds if not (k is int and float in kinds))
        raise ResultFormatError(f"'{key}' in {where} must be {wanted}, not {type(value).__name__}")
    return value


NUMBER = (int, float)


@dataclass
class Curves:
    """Per-epoch points of one training run (one list per quantity, equal lengths).

    ``test_acc`` and ``test_loss`` are None at epochs that were not evaluated (a second copy
    evaluates only after its last epoch).
    """

    epoch: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc_running: list[float] = field(default_factory=list)
    test_acc: list[float | None] = field(default_factory=list)
    test_loss: list[float | None] = field(default_factory=list)

    def add(self, **point: Any) -> None:
        for name, value in point.items():
            getattr(self, name).append(value)

    def to_json(self) -> dict[str, list]:
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Any, where: str = "curves") -> "Curves":
        curves = {f.name: list(_get(data, f.name, list, where)) for f in fields(cls)}
        for name, values in curves.items():  # numbers (an evaluation may be missing: null), nothing else
            if any(v is not None and (isinstance(v, bool) or not isinstance(v, NUMBER)) for v in values):
                raise ResultFormatError(f"'{name}' in {where} must be a list of numbers")
        if len({len(values) for values in curves.values()}) > 1:  # each point adds one value to every list
            raise ResultFormatError(f"the lists in {where} must have one value per point, all of one length")
        return cls(**curves)


@dataclass
class LayerPruned:
    """What one pruning event did to one layer: ``count`` units removed, ``remaining`` alive after it."""

    count: int
    remaining: int
    event: int  # this event's index in the layer's schedule
    of: int  # the layer's number of events
    pruned: list[int] | None = None  # the filters removed (original indices); not kept for single weights

    def to_json(self) -> dict[str, Any]:
        out = {"count": self.count, "remaining": self.remaining, "event": self.event, "of": self.of}
        if self.pruned is not None:
            out["pruned"] = self.pruned
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> "LayerPruned":
        return cls(*(_get(data, k, int, where) for k in ("count", "remaining", "event", "of")),
                   pruned=_get(data, "pruned", list, where, None))


@dataclass
class PruningEvent:
    """One pruning event (REFERENCE.md section 1): test accuracy and loss just before and after it."""

    step: int
    t_pre: float
    t_post: float
    loss_pre: float
    loss_post: float
    instability: float  # (t_pre - t_post) / t_pre
    layers: dict[str, LayerPruned]
    epoch: int | None = None  # an event during training: the epoch it falls in
    round: int | None = None  # an event between prune-retrain rounds: the round it starts
    tied: float | None = None  # the share of alive units whose score tied with another's (older results: None)

    def to_json(self) -> dict[str, Any]:
        out = {"step": self.step, "t_pre": self.t_pre, "t_post": self.t_post, "loss_pre": self.loss_pre,
               "loss_post": self.loss_post, "instability": self.instability,
               "layers": {name: layer.to_json() for name, layer in self.layers.items()}}
        for key in ("epoch", "round", "tied"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "an event") -> "PruningEvent":
        layers = _get(data, "layers", dict, where)
        return cls(_get(data, "step", int, where),
                   *(_get(data, k, NUMBER, where) for k in ("t_pre", "t_post", "loss_pre", "loss_post", "instability")),
                   layers={name: LayerPruned.from_json(v, f"layer '{name}' of {where}") for name, v in layers.items()},
                   epoch=_get(data, "epoch", int, where, None), round=_get(data, "round", int, where, None),
                   tied=_get(data, "tied", NUMBER, where, None))


@dataclass
class ModeConnectivity:
    """Test error along the straight path between two copies (REFERENCE.md section 3, LMC)."""

    alpha: list[float]
    test_error: list[float]
    barrier: float  # max error on the path minus the endpoints' mean
    points: int

    def to_json(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "test_error": self.test_error, "barrier": self.barrier, "points": self.points}

    @classmethod
    def from_json(cls, data: Any, where: str) -> "ModeConnectivity":
        return cls(_get(data, "alpha", list, where), _get(data, "test_error", list, where),
                   _get(data, "barrier", NUMBER, where), _get(data, "points", int, where))


@dataclass
class Round:
    """One prune-retrain round (round 0 trains the parent); the twin's parts only with data-order stability."""

    round: int
    sparsity: float  # of the pruned layers, after this round's pruning
    remaining: dict[str, int]  # alive units per layer
    start_step: int  # where the rewind restarted training
    replay_lr: bool
    final_test_acc: float
    best_test_acc: float
    curves: Curves
    metrics: MetricValues | None = None  # the cell's metrics at the round's end (when it has any)
    twin_final_test_acc: float | None = None
    weight_distance: float | None = None
    lmc: ModeConnectivity | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"round": self.round, "sparsity": self.sparsity, "remaining": self.remaining,
               "start_step": self.start_step, "replay_lr": self.replay_lr, "final_test_acc": self.final_test_acc,
               "best_test_acc": self.best_test_acc, "curves": self.curves.to_json()}
        if self.metrics is not None:
            out["metrics"] = self.metrics
        if self.lmc is not None:
            out.update(twin_final_test_acc=self.twin_final_test_acc, weight_distance=self.weight_distance,
                       lmc=self.lmc.to_json())
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> "Round":
        lmc = _get(data, "lmc", dict, where, None)
        return cls(_get(data, "round", int, where), _get(data, "sparsity", NUMBER, where),
                   _get(data, "remaining", dict, where), _get(data, "start_step", int, where),
                   _get(data, "replay_lr", bool, where), _get(data, "final_test_acc", NUMBER, where),
                   _get(data, "best_test_acc", NUMBER, where), Curves.from_json(_get(data, "curves", dict, where),
                                                                                f"the curves of {where}"),
                   metrics=_get(data, "metrics", dict, where, None),
                   twin_final_test_acc=_get(data, "twin_final_test_acc", NUMBER, where, None),
                   weight_distance=_get(data, "weight_distance", NUMBER, where, None),
                   lmc=ModeConnectivity.from_json(lmc, f"the LMC of {where}") if lmc is not None else None)


@dataclass
class Environment:
    """What a result was computed on."""

    gstbench: str
    torch: str
    device: str
    python: str
    host: str
    threads: int | None  # CPU numbers are bitwise reproducible for the same thread count
    plugins: dict[str, str] = field(default_factory=dict)  # plugin -> version, of the components the cell used

    @classmethod
    def here(cls, device: str, plugins: dict[str, str] | None = None) -> "Environment":
        import torch

        from gstbench import __version__

        return cls(__version__, torch.__version__, device, platform.python_version(), platform.node(),
                   torch.get_num_threads(), dict(plugins or {}))

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        if not self.plugins:  # results written before plugin versions were recorded read back unchanged
            del out["plugins"]
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "environment") -> "Environment":
        plugins = _get(data, "plugins", dict, where, {})
        return cls(*(_get(data, k, str, where, "") for k in ("gstbench", "torch", "device", "python", "host")),
                   threads=_get(data, "threads", int, where, None),
                   plugins={str(k): str(v) for k, v in plugins.items()})


@dataclass
class CellResult:
    """A cell's outcome: 'ok' with its metrics, curves, events (and rounds), or 'failed' with its error."""

    status: Literal["ok", "failed"]
    hash: str
    seed: int
    wall_s: float
    environment: Environment
    metrics: MetricValues = field(default_factory=dict)
    events: list[PruningEvent] = field(default_factory=list)
    curves: Curves | None = None  # the last training run's (the last round's, with rounds)
    rounds: list[Round] = field(default_factory=list)
    parent: Literal["trained", "cached"] | None = None  # how the unpruned run this cell began with was had
    steps_per_epoch: int | None = None
    total_steps: int | None = None
    timing: dict[str, float] = field(default_factory=dict)  # seconds per part: train_s, eval_s, prune_s, ...
    error: str | None = None
    traceback: str | None = None
    # the stored training (trainings/<key16> of a run directory) this cell measured instead of training;
    # None: the cell trained itself
    training_from: str | None = None
    # metrics added by `gstbench measure` after the cell finished: metric (as named there) -> its numeric keys
    measured_later: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, spec: Any, error: str, trace: str = "", device: str = "", wall_s: float = 0.0) -> "CellResult":
        """A cell that failed: its own exception, or its worker died (``spec`` needs ``hash`` and ``seed``)."""
        return cls("failed", spec.hash, spec.seed, round(wall_s, 3), Environment.here(device), error=error,
                   traceback=trace)

    def to_json(self) -> dict[str, Any]:
        """result.json's content (the events go to events.jsonl: ``events_json``)."""
        out: dict[str, Any] = {"status": self.status, "hash": self.hash, "seed": self.seed, "wall_s": self.wall_s,
                               "environment": self.environment.to_json()}
        if self.ok:
            out.update(metrics=self.metrics, parent=self.parent,
                       curves=self.curves.to_json() if self.curves is not None else None,
                       steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, timing=self.timing)
            if self.rounds:
                out["rounds"] = [r.to_json() for r in self.rounds]
            if self.training_from is not None:
                out["training_from"] = self.training_from
            if self.measured_later:
                out["measured_later"] = {k: list(v) for k, v in self.measured_later.items()}
        else:
            out.update(error=self.error, traceback=self.traceback or "")
        return out

    def events_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events]

    @classmethod
    def from_json(cls, data: Any, events: list[Any] = ()) -> "CellResult":
        """Read result.json's content and events.jsonl's lines; ResultFormatError names what is wrong."""
        where = "the result"
        status = _get(data, "status", str, where)
        if status not in ("ok", "failed"):
            raise ResultFormatError(f"'status' in {where} must be 'ok' or 'failed', not {status!r}")
        curves = _get(data, "curves", dict, where, None)
        rounds = _get(data, "rounds", list, where, None) or []
        parent = _get(data, "parent", str, where, None)
        if parent not in (None, "trained", "cached"):
            raise ResultFormatError(f"'parent' in {where} must be 'trained' or 'cached', not {parent!r}")
        metrics = _get(data, "metrics", dict, where, None) or {}
        if status == "ok":
            _check_metrics(metrics)
        timing = _get(data, "timing", dict, where, None) or {}
        for part in timing:  # the report sums them
            _get(timing, part, NUMBER, f"'timing' in {where}")
        return cls(status, _get(data, "hash", str, where), _get(data, "seed", int, where),
                   _get(data, "wall_s", NUMBER, where, 0.0),
                   Environment.from_json(_get(data, "environment", dict, where, {})),
                   metrics=metrics,
                   events=[PruningEvent.from_json(e, f"line {i + 1} of events.jsonl") for i, e in enumerate(events)],
                   curves=Curves.from_json(curves) if curves is not None else None,
                   rounds=[Round.from_json(r, f"round entry {i}") for i, r in enumerate(rounds)],
                   parent=parent, steps_per_epoch=_get(data, "steps_per_epoch", int, where, None),
                   total_steps=_get(data, "total_steps", int, where, None),
                   timing=timing,
                   error=_get(data, "error", str, where, None), traceback=_get(data, "traceback", str, where, None),
                   training_from=_get(data, "training_from", str, where, None),
                   measured_later=_measured_later(_get(data, "measured_later", dict, where, None) or {}))


def _measured_later(data: dict[str, Any]) -> dict[str, list[str]]:
    for name, keys in data.items():
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ResultFormatError(f"'measured_later' of the result: metric '{name}' must list its keys")
    return {name: list(keys) for name, keys in data.items()}


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric final metrics, nested tables flattened with '/' (lists and text left out)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            out.update({f"{key}/{k}": v for k, v in scalars(value).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


@dataclass
class StoredTraining:
    """A training found on disk (store/trainings.py finds it): its result (of the training's spec) and the
    models kept with it; what a work order to measure a cell carries to the engine."""

    directory: Path
    result: CellResult
    final_model: Path | None
    round_models: list[Path] | None  # round 0 .. R; None when any is missing (or the cell has no rounds)

    def serves(self, spec: CellSpec) -> bool:
        """Whether ``spec``'s metrics can be computed from what is stored (a cell without metrics needs no model)."""
        if not spec.metrics:
            return True
        if spec.prune is not None and spec.prune.rounds:
            return self.round_models is not None
        return self.final_model is not None
