"""Suites: TOML files that expand into a validated matrix of cells.

A suite has a ``base`` config (optionally starting from the suite it ``extends``, whose
tables it inherits: ``_inherited``), ``axes`` (dotted key -> list of values) swept as a
product, ``include`` entries (extra configs, e.g. an unpruned baseline, not crossed with
the axes), ``seeds`` (a count, a range or a list), ``claims`` (the paper findings it tests,
shared by every scale) with the ``groups`` of configurations they compare, and ``scales``:
each scale may override ``seeds``, deep-merge into ``base``, replace ``axes``,
``include`` or named ``groups``, or say it is ``unavailable``. Everything is checked
before any training: unknown keys, bad values, unknown plugin names, layer names the
model does not declare, impossible component combinations, claims that name no run.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from gstbench.plan.checks import check_flags, validate_cells
from gstbench.plan.claims import check_claims, parse_claims, parse_groups
from gstbench.plan.config import CellSpec
from gstbench.plan.extends import with_parent
from gstbench.plan.parse import cell_from_config
from gstbench.errors import GstbenchError, SpecError, UnknownComponent, closest
from gstbench.names import name_problem
from gstbench.plan.seeds import count_seeds, parse_seeds
from gstbench.plan.selection import declared_scope, label_at
from gstbench.plan.log_targets import LogTarget, parse_logging_table
from gstbench.plugins import Registry

SEEDS = (int, str, list)
# the keys of a suite file, a scale and a leaderboard table, with the type of each value
SUITE_KEYS = {"name": str, "description": str, "extends": str, "seeds": SEEDS, "base": dict, "axes": dict,
              "include": list, "scales": dict, "leaderboard": dict, "groups": dict, "claims": list,
              "logging": dict}
SCALE_KEYS = {"description": str, "seeds": SEEDS, "base": dict, "axes": dict, "include": list, "unavailable": str,
              "groups": dict}
LEADERBOARD_KEYS = {"rank": str, "question": str, "groups": dict, "split": str, "columns": list, "correlate": list,
                    "delta": (int, float), "levels": str}
TYPE_NAMES = {str: "a string", int: "a whole number", float: "a number", list: "a list", dict: "a table"}
DEFAULT_SCALE = "quick"
MAX_CELLS = 1_000_000  # a matrix larger than this is refused before it is built (`--max-cells` raises it)


# Prune potential's tolerance (REFERENCE.md): the accuracy a pruned network may lose, 0.5 percentage points.
PRUNE_POTENTIAL_DELTA = 0.005


@dataclass
class Suite:
    name: str
    source: str
    description: str
    scale: str
    scales: list[str]
    seeds: list[int]
    axes: dict[str, list[Any]]
    cells: list[CellSpec] = field(default_factory=list)
    rank: str = "best_test_acc"
    # A question the leaderboard answers by comparing groups of configurations (reports/report.py).
    question: dict[str, Any] | None = None
    columns: list[str] = field(default_factory=list)  # extra metric columns of the leaderboard
    correlate: list[list[str]] = field(default_factory=list)  # metric pairs correlated across pruned runs
    delta: float = PRUNE_POTENTIAL_DELTA
    # the dotted key of the compression level: a leaderboard per level and a rank summary (reports/methods.py)
    levels: str | None = None
    claims: list[dict[str, Any]] = field(default_factory=list)  # the paper findings it tests (plan/claims.py)
    groups: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # named configurations, at this scale
    axis_labels: dict[str, list[str]] = field(default_factory=dict)  # each axis's values as stored runs label them
    logging: list[LogTarget] = field(default_factory=list)  # [logging]: the experiment trackers every run logs to
    # each component key and the values the suite file declares there (no command-line override): the runs its
    # claims test; a run of another value (a scorer added with --scorer) is tested in a claim row of its own
    scope: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "description": self.description, "scale": self.scale,
                "scales": self.scales, "seeds": self.seeds, "axes": self.axes, "rank": self.rank,
                "question": self.question, "columns": self.columns, "correlate": self.correlate, "delta": self.delta,
                "levels": self.levels, "claims": self.claims, "groups": self.groups, "axis_labels": self.axis_labels,
                "scope": self.scope,
                "configurations": len({c.config_hash for c in self.cells}), "cells": len(self.cells)}


def suite_summary(path: Path | str) -> tuple[list[str], str]:
    """A suite file's scales and description, for listings (an unreadable file says why instead)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        return [], f"unreadable: {exc}"
    return list(raw.get("scales", {})), raw.get("description", "")


