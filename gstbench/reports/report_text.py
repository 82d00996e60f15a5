"""The leaderboard as text: the table (terminal, CSV, HTML alike), the correlations, the per-round tables, the
answer to the suite's question, the claims and the totals, as ``gstbench report`` prints them."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from gstbench.plan.config import short_hash
from gstbench.reports.claims import render_claims
from gstbench.reports.methods import render_methods
from gstbench.reports.speed_tables import render_speed
from gstbench.reports.report import ROW_STATS, TABLE_STATS, TWIN_STATS, Leaderboard, Row, value_of
from gstbench.reports.stats import format_number, format_percent


def _render_rounds(report: Leaderboard, tablefmt: str) -> list[str]:
    """Prune-retrain suites: test accuracy (and LMC barrier) per round, with each round's sparsity."""
    rows = [r for r in report.rows if r.rounds]
    if not rows:
        return []
    extra = report.extra_axes
    n_rounds = max(len(r.rounds) for r in rows)
    sparsity = {i: {f"{100 * r.rounds[i]['sparsity']:.1f}" for r in rows if i < len(r.rounds)}
                for i in range(n_rounds)}
    heads = [f"r{i} ({sparsity[i].pop()}%)" if len(sparsity[i]) == 1 else f"r{i}" for i in range(n_rounds)]
    label = ["scorer", "target", *extra]
    lines = []
    for key, title, fmt in (("final_test_acc", "final test accuracy % per round (sparsity of the pruned layers)",
                             format_percent),
                            ("lmc_barrier", "LMC barrier % per round: max test error on the path between two "
                                            "copies trained with different data orders, minus the endpoints' mean",
                             format_percent),
                            ("weight_distance", "normalized L2 distance between the two copies' masked weights "
                                                "per round", format_number)):
        if not any(key in x for r in rows for x in r.rounds):
            continue
        table = [[r.label["scorer"], r.label["target"], *(r.label[a] for a in extra),
                  *(fmt(x[key]) if key in x else "-" for x in r.rounds)] for r in rows]
        lines += ["", title + ":", tabulate(table, headers=[*label, *heads], tablefmt=tablefmt,
                                             disable_numparse=True)]
    return lines


def _render_answer(answer: dict[str, Any], tablefmt: str) -> list[str]:
    groups = answer["groups"]
    pairs = [(p["a"], p["b"]) for p in answer["rows"][0]["pairs"]]
    headers = [answer["split"] or "", *(f"{g} %" for g in groups), *(f"{a} - {b}" for a, b in pairs)]
    table = []
    for row in answer["rows"]:
        cells = [row["split"], *(format_percent(row["groups"][g]) + f" (n={row['groups'][g]['n']})" for g in groups)]
        for p in row["pairs"]:
            if p["diff"] is None:
                cells.append("-")
            elif p["p"] is None:
                cells.append(f"{100 * p['diff']:+.2f}")
            else:
                cells.append(f"{100 * p['diff']:+.2f} ± {100 * (p['high'] - p['diff']):.2f} (p={p['p']:.2g})")
        table.append(cells)
    return ["", f"{answer['question']} ({answer['metric']}, runs pooled per group; difference with a 95% Welch "
                f"interval and two-sided Welch t-test p)",
            tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True)]


