"""Self-contained HTML pages of a run (``report --format html``) and of a comparison (``compare --format html``).

One file each, readable offline and as a CI artifact: styles inline, figures inline as SVG
images (data URIs), no script and no network. The tables are the terminal's, cell for cell.
"""

from __future__ import annotations

import base64
import datetime
import io
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from gstbench.plan.config import short_hash
from gstbench.reports.claims import CLAIM_HEADERS, VERDICT_LEGEND, claim_notes, claim_rows, count_verdicts
from gstbench.store.reader import RunResults

if TYPE_CHECKING:
    from gstbench.reports.report import Leaderboard

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2430; margin: 0; background: #f6f7f9; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 32px 0 8px; border-bottom: 1px solid #d8dce3; padding-bottom: 4px; }
p.meta { color: #5a6472; margin: 0 0 4px; }
.tally span { display: inline-block; margin-right: 14px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid #d8dce3; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #eceef2; vertical-align: top; white-space: nowrap; }
td.wrap { white-space: normal; min-width: 260px; max-width: 420px; }
#claims th, #claims td { padding: 5px 7px; } #claims th { white-space: normal; }
#claims td.wrap { min-width: 110px; max-width: 210px; } #claims .verdict { display: inline-block; white-space: normal; }
th { background: #eef1f5; font-weight: 600; position: sticky; top: 0; }
tr.part td { color: #5a6472; font-size: 13px; background: #fbfbfc; }
tr.part td:first-child { padding-left: 24px; }
.verdict { font-weight: 600; padding: 1px 7px; border-radius: 10px; font-size: 12px; }
.reproduced, .improved, .same { background: #dff3e4; color: #17652d; }
.contradicted, .regressed { background: #fbe1e1; color: #9b1c1c; }
.inconclusive, .changed { background: #fff1cc; color: #7a5200; }
.weaker, .no { background: #e3e8f8; color: #2a3f7a; }
.unchanged, .missing, .not { background: #e9ecf1; color: #3c4450; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #d8dce3; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: #5a6472; font-size: 12px; margin-top: 4px; }
pre { white-space: pre-wrap; background: #fff; border: 1px solid #d8dce3; border-radius: 6px; padding: 12px; overflow-x: auto; font-size: 12px; }
code { font-size: 12px; } .note { color: #5a6472; font-size: 13px; }
"""


def _table(headers: list[str], rows: Iterable[list[Any]], table_id: str | None = None,
           row_classes: Iterable[str] | None = None, wrap: set[int] = frozenset()) -> str:
    classes = list(row_classes) if row_classes is not None else None
    head = "".join(f"<th>{escape(str(h))}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        cells = "".join(f'<td{" class=wrap" if j in wrap else ""}>{_cell(v)}</td>' for j, v in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    ident = f' id="{table_id}"' if table_id else ""
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return value.html
    return escape(str(value))


class _Raw:
    """Markup made here (a verdict badge), not text to escape."""

    def __init__(self, html: str):
        self.html = html


def _badge(verdict: str) -> _Raw:
    word = verdict.split(" ")[0].lower()  # the class: reproduced, weaker, no (effect of ...), contradicted, ...
    return _Raw(f'<span class="verdict {escape(word)}">{escape(verdict)}</span>')


def _page(title: str, body: list[str]) -> str:
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from gstbench import __version__

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body><main>"
            + "\n".join(body)
            + f'<p class="note">made by gstbench {escape(__version__)} on {made}</p></main></body></html>\n')


def _svg_data_uri(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg")
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _claims_section(claims: list[dict[str, Any]]) -> list[str]:
    if not claims:
        return ["<h2>Claims</h2><p class=note>This suite declares no claims.</p>"]
    # what says whether a verdict could have come out otherwise first: the claim (a part: its label), the verdict,
    # the measure, its power and the runs 80% needs; then p, n, the effect tested, the paper's figure and the test,
    # the long ones wrapped, so that the table fits a 1280-pixel window
    order = [0, 9, 2, 7, 8, 4, 5, 6, 1, 3]
    rows, classes = [], []
    for kind, cells in claim_rows(claims, mark=lambda v: v.upper()):
        if kind == "part":  # the part's label in the claim's column, "decides" in words
            cells[0], cells[1] = cells[1].strip().removeprefix("· "), ""
            if " <- decides" in cells[9]:
                cells[9], cells[0] = cells[9].replace(" <- decides", ""), cells[0] + " (decides)"
        cells[9] = _badge(cells[9])
        rows.append([cells[i] for i in order])
        classes.append(kind)
    notes = "".join(f"<p class=note>{escape(line)}</p>" for line in claim_notes(claims))
    return ["<h2>Claims</h2>", f"<p>{escape(count_verdicts(claims))}</p>",
            _table([CLAIM_HEADERS[i] for i in order], rows, "claims", classes, wrap={0, 1, 7, 8, 9}), notes,
            f"<p class=note>{escape(VERDICT_LEGEND)}</p>"]


def _environment_section(results: RunResults) -> list[str]:
    seen: dict[tuple, int] = {}
    for cell in results.cells:
        if cell.result is None:
            continue
        env = cell.result.environment
        key = (env.gstbench, env.torch, env.python, env.device, env.threads, env.host,
               ", ".join(f"{k} {v}" for k, v in sorted(env.plugins.items())) or "-")
        seen[key] = seen.get(key, 0) + 1
    if not seen:
        return []
    rows = [[*key[:4], "-" if key[4] is None else key[4], key[5], key[6], n] for key, n in seen.items()]
    note = ("" if len(seen) == 1 else "<p class=note>The cells were computed in more than one environment: CPU "
            "results are bitwise equal only for the same torch build, CPU and thread count.</p>")
    return ["<h2>Environment</h2>",
            _table(["gstbench", "torch", "python", "device", "threads", "host", "plugins", "cells"], rows,
                   "environment", wrap={6}), note]


def report_html(results: RunResults, report: Leaderboard) -> str:
    """The run's page: suite, claims, leaderboard, figures, failed and corrupt cells, environment."""
    from gstbench.reports.plots import figures
    from gstbench.reports.report_text import leaderboard_table, render_leaderboard

    import matplotlib.pyplot as plt

    suite, totals = report.suite, report.totals
    title = f"gstbench: {suite.get('name')} ({suite.get('scale')})"
    body = [f"<h1>{escape(title)}</h1>"]
    if suite.get("description"):
        body.append(f'<p class="meta">{escape(suite["description"])}</p>')
    body.append(f'<p class="meta">{escape(str(results.directory))} · seeds {escape(_seeds(suite))}</p>')
    body.append('<p class="tally">' + "".join(f"<span><b>{totals[k]}</b> {k}</span>" for k in
                                             ("cells", "ok", "failed", "corrupt", "missing")) + "</p>")
    body += _claims_section(report.claims)
    headers, rows = leaderboard_table(report)
    labels = [tuple(row[:headers.index("rate %")]) for row in rows]  # every label column, axes included
    if len(set(labels)) < len(labels):  # configurations that differ only in an option no column shows
        headers = ["key", *headers]
        rows = [[r.configuration[:8], *row] for r, row in zip(report.rows, rows)]
    c = report.correlation
    if c["pearson_r"] is None:
        corr = f"stability vs {c['y']}: {c.get('note', 'undefined')} (n = {c['n']})"
    else:
        low = "" if c.get("pearson_low") is None else f" [{c['pearson_low']:+.2f}, {c['pearson_high']:+.2f}]"
        corr = (f"stability vs {c['y']} over {c['n']} pruned runs: Pearson r = {c['pearson_r']:+.3f}{low} "
                f"(p = {c['pearson_p']:.2g}), Kendall tau = {c['kendall_tau']:+.3f} (p = {c['kendall_p']:.2g})")
    body += ["<h2>Leaderboard</h2>", _table(headers, rows, "leaderboard"), f"<p>{escape(corr)}</p>",
             f"<p class=note>One row per configuration across seeds, sorted by {escape(report.rank)}; "
             f"[low, high]: {escape(report.interval)}; 'best test' is the "
             f"best test accuracy at or after the last pruning event.</p>"]
    if report.methods is not None:
        from gstbench.reports.methods import methods_tables

        body.append("<h2>Methods by compression level</h2>")
        for caption, headers, rows in methods_tables(report.methods):
            body.append(f"<p>{escape(caption)}</p>")
            if headers:
                body.append(_table(headers, rows))
    if report.speed is not None:
        body += _speed_section(report.speed)
    drawn, skipped = [], []
    for name, fig, why in figures(results, report):
        if fig is None:
            skipped.append(f"<li>{escape(name.replace('_', ' '))}: {escape(why)}</li>")
            continue
        try:
            drawn.append(f'<figure><img alt="{escape(name)}" src="{_svg_data_uri(fig)}">'
                         f"<figcaption>{escape(name.replace('_', ' '))}</figcaption></figure>")
        finally:
            plt.close(fig)
    body.append("<h2>Figures</h2>")
    body.append(f'<div class="figures">{"".join(drawn)}</div>' if drawn else "<p class=note>No figure: the "
                                                                             "results allow none yet.</p>")
    if skipped:
        body.append(f'<p class=note>Not drawn:</p><ul class="note">{"".join(skipped)}</ul>')
    failed = [[short_hash(e["hash"]), e["seed"], " ".join(str(r.label[k]) for k in ("scorer", "target", "effector",
                                                                                    "period")
                                                         if r.label[k] != "-") or "unpruned", e["error"]]
              for r in report.rows for e in r.errors]
    body.append("<h2>Failed and corrupt cells</h2>")
    if failed:
        body.append(_table(["cell", "seed", "configuration", "error"], failed, "failed", wrap={3}))
    if report.corrupt:
        body.append(_table(["cell directory", "problem"], [[c["cell"], c["problem"]] for c in report.corrupt],
                           "corrupt", wrap={1}))
        body.append("<p class=note>`gstbench run` moves a corrupt file aside and recomputes its cell.</p>")
    if not failed and not report.corrupt:
        body.append("<p class=note>None.</p>")
    body += _environment_section(results)
    body += ["<h2>The full text report</h2>", f"<pre>{escape(render_leaderboard(report))}</pre>"]
    return _page(title, body)


def _speed_section(speed: dict[str, Any]) -> list[str]:
    """Per network: the measured and the delivered speed-ups per runtime and batch, and their notes."""
    from gstbench.reports.speed_tables import caption, network_notes, network_table, threads

    out = ["<h2>Speed: measured against predicted</h2>",
           f"<p class=note>Measured on {escape(str(speed['device']))}, {escape(threads(speed['threads']))} per "
           f"network timed: a speed-up belongs to this machine and runtime.</p>"]
    for network in speed["networks"]:
        for what in ("realized", "delivered"):
            out += [f"<p>{escape(caption(network, what))}</p>", network_table(network, what, "html")]
        out.append('<ul class="note">' + "".join(f"<li>{escape(n)}</li>" for n in network_notes(network)) + "</ul>")
    return out


def _seeds(suite: dict[str, Any]) -> str:
    seeds = suite.get("seeds") or []
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds)) or "-"


def comparison_html(result: dict[str, Any], base: str, new: str) -> str:
    """The comparison's page (a CI artifact): every configuration and metric, then the claims' verdicts."""
    from gstbench.reports.compare import CLAIM_HEADERS, COMPARISON_HEADERS, comparison_summary, comparison_tables

    table, claims = comparison_tables(result)
    verdict = "regressed" if result["regressed"] else "no regression"
    title = f"gstbench compare: {verdict}"
    rows = [[*row[:-1], _badge(row[-1])] for row in table]
    body = [f"<h1>{escape(title)}</h1>", f'<p class="meta">base {escape(base)} · new {escape(new)}</p>',
            *(f"<p>{escape(line)}</p>" for line in comparison_summary(result).splitlines()), "<h2>Metrics</h2>",
            _table(COMPARISON_HEADERS, rows, "comparison")]
    if claims:
        body += ["<h2>Claims</h2>", _table(CLAIM_HEADERS, [[*row[:-1], _badge(row[-1])] for row in claims], "claims"),
                 "<p class=note>A claim reproduced in BASE and not in NEW is a regression.</p>"]
    return _page(title, body)


def write_page(page: str, output: Path | None) -> None:
    """Write ``page`` to ``output`` (stdout when None); an unwritable file is one line naming it."""
    import sys

    from gstbench.errors import GstbenchError

    if output is None:
        sys.stdout.write(page)
        return
    try:
        Path(output).write_text(page, encoding="utf-8")
    except OSError as exc:
        raise GstbenchError(f"cannot write {output} ({exc.strerror or exc}); pass --output a writable file") from None
