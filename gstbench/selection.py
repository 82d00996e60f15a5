"""Selecting stored runs by their config: the value at a dotted key, its label, and group matching.

A stored spec is the cell's canonical JSON (config.py). A dotted key reads it the way a
suite file writes it: ``prune.target``, ``rewind``, ``model.channels`` (component options
are looked up inside the component), and ``prune.period`` (or start, end, fraction) reads
the layers' schedules when they all agree. Groups (a suite's ``[groups]`` and
``[leaderboard.groups]``) match a value by its component name (``zero``), its full label
(``zero(steps=6)``, ``weights@5%``) or a literal (``false`` for ``prune``).
"""

from __future__ import annotations

from typing import Any

from gstbench.config import LAYER_KEYS, component_label

MISSING = object()


def short_label(component: dict[str, Any]) -> str:
    """A stored component as tables show it: ``name(k=v)`` or ``weights@5%``."""
    return component_label(component["id"], component.get("options") or {})


def value_at(spec: dict[str, Any], dotted: str) -> Any:
    """The stored value at ``dotted``, or MISSING."""
    node: Any = spec
    for part in dotted.split("."):
        if isinstance(node, dict) and "id" in node and "options" in node and part not in node:
            node = node["options"]
        if isinstance(node, dict) and part not in node and part in LAYER_KEYS and isinstance(node.get("layers"), dict):
            values = {repr(layer.get(part)) for layer in node["layers"].values()}
            if len(values) != 1:
                return MISSING
            node = next(iter(node["layers"].values())).get(part)
            continue
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def label_at(spec: dict[str, Any], dotted: str) -> str:
    """The value at ``dotted`` as a table shows it; ``-`` where the run has none (e.g. unpruned)."""
    node = value_at(spec, dotted)
    if node is MISSING or node is None:
        return "-"
    if isinstance(node, dict) and "id" in node:
        return short_label(node)
    return str(node)


def matches(spec: dict[str, Any], dotted: str, allowed: list[Any]) -> bool:
    """Whether the run's value at ``dotted`` is one of ``allowed`` (a name, a full label or a literal)."""
    node = value_at(spec, dotted)
    if node is MISSING or node is None:
        return (False in allowed) if (node is None or dotted == "prune") else False
    if isinstance(node, dict) and "id" in node:
        return node["id"].split(":", 1)[-1].split("@")[0] in allowed or short_label(node) in allowed
    return node in allowed or str(node) in [str(a) for a in allowed]


def in_group(spec: dict[str, Any], match: dict[str, list[Any]]) -> bool:
    """A group is a table of dotted key -> allowed values; a run belongs when every key matches."""
    return all(matches(spec, k, allowed) for k, allowed in match.items())
