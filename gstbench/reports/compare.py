"""Result sets across commits: a compact versioned export, and the comparison that guards CI.

An export holds, per configuration, every seed's numeric metrics. ``compare`` matches
configurations by their identity (the cell's canonical config without the seed), and for
each compared metric says improved / unchanged / regressed / changed / missing / new. A
change counts only when it exceeds the tolerance AND a t-test across seeds finds it
significant (p < 0.05): paired over seeds when both sides ran the same seeds (a seed fixes
the initialization and the data order, so the pairs differ only by the code), Welch's
otherwise. One unlucky seed does not fail a build. An export also holds the verdict of
every claim the suite declares. Verdicts are ordered by how much they support the claim
(reproduced, weaker than the paper's effect, inconclusive, no effect of the tested size,
contradicted: claim_stats.VERDICTS): a claim whose verdict moves down that scale has
regressed (reproduced turning into anything else included), one that moves up has improved;
a claim that ran on one side only is missing or new.
"""

from __future__ import annotations

import json
import math
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from gstbench import __version__
from gstbench.reports import ALPHA, DEFAULT_TOLERANCE
from gstbench.reports.claim_stats import format_effect, format_p, format_power, format_tested, verdict_label, verdict_rank
from gstbench.reports.distributions import t_quantile, t_sf
from gstbench.reports.power import detectable_change
from gstbench.reports.tables import fitted_table
from gstbench.errors import GstbenchError, closest
from gstbench.plan.config import short_hash
from gstbench.plan.selection import describe_config, holder_of, label_text, matches
from gstbench.reports.report import claims_for
from gstbench.store.cell_result import ENGINE_BETTER
from gstbench.store.reader import keys_named_after, load_results
from gstbench.reports.stats import is_number, welch_difference
from gstbench.store.store import atomic_write_json, atomic_write_text

FORMAT = "gstbench-results"
VERSION = 1


@dataclass(frozen=True)
class Match:
    """``--match``: BASE's configurations with ``old`` at ``axis`` compared with NEW's with ``new`` there, everything
    else equal (``old`` and ``new`` None: the axis is left out when matching)."""

    axis: str
    old: Any
    new: Any


def collect(directory: Path | str) -> dict[str, Any]:
    """A result directory as an export: per configuration, each seed's status and numeric metrics."""
    results = load_results(directory)
    configs = []
    for config in results.configurations:
        runs = []
        for cell in sorted(config.cells, key=lambda c: c.seed):
            run: dict[str, Any] = {"seed": cell.seed, "hash": short_hash(cell.hash), "status": cell.status}
            if cell.status == "ok":
                run["metrics"] = {k: v for k, v in cell.result.metrics.items() if is_number(v)}
            runs.append(run)
        settings = {k: v for k, v in config.spec.canonical().items() if k != "seed"}
        label = describe_config(config.spec, results.axes, results.distinguish)
        configs.append({"key": short_hash(config.key), "label": label, "config": settings, "runs": runs})
    suite = results.suite
    return {"format": FORMAT, "version": VERSION, "gstbench": __version__,
            "suite": {k: suite.get(k) for k in ("name", "scale", "seeds", "rank", "columns")},
            "configurations": sorted(configs, key=lambda e: e["key"]),
            "claims": claims_for(suite, results.finished)}


def export(directory: Path | str, file: Path | str) -> dict[str, Any]:
    """The export as JSON, or with a ``.csv`` name as a table: one row per cell, one column per axis and metric."""
    data = collect(directory)
    try:
        if str(file).endswith(".csv"):
            atomic_write_text(Path(file), _csv(data))
        else:
            atomic_write_json(Path(file), data)
    except OSError as exc:
        raise GstbenchError(f"cannot write {file} ({exc.strerror or exc}); pass a path in a writable "
                            f"directory") from None
    return data


def _csv(data: dict[str, Any]) -> str:
    import csv
    import io

    axes = list(dict.fromkeys(k for c in data["configurations"] for k in c["label"]))
    metrics = sorted({m for c in data["configurations"] for r in c["runs"] for m in r.get("metrics", {})})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["configuration", "hash", "seed", "status", *axes, *metrics])
    for c in data["configurations"]:
        for r in c["runs"]:
            values = r.get("metrics", {})
            writer.writerow([c["key"], r["hash"], r["seed"], r["status"], *(c["label"].get(a, "") for a in axes),
                             *(values.get(m, "") for m in metrics)])
    return buf.getvalue()