def find_suite(registry: Registry, name_or_path: str) -> Path:
    path = Path(name_or_path)
    # A file path, or anything ending in .toml; a directory named like a suite (e.g. its
    # result directory, `--out rate`) must not hide the built-in name.
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise GstbenchError(f"suite file {path} does not exist")
        return path
    try:
        return Path(registry.get("suites", name_or_path).factory)
    except UnknownComponent as exc:
        raise GstbenchError(f"{exc} (or pass a path to a .toml suite file)") from None


def _deep_merge(base: dict, override: dict) -> dict:
    """Tables merge key by key, except where the override names its own: a component table (one with
    ``name``) and ``layers`` replace the base's (the quick model's layers mean nothing on the paper's)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict) and k != "layers" and "name" not in v
        out[k] = _deep_merge(out[k], v) if merge else copy.deepcopy(v)
    return out


def _set_path(config: dict, dotted: str, value: Any, source: str, key: str) -> None:
    parts = dotted.split(".")
    node = config
    for part in parts[:-1]:
        nxt = node.get(part)
        if nxt is None:
            nxt = {}
        if not isinstance(nxt, dict):
            raise SpecError(f"cannot set '{dotted}': '{part}' is {nxt!r}, not a table", source=source, key=key)
        node[part] = node = dict(nxt)  # a copy: the table may be shared with other configurations
    node[parts[-1]] = value


def _check(d: Any, allowed: set[str] | dict[str, Any], where: str, source: str) -> None:
    """``d`` is a table with only ``allowed`` keys; where ``allowed`` maps keys to types, of those types."""
    if not isinstance(d, dict):
        raise SpecError(f"{d!r} is not a table", source=source, key=where)
    for k, v in d.items():
        key = f"{where}.{k}" if where else k
        if k not in allowed:
            raise SpecError(f"unknown key '{k}'{closest(k, allowed)}; known keys: {', '.join(sorted(allowed))}",
                            source=source, key=key)
        types = allowed[k] if isinstance(allowed, dict) else dict
        types = types if isinstance(types, tuple) else (types,)
        if not isinstance(v, types) or isinstance(v, bool):
            wanted = " or ".join(TYPE_NAMES[t] for t in types)
            raise SpecError(f"{v!r} is not {wanted}", source=source, key=key)


def _parent(registry: Registry, raw: dict, source: str, seen: tuple[str, ...]) -> tuple[dict, str] | None:
    """The tables of the suite file ``raw`` extends, and its path (None when it extends none)."""
    parent_name = raw.get("extends")
    if parent_name is None:
        return None
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
    _check(parent, SUITE_KEYS, "", str(path))
    return parent, str(path)


def _merged_base(registry: Registry, raw: dict, scale: str, source: str, seen: tuple[str, ...] = ()) -> dict:
    """A suite's base at ``scale``: the base of the suite it ``extends``, its own, its scale's."""
    base: dict = {}
    parent = _parent(registry, raw, source, seen)
    if parent is not None:
        base = _merged_base(registry, parent[0], scale, parent[1], seen + (str(Path(source).resolve()),))
    base = _deep_merge(base, raw.get("base", {}))
    return _deep_merge(base, raw.get("scales", {}).get(scale, {}).get("base", {}))


def _inherited(registry: Registry, raw: dict, source: str, seen: tuple[str, ...] = ()) -> dict:
    """A suite file's tables with what it ``extends`` filled in (plan/extends.py has the rules)."""
    parent = _parent(registry, raw, source, seen)
    if parent is None:
        return raw
    return with_parent(_inherited(registry, parent[0], parent[1], seen + (str(Path(source).resolve()),)), raw)


