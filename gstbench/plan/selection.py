"""Selecting stored runs by their config: the value at a dotted key, its label, a configuration's label, and group matching.

A stored spec is the cell's canonical JSON (plan/config.py; the reader's ``CellSpec``s keep the stored one). A dotted key reads it the way a
suite file writes it: ``prune.target``, ``rewind``, ``model.channels`` (component options
are looked up inside the component), ``prune.period`` (or start, end, fraction) reads
the layers' schedules when they all agree, and ``prune.units`` says what is pruned
(``filters``, ``weights``, ``heads``, ``neurons`` or ``heads+neurons``). Groups (a suite's ``[groups]`` and
``[leaderboard.groups]``) match a value by its component name (``zero``), its full label
(``zero(steps=6)``, ``weights@5%``) or a literal (``false`` for ``prune``).
"""

from __future__ import annotations

from typing import Any, Callable

from gstbench.components import id_parts
from gstbench.plan.config import CellSpec, component_label
from gstbench.plan.parse import LAYER_KEYS

MISSING = object()
# The axes every leaderboard row shows; any other axis of a suite gets its own column. An axis of whole
# [prune] tables (the methods suite's regimes) shows through those columns too ("1 round" or a period).
SHOWN_AXES = {"prune", "prune.scorer", "prune.target", "prune.effector", "prune.period"}


def short_label(component: dict[str, Any]) -> str:
    """A stored component as tables show it: ``name(k=v)`` or ``weights@5%``."""
    return component_label(component["id"], component.get("options") or {})


def canonical_of(spec: CellSpec | dict[str, Any]) -> dict[str, Any]:
    """What selection reads: a spec's canonical form (a stored spec's is the JSON it was read from)."""
    return spec.canonical() if isinstance(spec, CellSpec) else spec


def holder_of(node: Any, part: str) -> Any:
    """Where ``part`` lives under ``node``: a component's options hold what the component itself does not."""
    if isinstance(node, dict) and "id" in node and "options" in node and part not in node:
        return node["options"]
    return node


def value_at(spec: CellSpec | dict[str, Any], dotted: str) -> Any:
    """The stored value at ``dotted``, or MISSING."""
    node: Any = canonical_of(spec)
    owner = None  # the component whose options are being read, and the key that holds it
    for part in dotted.split("."):
        node = holder_of(node, part)
        if part == "units" and isinstance(node, dict) and "layers" in node and "units" not in node:
            node = pruned_units(node) or "filters"  # what a [prune] table removes: groups can select on it
            continue
        if isinstance(node, dict) and part not in node and part in LAYER_KEYS and isinstance(node.get("layers"), dict):
            values = {repr(layer.get(part)) for layer in node["layers"].values()}
            if len(values) != 1:
                return MISSING
            node = next(iter(node["layers"].values())).get(part)
            continue
        if isinstance(node, dict) and part not in node and owner is not None:
            return option_default(owner, part)  # an option at its default is not stored (plan/config.py)
        if not isinstance(node, dict) or part not in node:
            return MISSING
        owner = (part, node[part]) if isinstance(node[part], dict) and "id" in node[part] else None
        node = node[part]
    return node


def option_default(owner: tuple[str, dict[str, Any]], option: str) -> Any:
    """The default of a stored component's ``option`` (``owner``: the key that holds it, e.g. ``scorer``, and its
    stored table), from its factory where the component is installed; else MISSING."""
    from gstbench.plugins import UnknownComponent, get_registry

    key, component = owner
    plugin, bare, _ = id_parts(component["id"])
    try:
        defaults = get_registry().get(f"{key}s", f"{plugin}:{bare}").option_defaults() or {}
    except UnknownComponent:  # a key that names no kind, or a component no longer installed: nothing to say
        return MISSING
    return defaults.get(option, MISSING)


def label_at(spec: CellSpec | dict[str, Any], dotted: str) -> str:
    """The value at ``dotted`` as a table shows it; ``-`` where the run has none (e.g. unpruned)."""
    node = value_at(spec, dotted)
    if node is MISSING or node is None:
        return "-"
    if isinstance(node, dict) and "id" in node:
        return short_label(node)
    return str(node)


