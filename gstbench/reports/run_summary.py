"""What ``gstbench run`` prints at its end: one line per leaderboard row and one per claim, fitted to a width.

The full tables (every column, each claim's parts, the correlations, the legend) are ``gstbench report``'s and
the HTML page's; this screen says what a run found and where to read more, and no line is wider than the
terminal (100 columns when stdout is not one).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from tabulate import tabulate

from gstbench.reports.claim_stats import format_effect, format_power
from gstbench.reports.claims import count_verdicts, label_of
from gstbench.reports.methods import curve_table
from gstbench.reports.report import TABLE_STATS, Leaderboard, Row
from gstbench.reports.speed_tables import render_speed
from gstbench.reports.report_text import problem_lines, tie_warnings, totals_line
from gstbench.plan.selection import label_text
from gstbench.reports.stats import format_number, format_percent

WIDTH = 100
MIN_LABEL = 16  # a configuration's label is shortened (with …) to this, or to where the labels stay distinct
MIN_METHOD = 24  # a method's name in the curve: below this the intervals give way to the means


def render_run_summary(report: Leaderboard, out: Path, width: int = WIDTH) -> str:
    """The end of ``run``: the leaderboard's rows, the claims' verdicts, the cells' totals and where the full
    report is; no line longer than ``width``."""
    lines = [*([] if report.untrained else _leaderboard_lines(report, width)), *_curve_lines(report, width),
             *_speed_lines(report, width), *_claim_lines(report.claims, width)]
    prose = [*tie_warnings(report.rows), _totals(report), *problem_lines(report)]
    lines += [textwrap.fill(text, width=width, subsequent_indent="  ", break_long_words=True) for text in prose]
    lines += ["full tables, each claim's parts, the legend (a page: add --format html --output report.html):",
              f"  gstbench report {out}"]  # never wrapped: a path cut in two cannot be pasted
    return "\n".join(lines)


def _leaderboard_lines(report: Leaderboard, width: int) -> list[str]:
    """The rows in rank order: configuration, seeds, stability, the rank's metric, then each other statistic of
    the table while the line fits."""
    if not report.rows:
        return []
    wanted = list(dict.fromkeys([report.rank, "stability", *TABLE_STATS, *report.columns]))
    shown: list[str] = []
    for stat in wanted:
        table = _table(report.rows, [*shown, stat], width)
        if shown and table is None:
            continue  # too wide: the report has it
        shown.append(stat)
    order = list(dict.fromkeys(["stability", report.rank, *TABLE_STATS, *report.columns]))
    shown = [s for s in order if s in shown]  # stability before the rank, as the report has them
    table = _table(report.rows, shown, width) or _table(report.rows, shown, width, squeeze=True)
    rank = TABLE_STATS.get(report.rank, report.rank)
    common = _titles(report.rows)[1]
    if common and not all(row.title in table for row in report.rows):  # the rows lost their common parts to fit
        title = f"leaderboard, by {rank}; mean [95% interval] over seeds; every row: {common}"
        return [textwrap.fill(title, width=width, subsequent_indent="  ", break_on_hyphens=False), table, ""]
    return [f"leaderboard, by {rank}; mean [95% interval] over seeds", table, ""]


def _curve_lines(report: Leaderboard, width: int) -> list[str]:
    """A methods comparison's curve: each method's rank metric at each level, with intervals where they fit,
    else the means (the report has both); method names shortened last."""
    if not report.methods or not report.methods["levels"]:
        return []
    for intervals in (True, False):
        caption, headers, rows = curve_table(report.methods, intervals)
        rest = max(map(len, tabulate([r[1:] for r in rows], headers=headers[1:],
                                     disable_numparse=True).splitlines()))
        room = width - rest - 2
        if room >= MIN_METHOD:
            break
    room = max(room, MIN_LABEL)
    table = tabulate([[_shorten(r[0], room), *r[1:]] for r in rows], headers=headers, disable_numparse=True)
    return [textwrap.fill(caption, width=width, subsequent_indent="  "), table, ""]


def _speed_lines(report: Leaderboard, width: int) -> list[str]:
    """Each network's realized speed-ups per runtime and batch beside the predicted one, where the run measured
    speed and compares no methods (a methods comparison's curve is its summary; the report has the tables)."""
    if report.speed is None or report.methods:
        return []
    return [block if "\n" in block else  # a table stays as it is; a sentence is wrapped
            textwrap.fill(block, width=width, subsequent_indent="  ", break_on_hyphens=False)
            for block in render_speed(report.speed, delivered=False)]


def _titles(rows: list[Row]) -> tuple[list[str], str]:
    """Each row's title without the label parts every row that has them shares (one scorer, one effector), and
    those parts: a row cut short by ``…`` could lose the part that tells it from another."""
    values: dict[str, set] = {}
    for row in rows:
        for key, value in row.label.items():
            if value != "-":
                values.setdefault(key, set()).add(str(value))
    common = {key for key, seen in values.items() if len(seen) == 1 and len(rows) > 1}
    titles = [label_text({k: v for k, v in row.label.items() if k not in common}) or row.title for row in rows]
    return titles, " ".join(next(iter(values[k])) for k in values if k in common)


def _table(rows: list[Row], stats: list[str], width: int, squeeze: bool = False) -> str | None:
    """The table with these statistics, configuration labels fitted to ``width`` (without the parts all rows
    share where the whole label would not fit, then shortened); None if it cannot."""
    headers = ["configuration", "n", *(TABLE_STATS.get(s, s) for s in stats)]
    body = [[r.title, _count(r), *(_stat(r, s) for s in stats)] for r in rows]
    rest = max(map(len, tabulate([row[1:] for row in body], headers=headers[1:],
                                 disable_numparse=True).splitlines()))
    room = width - rest - 2
    if max(len(row[0]) for row in body) > room:
        body = [[title, *row[1:]] for title, row in zip(_titles(rows)[0], body)]
    if room < _distinct_room([row[0] for row in body]) and not squeeze:
        return None  # the labels cut short would no longer tell the rows apart
    body = [[_shorten(row[0], max(room, 1)), *row[1:]] for row in body]
    text = tabulate(body, headers=headers, disable_numparse=True)
    return text if squeeze or max(map(len, text.splitlines())) <= width else None


def _distinct_room(titles: list[str]) -> int:
    """The width the labels need, at least ``MIN_LABEL``: the shortest at which, cut with ``…``, they differ."""
    longest = max(map(len, titles))
    for room in range(MIN_LABEL, longest):
        if len({_shorten(t, room) for t in titles}) == len(set(titles)):
            return room
    return max(longest, MIN_LABEL)


def _count(row: Row) -> str:
    extra = {"failed": row.failed, "missing": row.missing, "corrupt": row.corrupt}
    return f"{row.n}" + "".join(f" +{n} {what}" for what, n in extra.items() if n)


def _stat(row: Row, name: str) -> str:
    stat = row.stats.get(name)
    if stat is None:
        return "-"
    return format_percent(stat) if name in TABLE_STATS else format_number(stat)  # as the leaderboard has them


def _shorten(text: str, room: int) -> str:
    return text if len(text) <= room else text[:room - 1] + "…"


def _claim_lines(claims: list[dict[str, Any]], width: int) -> list[str]:
    """One line per claim: its id, verdict, measured effect with the interval its verdict used, and power."""
    if not claims:
        return []
    rows = []
    for c in claims:
        power, n80 = format_power(c)
        name = c["id"] + (" *" if c.get("design_check") else "")
        rows.append([name, label_of(c).upper(), format_effect(c), power, n80])
    headers = ["claim", "verdict", "measured [interval]", "power", "n for 80%"]
    table = tabulate(rows, headers=headers, disable_numparse=True)
    if max(map(len, table.splitlines())) > width:  # the runs 80% power needs are in the report
        table = tabulate([r[:4] for r in rows], headers=headers[:4], disable_numparse=True)
    if max(map(len, table.splitlines())) > width:
        cut = [[_shorten(r[0], 20), _shorten(r[1], 24), _shorten(r[2], 36), r[3]] for r in rows]
        table = tabulate(cut, headers=headers[:4], disable_numparse=True)
    lines = [f"claims: {count_verdicts(claims)}", table]
    if any(c.get("design_check") for c in claims):
        lines.append("* a design check: the suite's design was chosen to meet it, so it reproduces nothing alone")
    return [*lines, ""]


def _totals(report: Leaderboard) -> str:
    text = totals_line(report)
    if report.time and report.time["wall_s"]:
        text += f"; {report.time['wall_s']:.1f} s in {report.time['cells']} cells"
    return text
