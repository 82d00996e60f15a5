"""Suites: TOML files that expand into a validated matrix of cells.

A suite has a ``base`` config (optionally starting from the base of the suite it
``extends``, at the same scale), ``axes`` (dotted key -> list of values) swept as a
product, ``include`` entries (extra configs, e.g. an unpruned baseline, not crossed with
the axes), a number of ``seeds``, and ``scales``: each scale may override ``seeds``,
deep-merge into ``base``, replace ``axes`` or ``include``, or say it is ``unavailable``.
Everything is checked before any training: unknown keys, bad values, unknown plugin
names, layer names the model does not declare, impossible component combinations.
"""

from __future__ import annotations

import copy
import itertools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstbench.components import REMOVES_UNITS
from gstbench.config import CellSpec, cell_from_config
from gstbench.errors import GstbenchError, SpecError, UnknownComponent, closest

SUITE_KEYS = {"name", "description", "extends", "seeds", "base", "axes", "include", "scales", "leaderboard"}
SCALE_KEYS = {"description", "seeds", "base", "axes", "include", "unavailable"}
LEADERBOARD_KEYS = {"rank"}
DEFAULT_SCALE = "quick"


@dataclass
class Suite:
    name: str
    source: str
    description: str
    scale: str
    scales: list[str]
    seeds: int
    axes: dict[str, list[Any]]
    cells: list[CellSpec] = field(default_factory=list)
    rank: str = "best_test_acc"

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "description": self.description, "scale": self.scale,
                "scales": self.scales, "seeds": self.seeds, "axes": self.axes, "rank": self.rank,
                "configurations": len({c.config_hash for c in self.cells}), "cells": len(self.cells)}


def find_suite(registry: Any, name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise GstbenchError(f"suite file {path} does not exist")
        return path
    try:
        return Path(registry.get("suites", name_or_path).factory)
    except UnknownComponent as exc:
        raise GstbenchError(f"{exc} (or pass a path to a .toml suite file)") from None


def _deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _set_path(config: dict, dotted: str, value: Any, source: str, key: str) -> None:
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise SpecError(f"cannot set '{dotted}': '{part}' is {nxt!r}, not a table", source=source, key=key)
        node = nxt
    node[parts[-1]] = copy.deepcopy(value)


def _check(d: Any, allowed: set[str], where: str, source: str) -> None:
    if not isinstance(d, dict):
        raise SpecError(f"{d!r} is not a table", source=source, key=where)
    for k in d:
        if k not in allowed:
            raise SpecError(f"unknown key '{k}'{closest(k, allowed)}; known keys: {', '.join(sorted(allowed))}",
                            source=source, key=f"{where}.{k}" if where else k)


def _merged_base(registry: Any, raw: dict, scale: str, source: str, seen: tuple[str, ...] = ()) -> dict:
    """A suite's base at ``scale``: the base of the suite it ``extends``, its own, its scale's."""
    base: dict = {}
    parent_name = raw.get("extends")
    if parent_name is not None:
        if not isinstance(parent_name, str):
            raise SpecError(f"{parent_name!r} is not a suite name or path", source=source, key="extends")
        me = str(Path(source).resolve())
        relative = Path(source).parent / parent_name  # a path is relative to the extending file
        try:
            path = find_suite(registry, str(relative) if parent_name.endswith(".toml") else parent_name).resolve()
            parent = tomllib.loads(path.read_text())
        except (GstbenchError, OSError, tomllib.TOMLDecodeError) as exc:
            raise SpecError(f"cannot extend '{parent_name}': {exc}", source=source, key="extends") from None
        if str(path) in seen or str(path) == me:
            raise SpecError(f"'{parent_name}' extends itself (through {' -> '.join(seen)})", source=source,
                            key="extends")
        base = _merged_base(registry, parent, scale, str(path), seen + (me,))
    base = _deep_merge(base, raw.get("base", {}))
    return _deep_merge(base, raw.get("scales", {}).get(scale, {}).get("base", {}))


def load_suite(registry: Any, name_or_path: str, scale: str = DEFAULT_SCALE, seeds: int | None = None,
               overrides: dict[str, Any] | None = None) -> Suite:
    """Read, merge and validate a suite; raises SpecError naming the file, key and value at fault.

    ``overrides`` (dotted key -> value, e.g. ``{"prune.scorer": "l2"}``) are set in every
    pruned configuration after the axes are expanded; configurations that become equal
    are run once.
    """
    path = find_suite(registry, name_or_path)
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"not a readable TOML file: {exc}", source=source) from None
    _check(raw, SUITE_KEYS, "", source)
    scales = raw.get("scales", {})
    _check(scales, set(scales), "scales", source)
    if scale not in scales:
        raise SpecError(f"suite has no scale '{scale}'{closest(scale, scales)}; its scales: {', '.join(scales)}",
                        source=source, key="scales")
    sc = scales[scale]
    _check(sc, SCALE_KEYS, f"scales.{scale}", source)
    if "unavailable" in sc:
        raise GstbenchError(f"scale '{scale}' of suite '{raw.get('name', path.stem)}' is not available yet: "
                            f"{sc['unavailable']}")
    base = _merged_base(registry, raw, scale, source)
    axes = dict(raw.get("axes", {}))
    axes.update(sc.get("axes", {}))
    includes = sc.get("include", raw.get("include", []))
    n_seeds = seeds if seeds is not None else sc.get("seeds", raw.get("seeds", 1))
    if isinstance(n_seeds, bool) or not isinstance(n_seeds, int) or n_seeds < 1:
        raise SpecError(f"{n_seeds!r} must be a whole number >= 1", source=source, key="seeds")
    for k, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{values!r} must be a non-empty list of values", source=source, key=f"axes.{k}")
    if not isinstance(includes, list) or not all(isinstance(i, dict) for i in includes):
        raise SpecError("must be a list of tables ([[include]])", source=source, key="include")
    leaderboard = raw.get("leaderboard", {})
    _check(leaderboard, LEADERBOARD_KEYS, "leaderboard", source)

    configs: list[dict] = []
    names = list(axes)
    for combo in itertools.product(*(axes[n] for n in names)):
        cfg = copy.deepcopy(base)
        for n, v in zip(names, combo):
            _set_path(cfg, n, v, source, f"axes.{n}")
        configs.append(cfg)
    for i, inc in enumerate(includes):
        cfg = copy.deepcopy(base)
        for n, v in inc.items():
            _set_path(cfg, n, v, source, f"include[{i}].{n}")
        configs.append(cfg)

    for cfg in configs:
        for n, v in (overrides or {}).items():
            if cfg.get("prune", False) is not False or not n.startswith("prune."):
                _set_path(cfg, n, v, source, n)
    cells = list({c.hash: c for c in (cell_from_config(cfg, seed, registry, source)
                                      for cfg in configs for seed in range(n_seeds))}.values())
    validate_cells(cells, registry, source)
    return Suite(name=raw.get("name", path.stem), source=source, description=raw.get("description", ""),
                 scale=scale, scales=list(scales), seeds=n_seeds, axes=axes, cells=cells,
                 rank=leaderboard.get("rank", "best_test_acc"))