def matches(spec: CellSpec | dict[str, Any], dotted: str, allowed: list[Any]) -> bool:
    """Whether the run's value at ``dotted`` is one of ``allowed`` (a name, a full label or a literal)."""
    node = value_at(spec, dotted)
    if node is MISSING or node is None:
        return (False in allowed) if (node is None or dotted == "prune") else False
    if isinstance(node, dict) and "id" in node:
        return id_parts(node["id"])[1] in allowed or short_label(node) in allowed or node["id"] in allowed
    return node in allowed or str(node) in [str(a) for a in allowed]


def in_group(spec: CellSpec | dict[str, Any], match: dict[str, list[Any]]) -> bool:
    """A group is a table of dotted key -> allowed values; a run belongs when every key matches."""
    return all(matches(spec, k, allowed) for k, allowed in match.items())


def describe_config(spec: CellSpec | dict[str, Any], axes: list[str] = (), distinguish: list[str] = ()
                    ) -> dict[str, Any]:
    """The row label: scorer, target, effector, period, plus any other axis of the suite, and each key of
    ``distinguish`` (``distinguishing_keys``) as ``name=value``."""
    spec = canonical_of(spec)
    prune = spec["prune"]
    if prune is None:
        row = {"scorer": "-", "target": "-", "effector": "unpruned", "period": "-"}
    else:
        if prune.get("rounds"):
            period = f"{prune['rounds']} round" + ("s" if prune["rounds"] > 1 else "")
        else:
            period = ",".join(sorted({layer["period"] for layer in prune["layers"].values()}))
        row = {"scorer": short_label(prune["scorer"]), "target": short_label(prune["target"]),
               "effector": short_label(prune["effector"]), "period": period}
    if prune is not None and (units := pruned_units(prune)):
        row["units"] = units
    if prune is not None and prune.get("scope") == "global":  # one ranking over all the layers
        row["units"] = f"{row['units']} global" if "units" in row else "global"
    for axis in axes:
        if axis not in SHOWN_AXES:
            row[axis] = label_at(spec, axis)
    for key in distinguish:
        value = label_at(spec, key)
        row[key] = "-" if value == "-" else f"{key.rpartition('.')[2]}={value}"
    # what else tells two configurations apart where no axis names it (the methods suite's included methods)
    regularizer = spec["train"].get("regularizer")
    if regularizer and "train.regularizer" not in axes:
        row["regularizer"] = short_label(regularizer)
    if spec["rewind"]["id"].rpartition(":")[2] != "none" and "rewind" not in axes:
        row["rewind"] = short_label(spec["rewind"])
    return row


def pruned_units(prune: dict[str, Any]) -> str:
    """What a [prune] table removes where it is not filters, for labels: ``weights``, ``heads``, ``neurons`` or
    ``heads+neurons`` (a model's group names end in their kind, e.g. ``block1.heads``); "" for filters, so that the
    labels of CNN suites stay as they were."""
    if prune.get("granularity") == "weights":
        return "weights"
    kinds = sorted({name.rpartition(".")[2] for name in prune["layers"]} & {"heads", "neurons"})
    return "+".join(kinds)


LABEL_ORDER = ("scorer", "target", "effector", "period")


def label_text(row: dict[str, Any]) -> str:
    """A ``describe_config`` row in one line, its parts in one order wherever it is printed (a row read back from
    JSON may have its keys sorted): scorer, target, effector, period, then the others as they come."""
    ordered = [*(k for k in LABEL_ORDER if k in row), *(k for k in row if k not in LABEL_ORDER)]
    return " ".join(str(row[k]) for k in ordered if row[k] != "-")


def config_label(spec: CellSpec | dict[str, Any], axes: list[str] = (), distinguish: list[str] = ()) -> str:
    """A configuration in one line, as the leaderboard labels it: e.g. ``l1 largest mask 1ep``."""
    return label_text(describe_config(spec, axes, distinguish))


