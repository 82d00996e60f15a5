"""The commands that read results: ``report``, ``claims``, ``plot``, ``export``, ``export-model`` and ``compare``
(a CI gate: exit 1 on a regression)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import click

from gstbench.errors import GstbenchError
from gstbench.cli.common import directory_argument, echo_json, json_option, output_option, registry, screen_width
from gstbench.reports import DEFAULT_TOLERANCE


def runtime_option():
    return click.option("--runtime", default=None, metavar="RUNTIME",
                        help="Draw accuracy against the time measured in this runtime (the speed metric's serving "
                             "batch; e.g. onnxruntime) [default: eager where speed was measured, else the latency "
                             "metric's large batch].")


@click.command("report")
@directory_argument()
@click.option("--format", "tablefmt", default="simple", show_default=True,
              type=click.Choice(["simple", "plain", "github", "latex", "csv", "json", "html"]),
              help="Table format; html: one self-contained page (claims, leaderboard, figures, environment).")
@output_option("Write the report to this file instead of stdout (e.g. --format html --output report.html).")
@click.option("--sort", "sort_by", default=None, metavar="METRIC",
              help="Rank the configurations by this metric [default: the suite's rank].")
@click.option("--metric", "metrics", multiple=True, metavar="METRIC",
              help="Add a column with this metric's mean and interval (repeatable).")
@click.option("--interval", default="bootstrap", show_default=True, type=click.Choice(["bootstrap", "t"]),
              help="Interval across seeds: studentized bootstrap, or Student-t.")
@runtime_option()
@json_option("Print machine-readable JSON (same as --format json).")
def report_cmd(directory, tablefmt, output, sort_by, metrics, interval, runtime, as_json) -> None:
    """Print the leaderboard of a result directory (written by `gstbench run --out`)."""
    from gstbench.reports.html_report import report_html, write_page
    from gstbench.store.reader import load_results
    from gstbench.reports.report import report_of
    from gstbench.reports.report_text import render_csv, render_leaderboard

    results = load_results(directory)
    data = report_of(results, rank=sort_by, interval=interval, columns=list(metrics), runtime=runtime)
    if tablefmt == "html" and not as_json:
        write_page(report_html(results, data), output)
        if output is not None:
            click.echo(f"{output}: the report of {directory}", err=True)
        return
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if output is not None else contextlib.nullcontext():
        if as_json or tablefmt == "json":
            echo_json(data.as_json())
        elif tablefmt == "csv":
            click.echo(render_csv(data), nl=False)
        else:
            click.echo(render_leaderboard(data, tablefmt=tablefmt))
    if output is not None:
        write_page(buffer.getvalue(), output)


@click.command("claims")
@click.argument("directories", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "tablefmt", default="simple", show_default=True,
              type=click.Choice(["simple", "plain", "github", "json"]), help="Table format (github: markdown).")
@json_option("Print machine-readable JSON (same as --format json).")
def claims_cmd(directories, tablefmt, as_json) -> None:
    """Every claim's verdict across result directories [default: each suite directory under ./gstbench-results/]."""
    from gstbench.reports.claim_table import claim_table, render_claim_table

    table = claim_table(registry(), list(directories) or None)
    if as_json or tablefmt == "json":
        echo_json(table)
    else:
        click.echo(render_claim_table(table, tablefmt))


@click.command("plot")
@directory_argument()
@click.option("--out", "dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the figures go [default: DIRECTORY/plots].")
@click.option("--format", "fmt", default="png", show_default=True, type=click.Choice(["png", "svg", "pdf"]))
@runtime_option()
def plot_cmd(directory, dest, fmt, runtime) -> None:
    """Draw the figures a result directory's results allow (matplotlib, no display needed)."""
    from gstbench.reports.plots import plot_all

    done = plot_all(directory, dest or directory / "plots", fmt, runtime)
    for path in done["written"]:
        click.echo(path)
    for name, why in done["skipped"].items():
        click.echo(f"skipped {name}: {why}", err=True)


