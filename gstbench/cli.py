"""The ``gstbench`` command line: thin click commands that call the library and print.

One module on purpose: every command, its options and its help text in one place, each a
few lines that parse, call the library and print; tables, CSV and pages are rendered by the
modules that compute them (reports/: report, claim_table, compare, html_report). Commands
import what they need inside their bodies: ``--help`` and the listings load no torch.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import signal
import sys
from pathlib import Path

import click
from tabulate import tabulate

from gstbench.components import KINDS, REQUIRED
from gstbench.errors import GstbenchError, StorageError, Terminated, install_warning_format
from gstbench.run.leases import DEFAULT_TIMEOUT_S as DEFAULT_LEASE_TIMEOUT_S
from gstbench.plugins import get_registry
from gstbench.reports import DEFAULT_TOLERANCE


class UserError(click.ClickException):
    """Bad input refused (a GstbenchError): one line naming what is at fault, exit 2 like click's usage errors.

    The exit codes of every command: 0 done; 1 done, and something failed (a cell, a
    regression in ``compare``); 2 bad input, nothing run; 74 a result could not be stored
    (full disk, storage gone read-only), resumable; 130 interrupted (Ctrl-C) and 143
    terminated (SIGTERM), both resumable.
    """

    exit_code = 2


class StorageFailed(UserError):
    exit_code = 74  # EX_IOERR (sysexits.h)


def _registry():
    # also called while click lists the commands for --help, before PluginCommands.invoke
    try:
        return get_registry()
    except GstbenchError as exc:
        raise UserError(str(exc)) from None


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class SeedsType(click.ParamType):
    """--seeds: a count, an inclusive range or a comma-separated list, as the seed numbers they name."""

    name = "SEEDS"

    def convert(self, value, param, ctx):
        from gstbench.errors import SpecError
        from gstbench.plan.seeds import parse_seeds

        if isinstance(value, tuple):
            return value
        try:
            return parse_seeds(value, "--seeds")
        except SpecError as exc:
            self.fail(exc.message, param, ctx)


SEEDS = SeedsType()


class PluginCommands(click.Group):
    """The command group; plugins' commands join it once the plugins load, after ``--plugins-dir`` is read."""

    _added = False

    def _add_plugin_commands(self) -> None:
        if not PluginCommands._added:
            PluginCommands._added = True
            _registry().add_commands(self)

    def get_command(self, ctx, name):
        if name not in self.commands:
            self._add_plugin_commands()
        return super().get_command(ctx, name)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def invoke(self, ctx):
        """Every command's refused input (a GstbenchError) ends here: one line, exit 2."""
        try:
            return super().invoke(ctx)
        except StorageError as exc:
            raise StorageFailed(str(exc)) from None
        except GstbenchError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:  # an unexpected file or directory at fault: still one line naming it
            where = f" {exc.filename}" if exc.filename else ""
            raise StorageFailed(f"cannot use{where}: {exc.strerror or exc}; check that it exists and that this "
                                f"user may read (and write) it") from None


def _use_plugins_dir(ctx, param, value) -> None:
    from gstbench.plugins import PLUGINS_DIR_ENV, reset_registry

    if value is not None:
        os.environ[PLUGINS_DIR_ENV] = str(value.resolve())  # pool and Ray workers load them too
        reset_registry()


@click.group(cls=PluginCommands)
@click.version_option(package_name="gstbench")
@click.option("--plugins-dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              is_eager=True, expose_value=False, callback=_use_plugins_dir,
              help="Load every *.py file in this directory as a plugin named after the file "
                   "[default: $GSTBENCH_PLUGINS_DIR].")
def cli() -> None:
    """Benchmark pruning methods on stability, generalization and what else test accuracy hides."""


@cli.command()
@click.option("--suite", "suite_name", default="tradeoff", show_default=True,
              help="Built-in suite name or path to a suite .toml file.")
@click.option("--scale", default="quick", show_default=True, help="Scale of the suite (quick, paper, ...).")
@click.option("--seeds", type=SEEDS, default=None,
              help="Override the suite's seeds: a count (5: seeds 0-4), a range (100-104) or a list (1,5,9).")