def load_suite(registry: Registry, name_or_path: str, scale: str = DEFAULT_SCALE, seeds: Any = None,
               overrides: dict[str, Any] | None = None, metrics: list[str] = (), placeholders: bool = False,
               max_cells: int = MAX_CELLS, build_models: bool = True) -> Suite:
    """Read, merge and validate a suite; raises SpecError naming the file, key and value at fault.

    ``overrides`` (dotted key -> value, e.g. ``{"prune.scorer": "l2"}``) are set in every
    pruned configuration after the axes are expanded; configurations that become equal
    are run once; a scorer override of a suite with a ``prune.scorer`` axis joins that axis instead.
    ``seeds`` replaces the suite's seeds: a count, a "low-high" range or a list
    (gstbench.plan.seeds). ``metrics`` are added to every configuration (``gstbench run --metric``).
    ``placeholders`` checks against the datasets' stand-ins where they offer one (no files needed).
    A suite of more than ``max_cells`` cells is refused before any cell is built. ``build_models=False`` checks
    the models on their declared shapes, without torch (plan/checks.py; ``gstbench suites show``).
    """
    with collector_paused():
        return _load_suite(registry, name_or_path, scale, seeds, overrides, metrics, placeholders, max_cells,
                           build_models)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a matrix is built: with torch loaded, each full
    collection walks millions of objects, and building 10,000 cells (no cycles) set off enough of
    them to double the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_suite(registry: Registry, name_or_path: str, scale: str, seeds: Any, overrides: dict[str, Any] | None,
                metrics: list[str], placeholders: bool, max_cells: int, build_models: bool) -> Suite:
    check_flags(registry, overrides, metrics)
    path = find_suite(registry, name_or_path)
    source = str(path)
    raw, name = _read_suite_file(path)
    raw = _inherited(registry, raw, source)
    scales, sc = _scale_table(raw, scale, name, path)
    base = _merged_base(registry, raw, scale, source)
    axes, overrides = _axes(registry, raw, sc, overrides, source)
    includes = sc.get("include", raw.get("include", []))
    if not isinstance(includes, list) or not all(isinstance(i, dict) for i in includes):
        raise SpecError("must be a list of tables ([[include]])", source=source, key="include")
    seed_key = "--seeds" if seeds is not None else f"scales.{scale}.seeds" if "seeds" in sc else "seeds"
    seed_value = seeds if seeds is not None else sc.get("seeds", raw.get("seeds", 1))
    _check_size(axes, includes, count_seeds(seed_value), max_cells, source, seed_key)
    seed_list = parse_seeds(seed_value, seed_key, None if seeds is not None else source)
    leaderboard = raw.get("leaderboard", {})
    _check(leaderboard, LEADERBOARD_KEYS, "leaderboard", source)

    configs, combos = _expand(base, axes, includes, source)
    as_declared = [dict(cfg) for cfg in configs] if overrides else None  # the claims' scope: the file, not the flags
    _add_metrics_and_overrides(configs, metrics, overrides, source)
    memo: dict = {}
    first = [cell_from_config(cfg, seed_list[0], registry, source, memo) for cfg in configs]
    cells = list({c.hash: c for c in (spec.with_seed(seed) for spec in first for seed in seed_list)}.values())
    validate_cells(cells, registry, source, placeholders, build_models)
    scope = declared_scope(first if as_declared is None else
                           [cell_from_config(cfg, seed_list[0], registry, source, {}) for cfg in as_declared])
    # each axis value as a stored run's label reads it, in the declared order (trends and splits follow it)
    axis_labels = {n: [label_at(first[next(j for j, c in enumerate(combos) if c[k] == i)].canonical(), n)
                       for i in range(len(axes[n]))] for k, n in enumerate(axes)}
    groups = parse_groups(raw.get("groups", {}), "groups", source)
    groups.update(parse_groups(sc.get("groups", {}), f"scales.{scale}.groups", source))
    claims = parse_claims(raw.get("claims", []), source)
    check_claims(claims, groups, [c.canonical() for c in first], axis_labels, source, scale,
                 has_plugin_metrics=any(c.metrics for c in first))
    logging = _logging(registry, raw, source)
    return Suite(name=name, source=source, description=raw.get("description", ""),
                 scale=scale, scales=list(scales), seeds=list(seed_list), axes=axes, cells=cells,
                 rank=leaderboard.get("rank", "best_test_acc"), question=_question(leaderboard, source),
                 claims=claims, groups=groups, axis_labels=axis_labels, logging=logging, scope=scope,
                 **_analyses(leaderboard, axes, source))