def load(path: Path | str) -> dict[str, Any]:
    """A result directory or an exported file; GstbenchError (naming the path) if it is neither."""
    p = Path(path)
    if p.is_dir():
        return collect(p)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise GstbenchError(f"{p} is neither a result directory nor a readable export: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise GstbenchError(f"{p} is not a gstbench export (no \"format\": \"{FORMAT}\")")
    version, writer = data.get("version"), data.get("gstbench", "an unknown version")
    if isinstance(version, int) and version > VERSION:
        raise GstbenchError(f"{p} is export version {version}, written by gstbench {writer}; gstbench {__version__} "
                            f"reads version {VERSION}: upgrade gstbench to {writer} or later to compare it")
    if version != VERSION:
        raise GstbenchError(f"{p} is export version {version!r}; gstbench {__version__} reads version {VERSION}: "
                            f"export its result directory again (gstbench export DIR FILE)")
    return data


def _values(entry: dict[str, Any] | None, metric: str) -> dict[int, float]:
    """seed -> value of the finished runs that report ``metric``."""
    if entry is None:
        return {}
    return {r["seed"]: r["metrics"][metric] for r in entry["runs"]
            if r["status"] == "ok" and metric in r.get("metrics", {})}


def _metric_keys(names: list[str], configurations: list[dict[str, Any]]) -> list[str]:
    """``--metric`` values as keys: a key the runs report stays; a metric's component name (``hessian-trace``)
    becomes the numeric keys named after it (``keys_named_after``, as the report reads it). A name that is neither
    is bad input (GstbenchError)."""
    metrics = [r.get("metrics", {}) for e in configurations for r in e["runs"] if r["status"] == "ok"]
    reported = sorted({k for m in metrics for k, v in m.items() if is_number(v)})
    out = []
    for name in names:
        if name in reported:
            out.append(name)
        elif named := keys_named_after(name, metrics):
            out += named
        else:
            raise GstbenchError(f"compare --metric {name}: no run on either side reports it{closest(name, reported)}; "
                                f"name a metric the runs report (`gstbench report DIR --format json` lists them)")
    return list(dict.fromkeys(out))


def parse_match(text: str) -> Match:
    """``--match AXIS=OLD:NEW`` (BASE's configurations with OLD at AXIS are compared with NEW's with NEW there, all
    else equal) or ``--match AXIS`` (AXIS is left out when configurations are matched). OLD and NEW are values as
    a table shows them (``bn-gamma``, ``0.003``) or full ids (``gstbench:bn-gamma:myplugin:flipped``)."""
    axis, eq, values = text.partition("=")
    if not axis or (eq and not values):
        raise GstbenchError(f"--match {text!r}: write AXIS=OLD:NEW (e.g. train.lr=0.003:0.0005) or AXIS")
    if not eq:
        return Match(axis, None, None)
    parts = values.split(":")
    if len(parts) % 2:
        raise GstbenchError(f"--match {text!r}: OLD:NEW must split into two values of as many parts each "
                            f"(name:name, or plugin:name:plugin:name)")
    half = len(parts) // 2
    return Match(axis, _literal(":".join(parts[:half])), _literal(":".join(parts[half:])))


def _literal(text: str) -> Any:
    """A value as TOML reads it (0.003, 16, true), else the text itself (a name)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _without(config: dict[str, Any], axes: list[str]) -> str:
    """The configuration's settings, the matched axes left out, as one comparable string."""
    config = json.loads(json.dumps(config))
    for axis in axes:
        *path, last = axis.split(".")
        node: Any = config
        for part in path:
            node = holder_of(node, part)
            node = node.get(part) if isinstance(node, dict) else None
        node = holder_of(node, last)
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(config, sort_keys=True)


def _pair(base: dict[str, dict], new: dict[str, dict], rules: list[Match]) -> dict[str, str]:
    """BASE key -> NEW key: the same configuration, or one the ``--match`` rules map onto another."""
    pairs = {k: k for k in base if k in new}
    if not rules:
        return pairs
    axes = [r.axis for r in rules]
    for side, entries in (("BASE", base), ("NEW", new)):
        if any("config" not in e for e in entries.values()):
            raise GstbenchError(f"--match needs each configuration's settings, which {side}'s export lacks (written "
                                f"before gstbench kept them): export its result directory again")
    free = {k: _without(e["config"], axes) for k, e in new.items() if k not in pairs.values()}
    for key, entry in base.items():
        if key in pairs:
            continue
        if not all(r.old is None or matches(entry["config"], r.axis, [r.old]) for r in rules):
            continue
        stripped = _without(entry["config"], axes)
        for other, text in free.items():
            if text == stripped and all(r.new is None or matches(new[other]["config"], r.axis, [r.new])
                                        for r in rules):
                pairs[key] = other
                del free[other]
                break
    return pairs


def _default_metrics(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    suite = new["suite"] if new["configurations"] else base["suite"]
    return list(dict.fromkeys(["stability", suite.get("rank") or "best_test_acc", *(suite.get("columns") or [])]))


def compare(base: dict[str, Any], new: dict[str, Any], metrics: list[str] | None = None,
            tolerances: dict[str, float] | None = None, default_tolerance: float = DEFAULT_TOLERANCE,
            better: dict[str, str] | None = None, match: list[Match] = (), allow_missing: bool = False) -> dict:
    """One row per configuration and metric, with base and new means, the delta, its interval, a verdict and the
    smallest change the seeds could detect. A configuration only in BASE fails the gate unless ``allow_missing``.

    ``better`` maps a metric to "higher" or "lower" (``Registry.better_directions``), added to the engine's own;
    a metric with no direction that changed beyond noise is "changed", neither improved nor regressed.
    """
    tolerances = tolerances or {}
    better = {**ENGINE_BETTER, **(better or {})}
    metrics = _default_metrics(base, new) if metrics is None else \
        _metric_keys(metrics, [*base["configurations"], *new["configurations"]])
    for name, value in tolerances.items():
        if name not in metrics:
            raise GstbenchError(f"--tolerance {name}={value}: {name} is not a compared metric (compared: "
                                f"{', '.join(metrics)}){closest(name, metrics)}; fix the name or add --metric {name}")
    b = {e["key"]: e for e in base["configurations"]}
    n = {e["key"]: e for e in new["configurations"]}
    pairs = _pair(b, n, list(match))
    rows = []
    units = [(k, pairs.get(k)) for k in b] + [(None, k) for k in n if k not in pairs.values()]
    units.sort(key=lambda u: (u[0] is None, label_text((n.get(u[1]) or b.get(u[0]))["label"]), u[0] or u[1]))
    for base_key, new_key in units:
        entry = n.get(new_key) or b[base_key]
        for metric in metrics:
            row = _row(b.get(base_key), n.get(new_key), metric, better.get(metric),
                       tolerances.get(metric, default_tolerance))
            if row is not None:
                row.update(key=new_key or base_key, label=entry["label"])
                if base_key and new_key and base_key != new_key:
                    row["matched"] = label_text(b[base_key]["label"])
                rows.append(row)
    return _result(rows, metrics, base, new, default_tolerance, tolerances, allow_missing)


def _row(base: dict | None, new: dict | None, metric: str, better: str | None, tolerance: float) -> dict | None:
    vb, vn = _values(base, metric), _values(new, metric)
    if not vb and not vn:
        return None
    row: dict[str, Any] = {"metric": metric, "n_base": len(vb), "n_new": len(vn),
                           "base": _mean(vb.values()), "new": _mean(vn.values())}
    if not vn:
        return {**row, "verdict": "missing"}
    if not vb:
        return {**row, "verdict": "new"}
    return {**row, **_verdict(vb, vn, better, tolerance), "detectable": _detectable(vb, vn, tolerance)}


def _detectable(vb: dict[int, float], vn: dict[int, float], tolerance: float) -> float | None:
    """The smallest change this row's test calls with 80% power, from each side's spread across seeds."""
    if len(vb) < 2 or len(vn) < 2:
        return None
    sd_b, sd_n = float(np.std(list(vb.values()), ddof=1)), float(np.std(list(vn.values()), ddof=1))
    return detectable_change(sd_b, len(vb), sd_n, len(vn), tolerance, paired=set(vb) == set(vn))


def _result(rows, metrics, base, new, default_tolerance, tolerances, allow_missing) -> dict:
    counts = {v: sum(r["verdict"] == v for r in rows)
              for v in ("regressed", "improved", "changed", "unchanged", "missing", "new")}
    claims = compare_claims(base.get("claims", []), new.get("claims", []))
    claim_counts = {v: sum(c["change"] == v for c in claims) for v in counts}
    detectable = {}
    for metric in metrics:
        values = [r.get("detectable") for r in rows if r["metric"] == metric and "detectable" in r]
        detectable[metric] = None if not values or None in values else max(values)
    missing_fails = counts["missing"] > 0 and not allow_missing
    return {"rows": rows, "counts": counts, "claims": claims, "claim_counts": claim_counts,
            "test": f"paired t-test over the seeds both sides ran (Welch t-test otherwise), p < {ALPHA}",
            "tolerances": {"default": default_tolerance, **tolerances}, "detectable": detectable,
            "allow_missing": allow_missing, "missing_fails": missing_fails,
            "regressed": counts["regressed"] > 0 or claim_counts["regressed"] > 0 or missing_fails}


def compare_claims(base: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim's verdict on both sides; a verdict lower on the scale in NEW than in BASE has regressed."""
    b, n = {c["id"]: c for c in base}, {c["id"]: c for c in new}
    rows = []
    for cid in [*b, *(k for k in n if k not in b)]:
        vb, vn = (b[cid]["verdict"] if cid in b else None), (n[cid]["verdict"] if cid in n else None)
        rb, rn = verdict_rank(vb or ""), verdict_rank(vn or "")
        if vb is not None and vn is not None and rb is None and rn is None:
            change = "unchanged"  # not run on either side (a scorer given with --scorer has its own claim rows)
        elif vn is None or (rn is None and rb is not None):
            change = "missing"
        elif vb is None or rb is None:
            change = "new"
        elif rb == rn:
            change = "unchanged"
        else:
            change = "regressed" if rn > rb else "improved"
        side = lambda c: None if c is None else {  # noqa: E731
            **{k: c[k] for k in ("verdict", "effect", "low", "high", "p", "n", "statistic", "metric", "test")},
            "verdict_label": c.get("verdict_label") or verdict_label(c["verdict"],
                                                                     (c.get("effect_tested") or {}).get("kind")),
            **{k: c[k] for k in ("level",) if k in c},
            **{k: c.get(k) for k in ("effect_tested", "power", "n_for_power")}}
        rows.append({"id": cid, "base": side(b.get(cid)), "new": side(n.get(cid)), "change": change})
    return rows


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _difference(vb: dict[int, float], vn: dict[int, float]) -> dict[str, Any]:
    """new - base: paired over seeds when both sides ran the same seeds (same init and data order), else Welch."""
    if set(vb) == set(vn) and len(vb) >= 2:
        d = np.array([vn[s] - vb[s] for s in sorted(vb)])
        mean, sd = float(d.mean()), float(d.std(ddof=1))
        if sd == 0:  # every seed moved by the same amount: a deterministic change, not noise
            return {"delta": mean, "low": mean, "high": mean, "p": 0.0 if mean else 1.0, "test": "paired"}
        se = sd / math.sqrt(d.size)
        half = float(t_quantile(1 - ALPHA / 2, d.size - 1)) * se
        return {"delta": mean, "low": mean - half, "high": mean + half,
                "p": float(min(1.0, 2 * t_sf(abs(mean) / se, d.size - 1))), "test": "paired"}
    w = welch_difference(list(vb.values()), list(vn.values()))
    delta = _mean(vn.values()) - _mean(vb.values())
    p = w["p"]
    if p is None and w.get("note") == "undefined: no variance":
        p = 0.0 if delta else 1.0  # no variance on either side: a deterministic change, not noise
    out = {"delta": delta, "low": w["low"], "high": w["high"], "p": p, "test": "welch"}
    if p is None:
        out["note"] = w.get("note")
    return out


def _verdict(vb: dict[int, float], vn: dict[int, float], better: str | None, tolerance: float) -> dict[str, Any]:
    out = {**_difference(vb, vn), "tolerance": tolerance}
    delta = out["delta"]
    if abs(delta) <= tolerance:
        return {**out, "verdict": "unchanged"}
    if out["p"] is None:  # a single seed on a side: the change cannot be told from noise
        return {**out, "verdict": "unchanged", "note": f"beyond tolerance but untested ({out['note']})"}
    if out["p"] >= ALPHA:
        return {**out, "verdict": "unchanged", "note": "beyond tolerance, within seed noise"}
    if better == "higher":
        return {**out, "verdict": "improved" if delta > 0 else "regressed"}
    if better == "lower":
        return {**out, "verdict": "improved" if delta < 0 else "regressed"}
    return {**out, "verdict": "changed"}


COMPARISON_HEADERS = ["configuration", "metric", "base", "new", "delta", "95% interval", "p", "test", "verdict"]
CLAIM_HEADERS = ["claim", "base", "new", "change"]


def comparison_tables(result: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The rows of the metrics table (one per configuration and metric) and of the claims table, as text."""
    def num(v):
        return "-" if v is None else f"{v:.4f}"

    def side(s):
        if s is None:
            return "-"
        power = "" if s.get("power") is None else f", power {format_power(s)[0]} at {format_tested(s)}"
        return f"{s['verdict_label']} ({format_effect(s)}, p={format_p(s['p'])}{power})"

    table = []
    for r in result["rows"]:
        label = label_text(r["label"]) + (f" (base: {r['matched']})" if r.get("matched") else "")
        interval = "-" if r.get("low") is None else f"[{r['low']:+.4f}, {r['high']:+.4f}]"
        delta = "-" if r.get("delta") is None else f"{r['delta']:+.4f}"
        p = "-" if r.get("p") is None else f"{r['p']:.2g}"
        table.append([label, r["metric"], num(r["base"]), num(r["new"]), delta, interval, p, r.get("test", "-"),
                      r["verdict"] + (f" ({r['note']})" if r.get("note") else "")])
    claims = [[r["id"], side(r["base"]), side(r["new"]), r["change"]] for r in result["claims"]]
    return table, claims


def comparison_summary(result: dict[str, Any]) -> str:
    summary = ", ".join(f"{v} {k}" for k, v in result["counts"].items() if v)
    lines = [f"{summary or 'nothing to compare'}; a regression is a change beyond the tolerance "
             f"(default {result['tolerances']['default']}) that a {result['test']} finds significant"]
    if result["counts"]["missing"]:
        lines.append("a configuration only in BASE fails the gate" if result["missing_fails"] else
                     "configurations only in BASE are reported, not failed (--allow-missing)")
    lines += detectability_lines(result)
    return "\n".join(lines)


def detectability_lines(result: dict[str, Any]) -> list[str]:
    """Per metric, the smallest change its seeds detect with 80% power in every configuration, and whether the
    tolerance or the seeds set that floor."""
    lines = []
    for metric, change in result["detectable"].items():
        tolerance = result["tolerances"].get(metric, result["tolerances"]["default"])
        if change is None:
            lines.append(f"{metric}: too few seeds on a side (under 2) to say what this comparison can detect")
        elif change > tolerance * 1.0001:
            lines.append(f"{metric}: this comparison cannot see changes under {change:.4g} (80% power); more "
                         f"seeds see smaller ones")
        else:
            lines.append(f"{metric}: changes past the tolerance {tolerance:g} are detected with at least 80% power")
    return lines


def render_comparison(result: dict[str, Any], tablefmt: str = "simple", width: int | None = None) -> str:
    """The comparison as the CLI prints it: one row per configuration and metric, then the claims. ``width``: the
    claims' verdict columns and the prose wrapped to fit it (a terminal; never a Markdown table). The metrics
    table keeps each row on one line: about 90 columns plus the configuration's label."""
    table, claims = comparison_tables(result)
    claim_counts = ", ".join(f"{v} {k}" for k, v in result["claim_counts"].items() if v)
    prose = comparison_summary(result).splitlines()
    claims_prose = [f"claims: {claim_counts}; a claim whose verdict moves down the scale (reproduced, weaker, "
                    f"inconclusive, no effect of the tested size, contradicted) is a regression"]
    if width is not None:
        prose, claims_prose = ([textwrap.fill(line, width, subsequent_indent="  ") for line in lines]
                               for lines in (prose, claims_prose))
    lines = [tabulate(table, headers=COMPARISON_HEADERS, tablefmt=tablefmt, disable_numparse=True), "", *prose]
    if claims:
        claim_table = tabulate(claims, headers=CLAIM_HEADERS, tablefmt=tablefmt, disable_numparse=True) \
            if width is None else fitted_table(claims, CLAIM_HEADERS, [1, 2], width, tablefmt)
        lines += ["", claim_table, "", *claims_prose]
    return "\n".join(lines)