@click.option("--scorer", default=None, help="Use this scorer in every pruned configuration (e.g. l2, myplugin:snip); "
              "in a suite that compares scorers (an axis of prune.scorer, e.g. methods) it joins them.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME",
              help="Add this metric to every configuration (repeatable; e.g. hessian-trace, ood-accuracy).")
@click.option("--executor", default="auto", show_default=True, envvar="GSTBENCH_EXECUTOR",
              help="Executor plugin that runs the cells: auto (a pool of one process per core when more than "
                   "one cell is pending, else sequential), sequential, pool, ray (gstbench-ray), slurm "
                   "(gstbench-slurm), ... [env: GSTBENCH_EXECUTOR].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes for --executor auto or pool (default: one per usable CPU core, divided by "
                   "--threads), or a local Ray instance's CPUs.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads each cell trains with, under every executor. Results are bitwise equal for "
                   "equal thread counts (same torch build and CPU), whatever the executor or core count.")
@click.option("--address", default=None, help="Ray cluster address for --executor ray (default: $RAY_ADDRESS, "
                                              "else a local instance).")
@click.option("--gpus-per-cell", type=click.FloatRange(min=0), default=None,
              help="GPUs Ray reserves per cell; a fraction (e.g. 0.25) runs several cells per GPU.")
@click.option("--executor-option", "executor_option_texts", multiple=True, metavar="KEY=VALUE",
              help="An option of the executor (repeatable; VALUE as in TOML: 120, true, \"gpu\", [\"a\", \"b\"]), "
                   "e.g. --executor slurm --executor-option partition=gpu --executor-option time_min=120; "
                   "`gstbench list executors` shows each executor's options.")
@click.option("--device", default="cpu", show_default=True,
              help="Torch device: cpu, cuda (with --executor pool: every visible GPU, round-robin) or cuda:N.")
@click.option("--bf16", is_flag=True, help="Train and evaluate under bf16 autocast (train.precision = bf16; "
                                           "new cells: the papers used fp32).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where datasets such as CIFAR-10 live (downloaded there when missing and online) "
                   "[default: $GSTBENCH_DATA_DIR, else ~/.cache/gstbench/data].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Result directory [default: ./gstbench-results/<suite>].")
@click.option("--retry-failed", is_flag=True, help="Run cells stored as failed again.")
@click.option("--lease-timeout", type=click.FloatRange(min=1), default=DEFAULT_LEASE_TIMEOUT_S, show_default=True,
              help="Seconds after which another run's unrefreshed cell lease counts as dead (runs refresh theirs "
                   "every 30 s; a dead process on this host frees its leases at once).")
@click.option("--log", "log_targets", multiple=True, metavar="NAME[:TARGET]",
              help="Send every cell to this experiment tracker (repeatable): tensorboard, mlflow, wandb "
                   "(their plugins), with an optional target, e.g. mlflow:sqlite:///runs.db [default target: "
                   "under the result directory]; adds to the suite's [logging].")
@click.option("--save-models/--no-models", "save_models", default=None,
              help="Keep each cell's final model (each round's, with rounds) with its training, under "
                   "trainings/<key16> (train.save_model, on by default): `gstbench measure`, --reuse, "
                   "gstbench.load_model and export-model read it. --no-models keeps none: a metric added later "
                   "then trains the cell again.")
@click.option("--reuse", "reuse_dirs", multiple=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Another run directory whose stored trainings cells may measure instead of training "
                   "(repeatable), e.g. --suite flatness --reuse gstbench-results/tradeoff.")
@click.option("--max-cells", type=click.IntRange(min=1, max=10**9), default=None,
              help="Refuse a suite whose matrix has more cells than this, before building it [default: 1,000,000].")