def validate_cells(cells: list[CellSpec], registry: Any, source: str | None = None) -> None:
    """Checks that need the model or data: layer names, schedules, effector/layer compatibility."""
    from gstbench.engine import build, build_model, load_data
    from gstbench.schedule import build_schedule

    checked: set[str] = set()
    models: dict[str, Any] = {}
    for spec in cells:
        if spec.prune is None:
            continue
        key = spec.config_hash
        if key in checked:
            continue
        checked.add(key)
        data = load_data(registry, spec)
        mkey = f"{spec.model.canonical()}{spec.dataset.canonical()}"
        if mkey not in models:
            models[mkey] = build_model(registry, spec, data)
        model = models[mkey]
        declared = getattr(model, "prunable_layers", {})
        for lname, _ in spec.prune.layers:
            if lname not in declared:
                raise SpecError(f"model {spec.model.id} has no prunable layer '{lname}'{closest(lname, declared)}; "
                                f"its prunable layers: {', '.join(declared) or 'none'}",
                                source=source, key=f"prune.layers.{lname}")
        steps_per_epoch = -(-data.x_train.shape[0] // spec.train.batch_size)
        n_filters = {n: model.get_submodule(declared[n].conv).weight.shape[0] for n, _ in spec.prune.layers}
        try:
            build_schedule(spec.prune, n_filters, steps_per_epoch, spec.train.epochs * steps_per_epoch)
        except SpecError as exc:
            raise SpecError(str(exc), source=source) from None
        effector = registry.get("effectors", spec.prune.effector.id.split("@")[0])
        if REMOVES_UNITS in effector.capabilities:
            instance = build(registry, "effectors", spec.prune.effector)
            check = getattr(instance, "check_layer", None)
            for lname, _ in spec.prune.layers:
                problem = check and check(model, lname, declared[lname], data.x_train[:2])
                if problem:
                    raise SpecError(problem, source=source, key=f"prune.layers.{lname}")