def leaderboard_table(report: Leaderboard) -> tuple[list[str], list[list[str]]]:
    """The leaderboard's headers and rows as text, one row per configuration (terminal and HTML alike)."""
    extra = report.extra_axes
    twins = any("lmc_barrier" in r.stats for r in report.rows)
    # the rank gets a column too, unless the table shows it already (e.g. best_test_acc)
    columns = [c for c in dict.fromkeys([report.rank, *report.columns]) if c not in {*TABLE_STATS, *TWIN_STATS}]
    headers = ["scorer", "target", "effector", "period", *extra, "rate %", "n", *TABLE_STATS.values(),
               *(TWIN_STATS.values() if twins else []), *columns]
    table = []
    for r in report.rows:
        table.append([*r.label.values(), "-" if not r.rate else f"{100 * r.rate:.1f}",
                      f"{r.n}" + (f" (+{r.failed} failed)" if r.failed else "")
                      + (f" (+{r.corrupt} corrupt)" if r.corrupt else "")
                      + (f" (+{r.missing} missing)" if r.missing else ""),
                      *(format_percent(r.stats[s]) for s in TABLE_STATS),
                      *([format_percent(r.stats["lmc_barrier"]) if "lmc_barrier" in r.stats else "-",
                         format_number(r.stats["weight_distance"]) if "weight_distance" in r.stats else "-"]
                        if twins else []),
                      *(format_number(value_of(r, c)) for c in columns)])
    return headers, table


def render_csv(report: Leaderboard) -> str:
    """One row per configuration: its label columns (suite axes included) and every statistic's mean/low/high."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    extra = report.extra_axes
    rows = [r.as_json() for r in report.rows]
    stats = [s for s in (*ROW_STATS, *TWIN_STATS, report.rank, *report.columns) if any(s in r for r in rows)]
    stats = list(dict.fromkeys(stats))  # the rank may be one of the above
    writer.writerow(["scorer", "target", "effector", "period", *extra, "rate", "n", "failed", "corrupt", "missing"]
                    + [f"{s}_{p}" for s in stats for p in ("mean", "low", "high")])
    for r in rows:
        writer.writerow([r["scorer"], r["target"], r["effector"], r["period"], *(r[a] for a in extra), r["rate"],
                         r["n"], r["failed"], r["corrupt"], r["missing"]]
                        + [r[s][p] if s in r else "" for s in stats for p in ("mean", "low", "high")])
    return out.getvalue()


def render_leaderboard(report: Leaderboard, tablefmt: str = "simple") -> str:
    headers, table = leaderboard_table(report)
    c = report.correlation
    lines = [tabulate(table, headers=headers, tablefmt=tablefmt, disable_numparse=True), "",
             f"sorted by {report.rank}; [low, high]: {report.interval}; "
             f"'best test' is the best test accuracy at or after the last pruning event."]
    lines += tie_warnings(report.rows)
    if c["pearson_r"] is None:
        lines.append(f"stability vs {c['y']}: {c.get('note', 'undefined')} (n = {c['n']})")
    else:
        lines.append(tabulate([["Pearson r", f"{c['pearson_r']:+.3f}" + _r_interval(c), f"{c['pearson_p']:.2g}"],
                               ["Kendall tau", f"{c['kendall_tau']:+.3f}", f"{c['kendall_p']:.2g}"]],
                              headers=[f"stability vs {c['y']} ({c['n']} pruned runs)", "value", "p"],
                              tablefmt=tablefmt, disable_numparse=True))
    lines += _render_rounds(report, tablefmt)
    lines += _render_analyses(report, tablefmt)
    if report.methods is not None:
        lines += render_methods(report.methods, tablefmt)
    if report.speed is not None:
        lines += ["", *render_speed(report.speed, tablefmt)]
    if report.answer:
        lines += _render_answer(report.answer, tablefmt)
    lines += render_claims(report.claims, tablefmt)
    lines.append(totals_line(report))
    time_split = report.time
    if time_split and time_split["wall_s"]:
        def part(name: str, v: dict) -> str:
            return f"{name} {v['s']:.1f} s ({100 * v['share']:.1f}%)"
        lines.append(f"time in {time_split['cells']} cells: {time_split['wall_s']:.1f} s; "
                     + ", ".join(part(k, v) for k, v in time_split["parts"].items() if v["s"] > 0))
        if time_split["metrics"]:
            lines.append("  metrics: " + ", ".join(part(k, v) for k, v in time_split["metrics"].items())
                         + " (shared work counts for the first metric that needs it)")
    lines += [f"  {line}" for line in problem_lines(report)]
    return "\n".join(lines)


def totals_line(report: Leaderboard) -> str:
    t = report.totals
    return (f"cells: {t['ok']} ok, {t['failed']} failed, " + (f"{t['corrupt']} corrupt, " if t["corrupt"] else "")
            + f"{t['missing']} missing")


def problem_lines(report: Leaderboard) -> list[str]:
    """A line per failed cell (its error) and per corrupt one (what is wrong with it)."""
    return [*(f"failed cell {short_hash(err['hash'])} (seed {err['seed']}): {err['error']}"
              for r in report.rows for err in r.errors),
            *(f"corrupt cell {bad['cell']}: {bad['problem']}" for bad in report.corrupt)]


TIED_MOST = 0.5  # a scorer that ties on more than half of the alive units per event ranks little of what it prunes


def tie_warnings(rows: list[Row]) -> list[str]:
    """A line for each configuration whose scores tied on most alive units at its pruning events."""
    out = []
    for r in rows:
        if r.tied is not None and r.tied > TIED_MOST:
            out.append(f"ties: {r.title}: scores tied on {100 * r.tied:.0f}% of the alive units per pruning event "
                       f"(mean); among tied units the pick is a draw from the cell's seed, not a ranking")
    return out


def _r_interval(c: dict[str, Any]) -> str:
    """Pearson r's 95% interval (Fisher z), when defined."""
    return "" if c.get("pearson_low") is None else f" [{c['pearson_low']:+.2f}, {c['pearson_high']:+.2f}]"