@click.option("--json", "as_json", is_flag=True, help="Print the leaderboard as JSON, no progress bar.")
def run(suite_name, scale, seeds, scorer, metrics, executor, workers, threads, address, gpus_per_cell,
        executor_option_texts, device, bf16, data_dir, out, retry_failed, lease_timeout, log_targets, save_models,
        reuse_dirs, max_cells, as_json) -> None:
    """Run a suite (missing cells only), then print its leaderboard.

    Several runs into one directory share the work: each cell is trained by the run that
    leases it first. Ctrl-C and SIGTERM stop at once, leaving the directory resumable.
    """
    from gstbench.components import DATA_DIR_ENV
    from gstbench.run.progress import RunProgress
    from gstbench.plan.selection import config_label
    from gstbench.reports.report import build_report, render_leaderboard
    from gstbench import stopping
    from gstbench.run.runner import RunCallbacks, RunOptions, build_executor, run_suite
    from gstbench.names import inside
    from gstbench.plan.suite import MAX_CELLS, load_suite
    from gstbench.plan.log_targets import LogTarget

    registry = _registry()
    _check_device(device)
    ids = {c.id for c in registry.components("loggers")}
    loggers = [LogTarget.parse(text, ids) for text in log_targets]
    for target in loggers:  # before any data loads
        try:
            registry.get("loggers", target.name)
        except GstbenchError as exc:
            raise click.BadParameter(f"{exc} (install its plugin, e.g. pip install gstbench-{target.name})",
                                     param_hint="--log") from None
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    overrides = {**({"prune.scorer": scorer} if scorer else {}), **({"train.precision": "bf16"} if bf16 else {}),
                 **({"train.save_model": save_models} if save_models is not None else {})}
    executor_options = {"workers": workers, "address": address, "gpus_per_cell": gpus_per_cell,
                        **dict(_executor_option(text) for text in executor_option_texts)}
    build_executor(registry, executor, executor_options)  # a bad option fails before any data loads
    suite = load_suite(registry, suite_name, scale=scale, seeds=seeds, overrides=overrides or None,
                       metrics=list(metrics), max_cells=max_cells or MAX_CELLS)
    out = out or inside("gstbench-results", Path("gstbench-results") / suite.name, "the default result directory")
    bar = None

    def on_start(pending, reused, retrained):
        nonlocal bar
        if not as_json:
            click.echo(f"{suite.name} ({suite.scale}): {len(suite.cells)} cells, {len(pending)} to run, "
                       f"results in {out}", err=True)
            if reused:
                click.echo(f"{_cells(reused)} measured on stored trainings, without training", err=True)
            if retrained:
                click.echo(f"{_cells(retrained)} trained again: their stored training keeps no model, which "
                           f"their metrics need (stored before models were kept, or with --no-models)", err=True)
        bar = RunProgress(pending, cell_label, disable=as_json)

    @functools.lru_cache(maxsize=None)
    def cell_label(spec) -> str:  # once per cell, not per epoch
        return config_label(spec.canonical(), list(suite.axes))

    def on_epoch(spec, epoch, epochs):
        bar.epoch(spec, epoch, epochs)

    def on_cell_done(spec, result):
        bar.cell_done(spec, result)

    try:
        with stopping.installed():
            options = RunOptions(executor=executor, executor_options=executor_options or {}, device=device,
                                 threads=threads, retry_failed=retry_failed, lease_timeout=lease_timeout,
                                 loggers=tuple(loggers), reuse=tuple(reuse_dirs))
            summary = run_suite(suite, out, registry, options, RunCallbacks(on_start, on_epoch, on_cell_done))
    except KeyboardInterrupt as exc:
        if bar is not None:
            bar.close()
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        click.echo(f"\n{how}: finished cells are stored in {out}; run the same command again to "
                   f"finish the rest", err=True)
        stopping.forget_handled_interrupt()  # else `python -m gstbench` may end by SIGINT, not with 130
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    finally:
        if bar is not None:
            bar.close()
    if save_models:
        _say_which_cells_have_no_model(suite, out)
    elif save_models is False and not as_json:
        click.echo("--no-models: no model kept; adding a metric later (gstbench measure, --reuse) trains these "
                   "cells again, and load_model and export-model have none to read", err=True)
    report = build_report(out)
    if as_json:
        _echo_json({"run": summary.__dict__, **report.as_json()})
    else:
        if summary.skipped:
            click.echo(f"{summary.skipped} cells already finished (skipped), {summary.ran} run", err=True)
        if summary.claimed_elsewhere:
            cells = "1 cell is" if summary.claimed_elsewhere == 1 else f"{summary.claimed_elsewhere} cells are"
            click.echo(f"{cells} being trained by another run (their leases are live); "
                       f"`gstbench report {out}` shows them once stored", err=True)
        click.echo(render_leaderboard(report))
    if report.totals["failed"]:
        sys.exit(1)