@click.command("export")
@directory_argument()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export_cmd(directory, file) -> None:
    """Write a result directory as one versioned JSON file (a CI baseline), or FILE.csv: one row per cell."""
    from gstbench.reports.compare import export

    data = export(directory, file)
    runs = sum(len(c["runs"]) for c in data["configurations"])
    click.echo(f"{file}: {len(data['configurations'])} configurations, {runs} runs", err=True)


@click.command("export-model")
@click.argument("cell", type=click.Path(exists=True, path_type=Path))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--masked", is_flag=True,
              help="Keep the trained shapes, dead filters zeroed [default: dead filters physically removed].")
def export_model_cmd(cell, file, masked) -> None:
    """Write a cell's stored model (CELL: cells/<hash16> of a run directory) to FILE:
    .safetensors (weights, kept filters and spec; gstbench.load_model reads it) or .pt2 (a torch.export
    program: torch.export.load(FILE).module() runs it without gstbench)."""
    from gstbench.engine.artifacts import export_model

    model = export_model(cell, file, structured=not masked, registry=registry())
    params = sum(p.numel() for p in model.parameters())
    click.echo(f"{file}: {model.gstbench_spec.model.label}, {params:,} parameters, "
               f"{'masked' if masked else 'dead filters removed'}", err=True)


@click.command("compare")
@click.argument("base", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "tablefmt", default="plain", show_default=True,
              type=click.Choice(["plain", "github", "simple", "json", "html"]),
              help="Output format; html: one self-contained page (a CI artifact).")
@output_option("Write the comparison to this file instead of stdout (e.g. --format html --output cmp.html).")
@click.option("--metric", "metrics", multiple=True, metavar="METRIC",
              help="Compare this metric (repeatable) [default: stability, the suite's rank and columns].")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[METRIC=]VALUE",
              help=f"Smallest change that counts (absolute; default {DEFAULT_TOLERANCE}), for all metrics or one.")
@click.option("--match", "matches", multiple=True, metavar="AXIS=OLD:NEW",
              help="Compare BASE's configurations with OLD at AXIS with NEW's that have NEW there, all else equal "
                   "(e.g. train.lr=0.003:0.0005); a bare AXIS leaves it out of the matching (repeatable).")
@click.option("--allow-missing", is_flag=True,
              help="Report configurations only in BASE without failing [default: they fail the gate].")
def compare_cmd(base, new, tablefmt, output, metrics, tolerances, matches, allow_missing) -> None:
    """Compare two result sets (directories or exports); exit 1 if anything regressed or a configuration of BASE
    is missing from NEW, 2 on bad input."""
    from gstbench.reports.compare import compare, load, parse_match, render_comparison

    default, per_metric = DEFAULT_TOLERANCE, {}
    for t in tolerances:
        name, _, value = t.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not 0 <= number < float("inf"):
            raise GstbenchError(f"--tolerance {t!r}: write VALUE or METRIC=VALUE with VALUE a number >= 0 "
                                f"(e.g. --tolerance stability=0.02)")
        if name:
            per_metric[name] = number
        else:
            default = number
    from gstbench.reports.html_report import comparison_html, write_page

    result = compare(load(base), load(new), list(metrics) or None, per_metric, default,
                     registry().better_directions(), [parse_match(m) for m in matches], allow_missing)
    if tablefmt == "html":
        page = comparison_html(result, str(base), str(new))
    elif tablefmt == "json":
        page = json.dumps(result, indent=2, sort_keys=True, default=str) + "\n"
    else:
        page = render_comparison(result, tablefmt, None if tablefmt == "github" else screen_width()) + "\n"
    if output is None:
        click.echo(page, nl=False)
    else:
        write_page(page, output)
        click.echo(f"{output}: {'regressed' if result['regressed'] else 'no regression'}", err=True)
    sys.exit(1 if result["regressed"] else 0)


COMMANDS = [report_cmd, claims_cmd, plot_cmd, export_cmd, export_model_cmd, compare_cmd]