def _render_analyses(report: Leaderboard, tablefmt: str) -> list[str]:
    """The suite's declared correlations, and prune potential when rounds measured shifted data."""
    lines = []
    corr = report.correlations
    if corr:
        lines += ["", tabulate([[f"{c['x']} vs {c['y']}", c["n"],
                                 *((f"{c['pearson_r']:+.3f}" + _r_interval(c), f"{c['pearson_p']:.2g}",
                                    f"{c['kendall_tau']:+.3f}",
                                    f"{c['kendall_p']:.2g}") if c["pearson_r"] is not None else
                                   (c.get("note", "undefined"), "", "", ""))] for c in corr],
                               headers=["pruned runs", "n", "Pearson r", "p", "Kendall tau", "p"],
                               tablefmt=tablefmt, disable_numparse=True)]
    rows = [r for r in report.rows if r.potential is not None]
    if rows:
        shifts = [k for k in rows[0].potential["pooled"] if k not in ("nominal", "mean")]
        delta = rows[0].potential["delta"]
        table = [[r.label["scorer"], r.label["target"], r.label["effector"], r.n,
                  *(format_percent(r.potential["pooled"].get(k, {"mean": None}))
                    for k in ("nominal", *shifts, "mean"))] for r in rows]
        lines += ["", f"prune potential % (largest pruned share of filters whose error stays within "
                      f"{100 * delta:g} points of the parent's; contiguous from the smallest ratio; per seed, "
                      f"then mean [95% interval])",
                  tabulate(table, headers=["scorer", "target", "effector", "n", "nominal", *shifts, "all shifts"],
                           tablefmt=tablefmt, disable_numparse=True)]
        table = []
        for r in rows:
            for x in r.potential["by_round"][1:]:
                table.append([r.label["scorer"], r.label["target"], f"{100 * x['sparsity']:.1f}",
                              format_percent(x["nominal_acc"]), format_percent(x["ood_acc"]),
                              format_percent(x["excess_error"]) if "excess_error" in x else "-"])
        lines += ["", "accuracy and excess error by prune ratio (excess error: (err(D') - err(D)) - "
                      "(err_parent(D') - err_parent(D)), mean over shifts and severities)",
                  tabulate(table, headers=["scorer", "target", "pruned %", "nominal %", "shifted %", "excess error %"],
                           tablefmt=tablefmt, disable_numparse=True)]
    return lines
