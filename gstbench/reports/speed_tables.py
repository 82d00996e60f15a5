"""The speed metric's tables: per network, each pruning's realized speed-up per runtime and batch beside the one
its MACs predict, the share delivered, and the sparsity from which a sparse format beats the dense parent.

Runs of one network (its model and dataset labels) are pooled over seeds (means). A sparse format's threshold is
the lowest measured share of single weights pruned from which on, at every higher measured share too, the
sparse network runs at least ``BEATS`` times as fast as its dense parent in eager: 10%, the smallest speed-up a
user would change a deployment for, and the margin of the speed suite's claims (docs/speed-scale.md); a share
where it is faster by less is timing noise's as much as the format's. A speed-up belongs to the machine, its threads
and the runtime it was measured on: every table carries the device and the thread count.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from tabulate import tabulate

from gstbench.plan.selection import label_at
from gstbench.reports.stats import is_number

BEATS = 1.1  # a sparse format beats dense from this realized speed-up on (module docstring)


def speed_summary(finished: list[tuple[Any, Any]]) -> dict[str, Any] | None:
    """Per network: its pruned configurations' mean speed-ups per runtime and batch, the parent's times, the
    runtimes refused and why, and each sparse runtime's threshold; None when no run measured ``speed``."""
    by_network: dict[str, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)
    for spec, result in finished:
        if "speed_settings" in result.metrics:
            network = f"{label_at(spec, 'model')} on {label_at(spec, 'dataset').partition('(')[0]}"
            by_network[network].append((spec, result.metrics))
    if not by_network:
        return None
    by_network = dict(sorted(by_network.items()))
    settings = next(iter(by_network.values()))[0][1]["speed_settings"]
    return {"device": settings.get("device_name") or settings.get("device"), "threads": settings.get("threads"),
            "beats": BEATS, "networks": [_network(name, runs) for name, runs in by_network.items()]}


