"""Every claim across result directories: one row per (suite, claim), one column per scale and seed set.

The rows start from the claims the registered suites declare (so a claim that no run
tests yet shows as ``not run``). Each result directory fills the column of its scale and
of the seeds its finished runs used: ``quick`` for a suite's own seeds, ``quick, fresh
seeds`` for seeds disjoint from them (a replication: ``--seeds 100-104``), ``quick, seeds
0-9`` otherwise, so every suite's replication lines up beside its first run.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstbench.plan.claims import parse_claims
from gstbench.reports.claim_stats import verdict_rank
from gstbench.reports.claims import format_effect, format_p, format_power, format_tested, label_of
from gstbench.errors import GstbenchError
from gstbench.store.reader import load_results
from gstbench.reports.report import claims_for
from gstbench.plan.seeds import describe_seeds, parse_seeds
from gstbench.plugins import Registry

RESULTS_ROOT = Path("gstbench-results")
NOT_RUN = "not run"


def result_dirs(root: Path = RESULTS_ROOT) -> list[Path]:
    """Every suite directory (one holding suite.json) directly under ``root``."""
    return sorted(d for d in root.glob("*") if (d / "suite.json").is_file()) if root.is_dir() else []


@dataclass
class Catalog:
    """What the registered suites declare: their claims, their scales, each scale's own seeds."""

    claims: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (suite name, claim)
    scales: list[str] = field(default_factory=list)
    seeds: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)  # (suite, scale) -> seeds
    problems: list[str] = field(default_factory=list)  # suites that could not be read


def _catalog(registry: Registry) -> Catalog:
    out = Catalog()
    for comp in registry.components("suites"):
        try:
            raw = tomllib.loads(Path(comp.factory).read_text())
            declared = parse_claims(raw.get("claims", []), str(comp.factory))
            name = raw.get("name", comp.name)
            for scale, settings in raw.get("scales", {}).items():
                out.seeds[(name, scale)] = parse_seeds(settings.get("seeds", raw.get("seeds", 1)))
        except (OSError, tomllib.TOMLDecodeError, GstbenchError, AttributeError) as exc:
            out.problems.append(f"suite {comp.id}: {exc}")
            continue
        out.claims += [(name, c) for c in declared]
        out.scales += [s for s in raw.get("scales", {}) if s not in out.scales and declared]
    return out


def column_of(scale: str, seeds: list[int], own: tuple[int, ...] | None) -> str:
    """``quick`` (the suite's own seeds), ``quick, fresh seeds`` (none of them) or ``quick, seeds 0-9``."""
    if not seeds:
        return f"{scale}, no finished run"
    if own is not None and sorted(own) == seeds:
        return scale
    if own is not None and not set(own) & set(seeds):
        return f"{scale}, fresh seeds"
    return f"{scale}, seeds {describe_seeds(seeds)}"


def claim_table(registry: Registry, dirs: list[Path] | None = None) -> dict[str, Any]:
    """The table as plain data: ``columns`` (labels) and ``rows`` (each claim with a result per column or None)."""
    dirs = result_dirs() if dirs is None else dirs
    catalog = _catalog(registry)
    rows: dict[tuple[str, str], dict[str, Any]] = {
        (suite, c["id"]): {"suite": suite, "id": c["id"], "source": c["source"], "statement": c["statement"],
                           "paper": c["paper"], "results": {}, **({"design_check": c["design_check"]}
                                                                   if c.get("design_check") else {})}
        for suite, c in catalog.claims}
    columns: list[str] = []
    for d in dirs:
        results = load_results(d)
        suite, finished = results.suite, results.finished
        seeds = sorted({spec.seed for spec, _ in finished})
        column = column_of(suite["scale"], seeds, catalog.seeds.get((suite["name"], suite["scale"])))
        evaluated = claims_for(suite, finished)
        if any(column in rows.get((suite["name"], c["id"]), {}).get("results", {}) for c in evaluated):
            column += f" ({d.name})"
        if column not in columns:
            columns.append(column)
        for c in evaluated:
            row = rows.setdefault((suite["name"], c["id"]), {k: c[k] for k in ("id", "source", "statement", "paper")}
                                  | {"suite": suite["name"], "results": {}})
            row["results"][column] = {**c, "directory": str(d), "seeds": describe_seeds(seeds)}
    # a scale no directory has run still gets its column: its claims are not run
    for scale in catalog.scales:
        if not any(col.split(",")[0] == scale for col in columns):
            columns.append(scale)
    order, seen = {s: i for i, s in enumerate(catalog.scales)}, {c: i for i, c in enumerate(columns)}
    columns.sort(key=lambda col: (order.get(col.split(",")[0], len(order)), seen[col]))
    # one claim's rows together (gst-tradeoff of tradeoff and of rate), the papers in the order of their ids
    ordered = sorted(rows.values(), key=lambda r: (r["id"], r["suite"]))
    return {"columns": columns, "rows": ordered, "problems": catalog.problems}


def describe_result(result: dict[str, Any] | None) -> str:
    """``REPRODUCED: r = -0.41 [-0.67, -0.06], p = 0.013, n = 30, seeds 0-4; power 0.67 at r = -0.43 (paper),
    80% at n = 41`` or ``not run``."""
    if result is None:
        return NOT_RUN
    text = (f"{label_of(result).upper()}: {format_effect(result)}, p = {format_p(result['p'])}, n = {result['n']}, "
            f"seeds {result['seeds']}")
    power, n_needed = format_power(result)
    if result.get("effect_tested") is None:
        return f"{text}; no power: {result.get('power_note', 'no effect declared')}"
    if result.get("power") is None:
        return f"{text}; no power at {format_tested(result)}: {result.get('power_note', 'no test')}"
    return f"{text}; power {power} at {format_tested(result)}, 80% at n = {n_needed}"


def render_claim_table(table: dict[str, Any], tablefmt: str = "simple") -> str:
    from tabulate import tabulate

    wrap = tablefmt not in ("github", "pipe")  # markdown tables keep one line per row
    body = [[r["id"] + (" (design check)" if r.get("design_check") else ""), r["suite"], r["paper"],
             *(describe_result(r["results"].get(c)) for c in table["columns"])] for r in table["rows"]]
    widths = [None, None, 36, *([34] * len(table["columns"]))] if wrap else None
    rank: dict[str, int | None] = {}  # the scale's order, "not run" last

    def tally(column: str, rows: list[dict[str, Any]]) -> str:
        counts: dict[str, int] = {}
        for r in rows:
            res = r["results"].get(column)
            verdict = label_of(res) if res else NOT_RUN
            counts[verdict] = counts.get(verdict, 0) + 1
            rank.setdefault(verdict, verdict_rank(res["verdict"]) if res else None)
        ordered = sorted(counts.items(), key=lambda kv: 99 if rank[kv[0]] is None else rank[kv[0]])
        return ", ".join(f"{n} {v}" for v, n in ordered)

    lines = [tabulate(body, headers=["claim", "suite", "paper's figure", *table["columns"]], tablefmt=tablefmt,
                      disable_numparse=True, maxcolwidths=widths), ""]
    checks = [r for r in table["rows"] if r.get("design_check")]  # counted apart: the design was chosen to meet them
    for c in table["columns"]:
        lines.append(f"{c}: {tally(c, [r for r in table['rows'] if not r.get('design_check')])}"
                     + (f"; design checks: {tally(c, checks)}" if checks else ""))
    lines += [f"warning: {p}" for p in table["problems"]]
    return "\n".join(lines)