def _read_suite_file(path: Path) -> tuple[dict, str]:
    """The file's tables, its keys checked, and the suite's name (a directory's name, never a path)."""
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SpecError(f"not a readable TOML file: {exc}", source=source) from None
    _check(raw, SUITE_KEYS, "", source)
    name = raw.get("name", path.stem)
    problem = name_problem(name)
    if problem:  # the name picks the result directory: never a path
        raise SpecError(f"{problem}; it names the result directory", source=source,
                        key="name" if "name" in raw else "name (absent: the file's name; set name = \"...\")")
    return raw, name


def _scale_table(raw: dict, scale: str, name: str, path: Path) -> tuple[dict, dict]:
    """Every scale of the file, and the table of the one asked for (refused if absent or unavailable)."""
    source = str(path)
    scales = raw.get("scales", {})
    _check(scales, set(scales), "scales", source)
    if scale not in scales:
        known = f"its scales: {', '.join(scales)}" if scales else f"declare one: [scales.{scale}]"
        raise SpecError(f"suite has no scale '{scale}'{closest(scale, scales)}; {known}", source=source, key="scales")
    sc = scales[scale]
    _check(sc, SCALE_KEYS, f"scales.{scale}", source)
    if "unavailable" in sc:
        raise GstbenchError(f"scale '{scale}' of suite '{name}' is not available yet: "
                            f"{sc['unavailable']} (its settings, as far as written: [scales.{scale}] in {path})")
    return scales, sc


def _axes(registry: Registry, raw: dict, sc: dict, overrides: dict[str, Any] | None, source: str
          ) -> tuple[dict, dict]:
    """The axes (the scale's replace the file's) and the overrides left to apply: a scorer named with --scorer
    joins a suite's axis of scorers (methods) instead of replacing every configuration's."""
    axes = dict(raw.get("axes", {}))
    axes.update(sc.get("axes", {}))
    overrides = dict(overrides or {})
    joining = overrides.get("prune.scorer")
    if joining is not None and isinstance(axes.get("prune.scorer"), list):
        del overrides["prune.scorer"]
        if _scorer_id(registry, joining) not in [_scorer_id(registry, s) for s in axes["prune.scorer"]]:
            axes["prune.scorer"] = [*axes["prune.scorer"], joining]
    for k, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{values!r} must be a non-empty list of values", source=source, key=f"axes.{k}")
    return axes, overrides


def _scorer_id(registry: Registry, value: Any) -> Any:
    """A scorer as an axis or --scorer names it, with its name as a full id (``l2`` and ``gstbench:l2`` alike)."""
    name = value.get("name") if isinstance(value, dict) else value
    try:
        full = registry.get("scorers", name).id if isinstance(name, str) else name
    except GstbenchError:
        return repr(value)
    return repr({**value, "name": full}) if isinstance(value, dict) else repr({"name": full})


def _expand(base: dict, axes: dict, includes: list, source: str) -> tuple[list[dict], list[tuple[int, ...]]]:
    """One configuration per point of the axes' product (and the index of each value it took), then one per
    include. Configurations share every table that no axis changes (_set_path copies the tables on its way), and
    nothing after this changes a config in place: a 10,000-cell matrix is not 10,000 copies of its base."""
    configs: list[dict] = []
    names = list(axes)
    combos = list(itertools.product(*(range(len(axes[n])) for n in names)))
    for combo in combos:
        cfg = dict(base)
        for n, i in zip(names, combo):
            _set_path(cfg, n, axes[n][i], source, f"axes.{n}")
        configs.append(cfg)
    for i, inc in enumerate(includes):
        cfg = dict(base)
        for n, v in inc.items():
            _set_path(cfg, n, v, source, f"include[{i}].{n}")
        configs.append(cfg)
    return configs, combos


def _add_metrics_and_overrides(configs: list[dict], metrics: list[str], overrides: dict[str, Any],
                               source: str) -> None:
    """--metric joins every configuration's metrics; the other flags' keys are set (a prune.* key only where the
    configuration prunes)."""
    for cfg in configs:
        listed = cfg.get("metrics", [])
        if not isinstance(listed, list):
            raise SpecError(f"{listed!r} is not a list", source=source, key="base.metrics")
        present = {m if isinstance(m, str) else m.get("name") for m in listed
                   if isinstance(m, str) or isinstance(m, dict) and isinstance(m.get("name"), str)}
        added = [m for m in metrics if m not in present]
        if added or "metrics" not in cfg:
            cfg["metrics"] = listed + added
        for n, v in overrides.items():
            if cfg.get("prune", False) is not False or not n.startswith("prune."):
                _set_path(cfg, n, v, source, n)