def _network(name: str, runs: list[tuple[Any, dict[str, Any]]]) -> dict[str, Any]:
    from gstbench.builtin.speed import key_of

    settings = runs[0][1]["speed_settings"]
    batches = dict(sorted(settings["batches"].items(), key=lambda kv: kv[1]))  # batch 1 first
    asked = [key_of(r) for _, m in runs for r in m["speed_settings"]["runtimes"]]
    timed = {k.removeprefix("speed_").removesuffix("_realized").rsplit("_", 1)[0] for _, m in runs for k in m
             if k.startswith("speed_") and k.endswith("_realized")}
    runtimes = [r for r in dict.fromkeys(asked) if r in timed]
    sparse = [r for r in dict.fromkeys(r for _, m in runs for r in m["speed_settings"].get("sparse", []))
              if r in runtimes]
    unavailable = {r: why for _, m in runs for r, why in m.get("speed_unavailable", {}).items() if r not in runtimes}
    pooled: dict[str, list[tuple[Any, dict[str, Any]]]] = defaultdict(list)  # a configuration's seeds
    for spec, m in runs:
        pooled[spec.config_hash].append((spec, m))
    rows = []
    for members in pooled.values():
        spec, ms = members[0][0], [m for _, m in members]
        level = label_at(spec, "prune.fraction")  # "-" where layers have fractions of their own
        scorer = label_at(spec, "prune.scorer")
        row = {"units": label_at(spec, "prune.units"), "fraction": float(level) if level != "-" else None,
               "scorer": scorer, "scope": label_at(spec, "prune.scope"), "n": len(ms),
               # NVIDIA's 2:4 pattern (compare = "2:4"): a row of its own, not a level of the threshold's
               "pattern": "2:4" if "2:4" in scorer else None,
               "predicted": _mean(ms, "speed_predicted"), "params": _mean(ms, "speed_params_ratio"),
               "disk": _mean(ms, "speed_disk_ratio"), "disk_csr": _mean(ms, "speed_disk_csr_ratio"),
               "realized": {}, "delivered": {}, "ms": {}}
        for runtime in runtimes:
            for what in ("realized", "delivered", "ms"):
                values = {label: _mean(ms, f"speed_{runtime}_{label}_{what}") for label in batches}
                if any(v is not None for v in values.values()):
                    row[what][runtime] = values
        rows.append(row)
    rows.sort(key=lambda r: (r["units"] == "weights", r["units"], r["scope"] == "global", r["fraction"] or 0,
                             r["scorer"]))
    names = [(f"{r['units']} {r['fraction']:.0%}" if r["fraction"] is not None else f"{r['units']} by layer")
             + (" global" if r["scope"] == "global" else "") + (f" {r['pattern']}" if r["pattern"] else "")
             for r in rows]
    for row, title in zip(rows, names):  # the scorer only where it tells two configurations apart
        row["pruning"] = title + (f" {row['scorer']}" if names.count(title) > 1 else "")
    parent_ms = {r: {label: _mean([m for _, m in runs], f"speed_{r}_{label}_parent_ms") for label in batches}
                 for r in runtimes}
    spreads = sorted(m[k] for _, m in runs for k in m if k.startswith("speed_") and k.endswith("_spread")
                     and is_number(m[k]))
    return {"network": name, "batches": batches, "runtimes": runtimes, "unavailable": unavailable,
            "parent_ms": parent_ms, "rows": rows,
            "spread": {"median": spreads[len(spreads) // 2], "max": spreads[-1]} if spreads else None,
            "thresholds": {r: {label: threshold([(row["fraction"], row["realized"].get(r, {}).get(label))
                                                 for row in rows if row["units"] == "weights"
                                                 and row["fraction"] is not None and not row["pattern"]])
                               for label in batches} for r in sparse}}


def _mean(metrics: list[dict[str, Any]], key: str) -> float | None:
    values = [m[key] for m in metrics if is_number(m.get(key))]
    return sum(values) / len(values) if values else None


def threshold(points: list[tuple[float, float | None]], beats: float = BEATS) -> dict[str, Any]:
    """Where a sparse format starts to beat dense, from (share pruned, realized speed-up) points: ``from``, the
    lowest measured share from which on every measured share beats dense by ``beats``, and ``below``, the highest
    share under it that does not (None: none measured); ``from`` None: not reached at any share measured."""
    measured = sorted((f, s) for f, s in points if s is not None)
    start = len(measured)
    while start > 0 and measured[start - 1][1] >= beats:
        start -= 1
    return {"from": measured[start][0] if start < len(measured) else None,
            "below": measured[start - 1][0] if start > 0 else None,
            "measured": [f for f, _ in measured]}


def threshold_text(found: dict[str, Any]) -> str:
    """``from 90% (not at 70%)``, ``not reached up to 95%``, or ``no share measured``."""
    if not found["measured"]:
        return "no share measured"
    if found["from"] is None:
        return f"not reached up to {found['measured'][-1]:.0%}"
    return f"from {found['from']:.0%}" + (f" (not at {found['below']:.0%})" if found["below"] is not None else
                                           " (the lowest share measured)")


def threads(count: int | None) -> str:
    return "threads unknown" if count is None else f"{count} thread{'s' if count != 1 else ''}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def network_table(network: dict[str, Any], what: str = "realized", tablefmt: str = "simple") -> str:
    """One network's table: a row per pruning, the predicted speed-up, then per runtime ``batch 1 / serving``."""
    labels = list(network["batches"])
    headers = ["pruned", "MACs", "params", "disk", *(network["runtimes"])]
    body = []
    for row in network["rows"]:
        cells = [" / ".join(_times(row[what].get(r, {}).get(label)) if r in row[what] else "-" for label in labels)
                 for r in network["runtimes"]]
        body.append([row["pruning"], _times(row["predicted"]), _times(row.get("params")), _times(row.get("disk")),
                     *cells])
    return tabulate(body, headers=headers, disable_numparse=True, tablefmt=tablefmt)


def caption(network: dict[str, Any], what: str = "realized") -> str:
    sizes = " / ".join(str(b) for b in network["batches"].values())
    meaning = {"realized": "measured speed-up over the unpruned network",
               "delivered": "share of the predicted speed-up delivered (measured / MACs)"}[what]
    return (f"{network['network']}: {meaning} at batch {sizes}; MACs, params, disk: unpruned over pruned (the "
            f"speed-up MACs predict; non-zero parameters; the file as saved, zeros in place)")


def network_notes(network: dict[str, Any]) -> list[str]:
    """The parent's times, each sparse format's threshold, and the runtimes refused here."""
    sizes = list(network["batches"].values())
    times = "; ".join(f"{r} " + " / ".join(_times(v) for v in by.values())
                      for r, by in network["parent_ms"].items())
    notes = [f"unpruned, ms at batch {' / '.join(map(str, sizes))}: {times}"]
    if network.get("spread"):
        notes.append(f"timer spread (interquartile range / median, the wider of the pair): median "
                     f"{network['spread']['median']:.1%}, widest {network['spread']['max']:.1%}")
    for r, by in network["thresholds"].items():
        parts = ", ".join(f"batch {network['batches'][label]} {threshold_text(found)}" for label, found in by.items())
        notes.append(f"{r} beats the dense parent by {BEATS:g}x: {parts}")
    csr = [(row["pruning"], row["disk_csr"]) for row in network["rows"] if row.get("disk_csr")]
    if csr:
        notes.append("unpruned file over the pruned one with its zero-holding weights saved as CSR: "
                     + ", ".join(f"{name} {ratio:.2f}" for name, ratio in csr))
    notes += [f"not timed: {r}: {why}" for r, why in network["unavailable"].items()]
    return notes


def render_speed(summary: dict[str, Any], tablefmt: str = "simple", delivered: bool = True) -> list[str]:
    """Every network's tables (realized, and the share delivered where asked) with their notes: each table one
    string of lines, each sentence one."""
    lines = [f"speed on {summary['device']}, {threads(summary['threads'])} per network timed: a speed-up belongs "
             f"to this machine and runtime"]
    for network in summary["networks"]:
        for what in ("realized", "delivered") if delivered else ("realized",):
            lines += ["", caption(network, what), network_table(network, what, tablefmt)]
        lines += network_notes(network)
    return [*lines, ""]