@cli.command("measure")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metric", "metrics", multiple=True, required=True, metavar="NAME",
              help="A metric to add to every finished cell (repeatable; e.g. hessian-trace, ood-accuracy).")
@click.option("--device", default="cpu", show_default=True, help="Torch device the metrics run on.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="CPU threads; the values equal a run's at the same thread count.")
def measure_cmd(directory, metrics, device, threads) -> None:
    """Add metrics to every finished cell of DIRECTORY (a `gstbench run --out`) on its stored models, without
    training; report, claims, plot and gstbench.results then show them."""
    from gstbench.run.measure import measure_run, metric_refs

    registry = _registry()
    _check_device(device)
    try:
        refs = metric_refs(registry, list(metrics))  # an unknown metric is refused before any cell is read
    except GstbenchError as exc:
        raise click.BadParameter(getattr(exc, "message", str(exc)), param_hint="--metric") from None
    summary = measure_run(directory, refs, registry, device=device, threads=threads)
    for line in summary.without_model + summary.failed:
        click.echo(line, err=True)
    parts = [f"{_cells(summary.measured)} measured ({', '.join(ref.label for ref in refs)}; "
             f"`gstbench report {directory}` shows them)" if summary.measured else "0 cells measured"]
    if summary.already:
        parts.append(f"{_cells(summary.already)} had every metric already")
    if summary.without_model:
        parts.append(f"{_cells(len(summary.without_model))} skipped: no stored model (above)")
    if summary.failed:
        parts.append(f"{_cells(len(summary.failed))} failed and kept as they were (above)")
    if summary.unfinished:
        parts.append(f"{_cells(summary.unfinished)} not finished, left alone")
    click.echo(f"{directory}: " + "; ".join(parts), err=True)
    if (summary.without_model or summary.failed) and not summary.measured:
        sys.exit(1)


def _cells(n: int) -> str:
    return "1 cell" if n == 1 else f"{n} cells"


def _say_which_cells_have_no_model(suite, out: Path) -> None:
    """--save-models stores models of cells it trains; cells finished before it are not trained again."""
    from gstbench.engine.artifacts import MODEL
    from gstbench.store.store import Store
    from gstbench.store.store import cell_model

    store = Store(out)
    without = [spec for spec in suite.cells if cell_model(out, spec) is None
               and (result := store.load_result(spec)) is not None and result.ok]
    if without:
        cells = "1 cell finished before without it has" if len(without) == 1 else \
            f"{len(without)} cells finished before without it have"
        click.echo(f"--save-models: {cells} no {MODEL} (e.g. "
                   f"{store.cell_dir(without[0])}); remove a cell's directory to train it again with its model",
                   err=True)


def _executor_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` -> (key, value): VALUE read as a TOML value, else as a plain string."""
    import tomllib

    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key.isidentifier():
        raise click.BadParameter(f"{text!r} is not KEY=VALUE (e.g. partition=gpu)", param_hint="--executor-option")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def _check_device(device: str) -> None:
    """Refuse a device this machine lacks before any cell runs (else every cell would fail)."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA is not available on this machine; use --device cpu", param_hint="--device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise click.BadParameter(f"this machine has {torch.cuda.device_count()} CUDA device(s)",
                                 param_hint="--device")


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "tablefmt", default="simple", show_default=True,
              type=click.Choice(["simple", "plain", "github", "latex", "csv", "json", "html"]),
              help="Table format; html: one self-contained page (claims, leaderboard, figures, environment).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this file instead of stdout (e.g. --format html --output report.html).")
@click.option("--sort", "sort_by", default=None, metavar="METRIC",
              help="Rank the configurations by this metric [default: the suite's rank].")
@click.option("--metric", "metrics", multiple=True, metavar="METRIC",
              help="Add a column with this metric's mean and interval (repeatable).")
@click.option("--interval", default="bootstrap", show_default=True, type=click.Choice(["bootstrap", "t"]),
              help="Interval across seeds: studentized bootstrap, or Student-t.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (same as --format json).")
def report(directory, tablefmt, output, sort_by, metrics, interval, as_json) -> None:
    """Print the leaderboard of a result directory (written by `gstbench run --out`)."""
    from gstbench.reports.html_report import report_html, write_page
    from gstbench.store.reader import load_results
    from gstbench.reports.report import render_csv, render_leaderboard, report_of

    results = load_results(directory)
    data = report_of(results, rank=sort_by, interval=interval, columns=list(metrics))
    if tablefmt == "html" and not as_json:
        write_page(report_html(results, data), output)
        if output is not None:
            click.echo(f"{output}: the report of {directory}", err=True)
        return
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer) if output is not None else contextlib.nullcontext():
        if as_json or tablefmt == "json":
            _echo_json(data.as_json())
        elif tablefmt == "csv":
            click.echo(render_csv(data), nl=False)
        else:
            click.echo(render_leaderboard(data, tablefmt=tablefmt))
    if output is not None:
        write_page(buffer.getvalue(), output)


@cli.command("claims")
@click.argument("directories", nargs=-1, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "tablefmt", default="simple", show_default=True,
              type=click.Choice(["simple", "plain", "github", "json"]), help="Table format (github: markdown).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON (same as --format json).")
def claims_cmd(directories, tablefmt, as_json) -> None:
    """Every claim's verdict across result directories [default: each suite directory under ./gstbench-results/]."""
    from gstbench.reports.claim_table import claim_table, render_claim_table

    table = claim_table(_registry(), list(directories) or None)
    if as_json or tablefmt == "json":
        _echo_json(table)
    else:
        click.echo(render_claim_table(table, tablefmt))


@cli.command("plot")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the figures go [default: DIRECTORY/plots].")
@click.option("--format", "fmt", default="png", show_default=True, type=click.Choice(["png", "svg", "pdf"]))
def plot(directory, dest, fmt) -> None:
    """Draw the figures a result directory's results allow (matplotlib, no display needed)."""
    from gstbench.reports.plots import plot_all

    done = plot_all(directory, dest or directory / "plots", fmt)
    for path in done["written"]:
        click.echo(path)
    for name, why in done["skipped"].items():
        click.echo(f"skipped {name}: {why}", err=True)


@cli.command("export")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def export_cmd(directory, file) -> None:
    """Write a result directory as one versioned JSON file (a CI baseline), or FILE.csv: one row per cell."""
    from gstbench.reports.compare import export

    data = export(directory, file)
    runs = sum(len(c["runs"]) for c in data["configurations"])
    click.echo(f"{file}: {len(data['configurations'])} configurations, {runs} runs", err=True)


@cli.command("export-model")
@click.argument("cell", type=click.Path(exists=True, path_type=Path))
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--masked", is_flag=True,
              help="Keep the trained shapes, dead filters zeroed [default: dead filters physically removed].")
def export_model_cmd(cell, file, masked) -> None:
    """Write a cell's stored model (CELL: cells/<hash16> of a run directory) to FILE:
    .safetensors (weights, kept filters and spec; gstbench.load_model reads it) or .pt2 (a torch.export
    program: torch.export.load(FILE).module() runs it without gstbench)."""
    from gstbench.engine.artifacts import export_model

    model = export_model(cell, file, structured=not masked, registry=_registry())
    params = sum(p.numel() for p in model.parameters())
    click.echo(f"{file}: {model.gstbench_spec.model.label}, {params:,} parameters, "
               f"{'masked' if masked else 'dead filters removed'}", err=True)


@cli.command("compare")
@click.argument("base", type=click.Path(exists=True, path_type=Path))
@click.argument("new", type=click.Path(exists=True, path_type=Path))
@click.option("--format", "tablefmt", default="plain", show_default=True,
              type=click.Choice(["plain", "github", "simple", "json", "html"]),
              help="Output format; html: one self-contained page (a CI artifact).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the comparison to this file instead of stdout (e.g. --format html --output cmp.html).")
@click.option("--metric", "metrics", multiple=True, metavar="METRIC",
              help="Compare this metric (repeatable) [default: stability, the suite's rank and columns].")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[METRIC=]VALUE",
              help=f"Smallest change that counts (absolute; default {DEFAULT_TOLERANCE}), for all metrics or one.")
def compare_cmd(base, new, tablefmt, output, metrics, tolerances) -> None:
    """Compare two result sets (directories or exports); exit 1 if anything regressed, 2 on bad input."""
    from gstbench.reports.compare import compare, load, render_comparison

    default, per_metric = DEFAULT_TOLERANCE, {}
    for t in tolerances:
        name, _, value = t.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise click.BadParameter(f"{t!r} is not VALUE or METRIC=VALUE", param_hint="--tolerance") from None
        if name:
            per_metric[name] = number
        else:
            default = number
    from gstbench.reports.html_report import comparison_html, write_page

    result = compare(load(base), load(new), list(metrics) or None, per_metric, default,
                     _registry().better_directions())
    if tablefmt == "html":
        page = comparison_html(result, str(base), str(new))
    elif tablefmt == "json":
        page = json.dumps(result, indent=2, sort_keys=True, default=str) + "\n"
    else:
        page = render_comparison(result, tablefmt) + "\n"
    if output is None:
        click.echo(page, nl=False)
    else:
        write_page(page, output)
        click.echo(f"{output}: {'regressed' if result['regressed'] else 'no regression'}", err=True)
    sys.exit(1 if result["regressed"] else 0)


@cli.group(invoke_without_command=True)
@click.pass_context
def suites(ctx) -> None:
    """List suites; `gstbench suites show NAME` shows one."""
    if ctx.invoked_subcommand is None:
        from gstbench.plan.suite import suite_summary

        registry = _registry()
        rows = []
        for comp in registry.components("suites"):
            scales, desc = suite_summary(comp.factory)
            rows.append([comp.id, ", ".join(scales) or "-", desc])
        click.echo(tabulate(rows, headers=["suite", "scales", "description"]))


@suites.command("show")
@click.argument("name")
@click.option("--scale", default="quick", show_default=True)
@click.option("--seeds", type=SEEDS, default=None, help="A count, a range (100-104) or a list (1,5,9).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Check the suite against the datasets there; without it, datasets that offer a "
                   "stand-in (CIFAR) are not read or downloaded.")
@click.option("--tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Achieved TFLOP/s of one GPU, for the cost estimate's GPU-hours.")
@click.option("--max-cells", type=click.IntRange(min=1, max=10**9), default=None,
              help="Refuse a suite whose matrix has more cells than this, before building it [default: 1,000,000].")
@click.option("--json", "as_json", is_flag=True)
def suites_show(name, scale, seeds, data_dir, tflops, max_cells, as_json) -> None:
    """Resolve a suite (built-in name or .toml path) and print its matrix and an estimate of its cost."""
    from gstbench.run import cost
    from gstbench.components import DATA_DIR_ENV
    from gstbench.plan.seeds import describe_seeds
    from gstbench.plan.suite import MAX_CELLS, load_suite

    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    registry = _registry()
    suite = load_suite(registry, name, scale=scale, seeds=seeds, placeholders=data_dir is None,
                       max_cells=max_cells or MAX_CELLS)
    estimate = cost.estimate(suite, registry, tflops or cost.DEFAULT_TFLOPS, placeholders=data_dir is None)
    summary = suite.summary()
    if as_json:
        _echo_json({**summary, "cost": estimate})
        return
    click.echo(f"suite {suite.name} ({suite.source}), scale {suite.scale}")
    if suite.description:
        click.echo(suite.description)
    for key, values in suite.axes.items():
        click.echo(f"  axis {key}: {', '.join(_axis_value(v) for v in values)}")
    click.echo(f"{summary['configurations']} configurations x {len(suite.seeds)} seeds "
               f"({describe_seeds(suite.seeds)}) = {summary['cells']} cells")
    click.echo(cost.describe(estimate))


def _axis_value(value) -> str:
    """A component table as name(option=value, ...), like the leaderboard labels."""
    from gstbench.plan.config import component_label

    if isinstance(value, dict) and "name" in value:
        return component_label(value["name"], {k: v for k, v in value.items() if k != "name"})
    if isinstance(value, dict):  # a whole table (the methods suite's [prune] regimes): key = value, lists shortened
        return "{" + ", ".join(f"{k} = {v!r}" if not isinstance(v, list) or len(v) <= 4 else f"{k} = [{len(v)} items]"
                               for k, v in value.items()) + "}"
    return str(value)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def plugins(as_json) -> None:
    """List plugins with version, load status, hooks and what each provides."""
    registry = _registry()
    infos = [info.as_json() for info in registry.plugins.values()]
    if as_json:
        _echo_json(infos)
        return
    rows = []
    for info in infos:
        provides = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in info["provides"].items()) or "-"
        status = info["status"] + (f": {info['error']}" if info["error"] else "")
        hooks = ", ".join(h.removeprefix("register_") for h in info["hooks"]) or "-"
        rows.append([info["name"], info["version"], status, provides, hooks])
    click.echo(tabulate(rows, headers=["plugin", "version", "status", "provides", "register_* hooks"]))


@cli.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def list_components(kind, as_json) -> None:
    """List the components of one kind (scorers, targets, effectors, ...) with their descriptions."""
    comps = _registry().components(kind)
    data = []
    for c in comps:
        defaults = c.option_defaults() if kind not in ("suites",) else {}
        options = {k: v for k, v in (defaults or {}).items() if v is not REQUIRED}
        required = [k for k, v in (defaults or {}).items() if v is REQUIRED]
        data.append({"id": c.id, "name": c.name, "plugin": c.plugin, "description": c.description,
                     "capabilities": list(c.capabilities), "revision": c.revision, "options": options,
                     "required": required})
    if as_json:
        _echo_json(data)
        return
    if not data:
        click.echo(f"no {kind} registered")
        return
    def options(d: dict) -> str:
        return ", ".join([f"{k} (required)" for k in d["required"]] + [f"{k}={v}" for k, v in d["options"].items()])

    click.echo(tabulate([[d["id"], options(d), ", ".join(d["capabilities"]), d["description"]] for d in data],
                        headers=[kind[:-1], "options", "capabilities", "description"]))


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", default="scorer", show_default=True,
              type=click.Choice(["scorer", "target", "effector", "rewind", "regularizer", "metric", "model",
                                 "dataset"]),
              help="The kind of component the package starts with.")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where the package's folder NAME is written.")
def new_plugin_cmd(name, kind, parent) -> None:
    """Write a plugin package NAME/ with one working component and a test of gstbench's contract."""
    from gstbench.scaffold import new_plugin, next_steps

    written = new_plugin(name, kind, parent)
    for path in written:
        click.echo(path)
    click.echo("\nnext:\n" + "\n".join(f"  {step}" for step in next_steps(name, kind, parent / name)), err=True)


def main() -> None:
    import atexit
    import faulthandler
    import gc

    install_warning_format()
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints where a run that seems stuck is, and it goes on
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    # Python's exit collects the whole heap: with torch loaded, over a second of every command. What gstbench
    # writes is closed by then, so the objects alive at exit are left out of those collections.
    atexit.register(gc.freeze)
    cli(prog_name="gstbench")