def _leaves(node: Any, prefix: str = "") -> dict[str, str]:
    """A canonical spec's values by dotted key as a suite names them (a component is one value, its label; the
    pruned layers one value, with their shared ``prune.fraction`` and ``prune.period`` beside it)."""
    if isinstance(node, dict) and not ("id" in node and "options" in node) and prefix != "prune.layers.":
        out = {k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
        if prefix == "prune.":
            out.update({f"prune.{k}": repr(v) for k in ("fraction", "period")
                        if (v := value_at({"prune": node}, f"prune.{k}")) is not MISSING})
        return out
    return {prefix[:-1]: short_label(node) if isinstance(node, dict) and "id" in node else repr(node)}


def distinguishing_keys(specs: list[CellSpec | dict[str, Any]], axes: list[str]) -> list[str]:
    """Config keys no axis shows at which configurations that would share a label differ (an [[include]] that
    changes ``train.epochs``, as the posttrain suite's early parent does; the speed suite's models and levels):
    for each such set, keys added one at a time, each the one that tells the most of them apart (the model first,
    then the dataset, then in sorted order where they tie), until all are told apart."""
    by_label: dict[str, list[dict[str, str]]] = {}
    for spec in specs:
        canonical = {k: v for k, v in canonical_of(spec).items() if k != "seed"}
        by_label.setdefault(config_label(canonical, axes), []).append(_leaves(canonical))
    keys: list[str] = []
    for same in by_label.values():
        if len(same) < 2:
            continue
        differing = sorted((k for k in set().union(*same) - {"prune.layers"}  # their fraction and period read
                            if len({leaves.get(k) for leaves in same}) > 1),
                           key=lambda k: (k != "model", k != "dataset", k))
        chosen: list[str] = [k for k in keys if k in differing]
        while differing and len({tuple(leaves.get(k) for k in chosen) for leaves in same}) < len(same):
            told = {k: len({tuple(leaves.get(c) for c in [*chosen, k]) for leaves in same}) for k in differing}
            best = max(told, key=lambda k: told[k])  # the first of the most telling, in preference order
            if best in chosen:
                break
            chosen.append(best)
        keys += [k for k in chosen if k not in keys]
    return keys


def component_paths(spec: CellSpec | dict[str, Any]) -> list[str]:
    """The dotted key of every component in a spec (a table with an ``id``: model, dataset, prune.scorer, ...)."""
    out: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                if "id" in value:
                    out.append(prefix + key)
                else:
                    walk(value, f"{prefix}{key}.")

    walk(canonical_of(spec), "")
    return out


def declared_scope(specs: list[CellSpec]) -> dict[str, list[str]]:
    """Each component key of ``specs`` and the values they use there: what a suite's claims are about (labels as a
    stored run reads them: its spec's JSON, where option tuples are lists)."""
    import json

    scope: dict[str, set[str]] = {}
    for spec in specs:
        stored = json.loads(json.dumps(canonical_of(spec)))
        for key in component_paths(stored):
            scope.setdefault(key, set()).add(label_at(stored, key))
    return {k: sorted(v) for k, v in sorted(scope.items())}


def outside_scope(spec: CellSpec | dict[str, Any], scope: dict[str, list[str]]) -> tuple[tuple[str, str], ...]:
    """The component keys at which a run uses a value its suite does not declare (empty: the suite's own run)."""
    return tuple((k, v) for k in scope if (v := label_at(spec, k)) != "-" and v not in scope[k])


def group_predicate(ref: str | list[str], groups: dict[str, dict[str, list[Any]]]) -> Callable[[dict], bool]:
    """A group name (built-in or declared), or a list of names meaning their intersection."""
    names = ref if isinstance(ref, list) else [ref]

    def one(name: str, spec: dict[str, Any]) -> bool:
        if name == "all":
            return True
        if name in ("pruned", "unpruned"):
            return (canonical_of(spec).get("prune") is not None) == (name == "pruned")
        return in_group(spec, groups[name])

    return lambda spec: all(one(n, spec) for n in names)
