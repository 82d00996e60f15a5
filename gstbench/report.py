"""Leaderboards: one row per configuration across seeds, plus the stability-generalization correlation.

Generalization is the best test accuracy at or after the last pruning event (the
paper's code); the correlation is computed across all finished pruned runs (the
unpruned baseline has no pruning event and is left out of it).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from gstbench.config import component_label
from gstbench.stats import correlation, mean_interval
from gstbench.store import Store

GENERALIZATION = "best_test_acc"


def _short(component: dict[str, Any]) -> str:
    return component_label(component["id"], component.get("options") or {})


SHOWN_AXES = {"prune.scorer", "prune.target", "prune.effector", "prune.period"}


def describe_config(spec: dict[str, Any], axes: list[str] = ()) -> dict[str, Any]:
    """The row label: scorer, target, effector, period, plus any other axis of the suite."""
    prune = spec["prune"]
    if prune is None:
        row = {"scorer": "-", "target": "-", "effector": "unpruned", "period": "-"}
    else:
        periods = sorted({layer["period"] for layer in prune["layers"].values()})
        row = {"scorer": _short(prune["scorer"]), "target": _short(prune["target"]),
               "effector": _short(prune["effector"]), "period": ",".join(periods)}
    for axis in axes:
        if axis not in SHOWN_AXES:
            row[axis] = _lookup(spec, axis)
    return row


def _lookup(spec: dict[str, Any], dotted: str) -> str:
    node: Any = spec
    for part in dotted.split("."):
        if isinstance(node, dict) and "id" in node and "options" in node and part not in node:
            node = node["options"]
        if not isinstance(node, dict) or part not in node:
            return "-"
        node = node[part]
    if isinstance(node, dict) and "id" in node:
        return _short(node)
    return str(node)


def build_report(out: Path | str, rank: str | None = None) -> dict[str, Any]:
    """Everything a leaderboard shows, as plain data (the CLI renders it)."""
    store = Store(out)
    suite = store.read_suite()
    rank = rank or suite.get("rank", GENERALIZATION)
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: {"ok": [], "failed": [], "missing": 0, "spec": None})
    pruned_runs = []
    for stored, result in store.iter_cells():
        spec = stored["spec"]
        key = {k: v for k, v in spec.items() if k != "seed"}
        gkey = repr(sorted((k, repr(v)) for k, v in key.items()))
        group = groups[gkey]
        group["spec"] = spec
        if result is None:
            group["missing"] += 1
        elif result["status"] == "ok":
            group["ok"].append(result)
            if spec["prune"] is not None:
                pruned_runs.append(result["metrics"])
        else:
            group["failed"].append({"hash": result.get("hash"), "seed": result.get("seed"),
                                    "error": result.get("error")})
    rows = []
    for group in groups.values():
        metrics = [r["metrics"] for r in group["ok"]]
        row = describe_config(group["spec"], list(suite.get("axes", {})))
        row.update(
            rate=metrics[0]["iterative_rate"] if metrics else None,
            n=len(metrics), failed=len(group["failed"]), missing=group["missing"],
            stability=mean_interval([m["stability"] for m in metrics]),
            final_test_acc=mean_interval([m["final_test_acc"] for m in metrics]),
            best_test_acc=mean_interval([m["best_test_acc"] for m in metrics]),
            train_acc=mean_interval([m["train_acc"] for m in metrics]),
            gap=mean_interval([m["gap"] for m in metrics]),
            errors=group["failed"],
        )
        if rank not in row:
            row[rank] = mean_interval([m[rank] for m in metrics if rank in m])
        rows.append(row)
    rows.sort(key=lambda r: -1.0 if r[rank]["mean"] is None else r[rank]["mean"], reverse=True)
    corr = correlation([m["stability"] for m in pruned_runs], [m[GENERALIZATION] for m in pruned_runs])
    totals = {"cells": sum(r["n"] + r["failed"] + r["missing"] for r in rows),
              "ok": sum(r["n"] for r in rows), "failed": sum(r["failed"] for r in rows),
              "missing": sum(r["missing"] for r in rows)}
    return {"suite": suite, "rank": rank, "rows": rows, "correlation": {
        "x": "stability", "y": GENERALIZATION, "runs": "pruned runs", **corr}, "totals": totals}


def _pct(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "-"
    if stat["low"] is None:
        return f"{100 * stat['mean']:.2f}"
    return f"{100 * stat['mean']:.2f} ± {100 * (stat['high'] - stat['mean']):.2f}"


def render_leaderboard(report: dict[str, Any], tablefmt: str = "simple") -> str:
    extra = [a for a in report["suite"].get("axes", {}) if a not in SHOWN_AXES]
    headers = ["scorer", "target", "effector", "period", *extra, "rate %", "n", "stability %", "final test %",
               "best test %", "gap %"]
    table = []
    for r in report["rows"]:
        table.append([r["scorer"], r["target"], r["effector"], r["period"], *(r[a] for a in extra),
                      "-" if not r["rate"] else f"{100 * r['rate']:.1f}",
                      f"{r['n']}" + (f" (+{r['failed']} failed)" if r["failed"] else "")
                      + (f" (+{r['missing']} missing)" if r["missing"] else ""),
                      _pct(r["stability"]), _pct(r["final_test_acc"]), _pct(r["best_test_acc"]), _pct(r["gap"])])
    c = report["correlation"]
    lines = [tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True), "",
             f"sorted by {report['rank']}; ± is the half-width of a 95% Student-t interval across seeds; "
             f"'best test' is the best test accuracy at or after the last pruning event."]
    if c["pearson_r"] is None:
        lines.append(f"stability vs {c['y']}: {c.get('note', 'undefined')} (n = {c['n']})")
    else:
        lines.append(tabulate([["Pearson r", f"{c['pearson_r']:+.3f}", f"{c['pearson_p']:.2g}"],
                               ["Kendall tau", f"{c['kendall_tau']:+.3f}", f"{c['kendall_p']:.2g}"]],
                              headers=[f"stability vs {c['y']} ({c['n']} pruned runs)", "value", "p"],
                              tablefmt=tablefmt, disable_numparse=True))
    t = report["totals"]
    lines.append(f"cells: {t['ok']} ok, {t['failed']} failed, {t['missing']} missing")
    for r in report["rows"]:
        for err in r["errors"]:
            lines.append(f"  failed cell {str(err['hash'])[:16]} (seed {err['seed']}): {err['error']}")
    return "\n".join(lines)
