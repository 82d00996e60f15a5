"""``extends``: a suite file's tables merged over those of the suite it extends.

The file inherits everything, and what it restates wins: ``base`` is merged key by key (by
``suite._merged_base``, parent, parent's scale, file, file's scale); ``axes`` and ``groups``
name by name (an inherited axis restated as [] is dropped); ``seeds``, ``include``,
``claims``, ``leaderboard`` and ``logging``, when restated, replace the parent's; ``scales``
scale by scale, and what the file restates at its top level beats the parent's scales too.
"""

from __future__ import annotations

from typing import Any

MERGED_BY_KEY = ("axes", "groups")  # an extending file's tables merged into its parent's key by key


def with_parent(inherited: dict, raw: dict) -> dict:
    """A suite file's tables (``raw``) over those of the suite it extends (``inherited``, its own parents already
    merged in), by the rules above; the scales' bases are left to ``suite._merged_base``."""
    out = {k: v for k, v in inherited.items() if k not in ("name", "description", "base", "extends")}
    out["scales"] = {name: _superseded(table, raw) for name, table in out.get("scales", {}).items()}
    for key, value in raw.items():
        if key in MERGED_BY_KEY and isinstance(value, dict):
            out[key] = _merged_by_key(out.get(key, {}), value)
        elif key == "scales" and isinstance(value, dict):
            out[key] = _inherited_scales(out.get(key, {}), value)
        else:
            out[key] = value
    own_scales = raw.get("scales", {})
    out["scales"] = {name: {k: v for k, v in table.items() if k != "base" or name in own_scales}
                     if isinstance(table, dict) else table for name, table in out.get("scales", {}).items()}
    return out


def _superseded(scale: Any, raw: dict) -> Any:
    """A parent's scale table without what the extending file restates at its top level (its seeds, includes,
    axes and groups by name): the file's word beats anything it inherits, the parent's scales included."""
    if not isinstance(scale, dict):
        return scale
    out = {k: v for k, v in scale.items() if k not in ("seeds", "include") or k not in raw}
    for key in MERGED_BY_KEY:
        if isinstance(out.get(key), dict) and isinstance(raw.get(key), dict):
            out[key] = {k: v for k, v in out[key].items() if k not in raw[key]}
    return out


def _merged_by_key(parent: Any, own: dict) -> dict:
    """The parent's table with the file's keys over it; an axis the file restates as [] is dropped."""
    merged = {**(parent if isinstance(parent, dict) else {}), **own}
    return {k: v for k, v in merged.items() if not (v == [] and k in own)}


def _inherited_scales(parent: dict, own: dict) -> dict:
    """Scale by scale: the parent's table with the file's keys over it (axes and groups merged key by key); a
    scale's base is the file's own (``_merged_base`` adds the parent's in its order)."""
    out = {name: {k: v for k, v in table.items() if k != "base"} for name, table in parent.items()
           if isinstance(table, dict)}
    for name, table in own.items():
        if not isinstance(table, dict):
            out[name] = table
            continue
        merged = dict(out.get(name, {}))
        for key, value in table.items():
            merged[key] = _merged_by_key(merged.get(key, {}), value) \
                if key in MERGED_BY_KEY and isinstance(value, dict) else value
        out[name] = merged
    return out