def _logging(registry: Registry, raw: dict, source: str) -> list[LogTarget]:
    logging = parse_logging_table(raw.get("logging", {}), source)
    for target in logging:
        try:
            registry.get("loggers", target.name)
        except UnknownComponent as exc:
            raise SpecError(str(exc), source=source, key=f"logging.{target.name}") from None
    return logging


def _check_size(axes: dict[str, list], includes: list, seeds: int | None, max_cells: int, source: str,
                seed_key: str) -> None:
    """Refuse, before anything is built, a matrix of more than ``max_cells`` cells, naming its size."""
    configurations = math.prod(len(v) for v in axes.values()) + len(includes)
    cells = configurations * (seeds or 1)
    if cells > max_cells:
        key = "axes" if configurations > max_cells else seed_key  # what pushed it over
        shape = " x ".join(f"{len(v):,}" for v in axes.values()) or "no axes"
        raise SpecError(f"the matrix has {cells:,} cells ({configurations:,} configurations: axes {shape}"
                        f"{f' + {len(includes)} included' if includes else ''}; x {seeds or 1:,} seeds at "
                        f"'{seed_key}'), more than the limit of {max_cells:,}: shrink the axes or seeds, or raise the "
                        f"limit with --max-cells", source=source, key=key)


def _analyses(leaderboard: dict[str, Any], axes: dict[str, Any], source: str) -> dict[str, Any]:
    """``columns`` (metric names), ``correlate`` (pairs of metric names), ``delta`` (prune-potential tolerance)."""
    columns = leaderboard.get("columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise SpecError(f"{columns!r} is not a list of metric names", source=source, key="leaderboard.columns")
    pairs = leaderboard.get("correlate", [])
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(m, str) for m in p)
                                              for p in pairs):
        raise SpecError(f"{pairs!r} is not a list of [metric, metric] pairs", source=source,
                        key="leaderboard.correlate")
    delta = leaderboard.get("delta", PRUNE_POTENTIAL_DELTA)
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0 <= delta < 1:
        raise SpecError(f"{delta!r} must be a number in [0, 1) ({PRUNE_POTENTIAL_DELTA} = 0.5 points)", source=source,
                        key="leaderboard.delta")
    levels = leaderboard.get("levels")
    if levels is not None and levels not in axes:
        raise SpecError(f"'{levels}' is not an axis of the suite{closest(levels, axes)}; levels names the axis "
                        f"whose values are the compression levels", source=source, key="leaderboard.levels")
    return {"columns": columns, "correlate": pairs, "delta": float(delta), "levels": levels}


def _question(leaderboard: dict[str, Any], source: str) -> dict[str, Any] | None:
    """``question`` + ``groups`` (name -> {dotted key -> allowed values}) + optional ``split`` key."""
    if "groups" not in leaderboard:
        for k in ("question", "split"):
            if k in leaderboard:
                raise SpecError("needs [leaderboard.groups] to compare", source=source, key=f"leaderboard.{k}")
        return None
    groups = leaderboard["groups"]
    if not isinstance(groups, dict) or len(groups) < 2:
        raise SpecError("must name at least two groups, each a table of key -> allowed values", source=source,
                        key="leaderboard.groups")
    out = []  # a list of [name, match]: the order is the suite's (stored JSON sorts keys)
    for name, match in groups.items():
        if not isinstance(match, dict) or not match:
            raise SpecError(f"{match!r} is not a table of key -> allowed values", source=source,
                            key=f"leaderboard.groups.{name}")
        out.append([name, {k: v if isinstance(v, list) else [v] for k, v in match.items()}])
    split = leaderboard.get("split")
    if split is not None and not isinstance(split, str):
        raise SpecError(f"{split!r} is not a dotted key", source=source, key="leaderboard.split")
    return {"question": str(leaderboard.get("question", "")), "groups": out, "split": split}
