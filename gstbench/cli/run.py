"""``gstbench run`` (a suite's missing cells, then what they found) and ``gstbench measure`` (metrics added to
finished cells without training)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from gstbench.cli.common import (cells, check_device, data_dir_option, device_option, echo_json, json_option,
                                 max_cells_option, registry, scale_option, screen_width, seeds_option,
                                 threads_option)
from gstbench.errors import GstbenchError, Terminated
from gstbench.run.leases import DEFAULT_TIMEOUT_S as DEFAULT_LEASE_TIMEOUT_S


@click.command("run")
@click.option("--suite", "suite_name", default="tradeoff", show_default=True,
              help="Built-in suite name or path to a suite .toml file.")
@scale_option("Scale of the suite (quick, paper, ...).")
@seeds_option("Override the suite's seeds: a count (5: seeds 0-4), a range (100-104) or a list (1,5,9).")
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
@threads_option("CPU threads each cell trains with, under every executor. Results are bitwise equal for "
                "equal thread counts (same torch build and CPU), whatever the executor or core count.")
@click.option("--address", default=None, help="Ray cluster address for --executor ray (default: $RAY_ADDRESS, "
                                              "else a local instance).")
@click.option("--gpus-per-cell", type=click.FloatRange(min=0), default=None,
              help="GPUs Ray reserves per cell; a fraction (e.g. 0.25) runs several cells per GPU.")
@click.option("--executor-option", "executor_option_texts", multiple=True, metavar="KEY=VALUE",
              help="An option of the executor (repeatable; VALUE as in TOML: 120, true, \"gpu\", [\"a\", \"b\"]), "
                   "e.g. --executor slurm --executor-option partition=gpu --executor-option time_min=120; "
                   "`gstbench list executors` shows each executor's options.")
@device_option("Torch device: cpu, cuda (with --executor pool: every visible GPU, round-robin) or cuda:N.")
@click.option("--bf16", is_flag=True, help="Train and evaluate under bf16 autocast (train.precision = bf16; "
                                           "new cells: the papers used fp32).")
@data_dir_option("Where datasets such as CIFAR-10 live (downloaded there when missing and online) "
                 "[default: $GSTBENCH_DATA_DIR, else ~/.cache/gstbench/data].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Result directory [default: ./gstbench-results/<suite>].")
@click.option("--retry-failed", is_flag=True, help="Run cells stored as failed again.")
@click.option("--lease-timeout", type=click.FloatRange(min=1), default=DEFAULT_LEASE_TIMEOUT_S, show_default=True,
              help="Seconds after which another run's unrefreshed lease (of a cell or a training) counts as dead "
                   "(runs refresh theirs every 30 s; a dead process on this host frees its leases at once).")
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
@max_cells_option()
@json_option("Print the leaderboard as JSON, no progress bar.")
def run_cmd(suite_name, scale, seeds, scorer, metrics, executor, workers, threads, address, gpus_per_cell,
            executor_option_texts, device, bf16, data_dir, out, retry_failed, lease_timeout, log_targets,
            save_models, reuse_dirs, max_cells, as_json) -> None:
    """Run a suite (missing cells only), then print what it found: a line per configuration and per claim
    (`gstbench report` has the full tables).

    Several runs into one directory share the work: each cell is trained by the run that
    leases it first. Ctrl-C and SIGTERM stop at once, leaving the directory resumable.
    """
    from gstbench.components import DATA_DIR_ENV
    from gstbench.names import inside
    from gstbench.plan.suite import MAX_CELLS, load_suite
    from gstbench.run.runner import RunOptions, build_executor

    reg = registry()
    check_device(device)
    loggers = _log_targets(reg, log_targets)  # before any data loads
    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    overrides = {**({"prune.scorer": scorer} if scorer else {}), **({"train.precision": "bf16"} if bf16 else {}),
                 **({"train.save_model": save_models} if save_models is not None else {})}
    executor_options = {"workers": workers, "address": address, "gpus_per_cell": gpus_per_cell,
                        **dict(_executor_option(text) for text in executor_option_texts)}
    build_executor(reg, executor, executor_options)  # a bad option fails before any data loads
    suite = load_suite(reg, suite_name, scale=scale, seeds=seeds, overrides=overrides or None,
                       metrics=list(metrics), max_cells=max_cells or MAX_CELLS)
    out = out or inside("gstbench-results", Path("gstbench-results") / suite.name, "the default result directory")
    options = RunOptions(executor=executor, executor_options=executor_options, device=device, threads=threads,
                         retry_failed=retry_failed, lease_timeout=lease_timeout, loggers=tuple(loggers),
                         reuse=tuple(reuse_dirs))
    summary = _RunScreen(suite, out, as_json).run(reg, options)
    _finish(suite, out, summary, save_models, as_json)


def _log_targets(reg, texts) -> list:
    from gstbench.plan.log_targets import LogTarget

    ids = {c.id for c in reg.components("loggers")}
    targets = [LogTarget.parse(text, ids) for text in texts]
    for target in targets:
        try:
            reg.get("loggers", target.name)
        except GstbenchError as exc:
            raise click.BadParameter(f"{exc} (install its plugin, e.g. pip install gstbench-{target.name})",
                                     param_hint="--log") from None
    return targets


class _RunScreen:
    """What a run shows while it runs: its first lines, then the progress bar (or plain lines off a terminal)."""

    def __init__(self, suite, out: Path, quiet: bool) -> None:
        self.suite, self.out, self.quiet, self.bar = suite, out, quiet, None
        self.labels: dict[str, str] = {}

    def run(self, reg, options):
        from gstbench import stopping
        from gstbench.run.runner import RunCallbacks, run_suite

        try:
            with stopping.installed():
                return run_suite(self.suite, self.out, reg, options,
                                 RunCallbacks(self.on_start, self.on_epoch, self.on_cell_done))
        except KeyboardInterrupt as exc:
            self.close()
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            click.echo(f"\n{how}: finished cells are stored in {self.out}; run the same command again to "
                       f"finish the rest", err=True)
            stopping.forget_handled_interrupt()  # else `python -m gstbench` may end by SIGINT, not with 130
            sys.exit(143 if isinstance(exc, Terminated) else 130)
        finally:
            self.close()

    def on_start(self, pending, reused, retrained) -> None:
        from gstbench.run.progress import RunProgress

        if not self.quiet:
            click.echo(f"{self.suite.name} ({self.suite.scale}): {len(self.suite.cells)} cells, {len(pending)} to "
                       f"run, results in {self.out}", err=True)
            if reused:
                click.echo(f"{cells(reused)} measured on stored trainings, without training", err=True)
            if retrained:
                click.echo(f"{cells(retrained)} trained again: their stored training keeps no model, which "
                           f"their metrics need (stored before models were kept, or with --no-models)", err=True)
        self.bar = RunProgress(pending, self.cell_label, disable=self.quiet)

    def cell_label(self, spec) -> str:
        from gstbench.plan.selection import config_label

        if spec.hash not in self.labels:  # once per cell, not per epoch
            self.labels[spec.hash] = config_label(spec.canonical(), list(self.suite.axes))
        return self.labels[spec.hash]

    def on_epoch(self, spec, epoch, epochs) -> None:
        self.bar.epoch(spec, epoch, epochs)

    def on_cell_done(self, spec, result) -> None:
        self.bar.cell_done(spec, result)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _finish(suite, out: Path, summary, save_models: bool | None, as_json: bool) -> None:
    """The run's last screen: what was skipped or is elsewhere, then a line per configuration and per claim."""
    from gstbench.reports.report import report_of
    from gstbench.reports.run_summary import render_run_summary
    from gstbench.store.reader import load_results

    if save_models:
        _say_which_cells_have_no_model(suite, out)
    elif save_models is False and not as_json:
        click.echo("--no-models: no model kept; adding a metric later (gstbench measure, --reuse) trains these "
                   "cells again, and load_model and export-model have none to read", err=True)
    results = load_results(out)
    report = report_of(results)
    if as_json:
        echo_json({"run": summary.__dict__, **report.as_json()})
    else:
        if summary.skipped:
            click.echo(f"{summary.skipped} cells already finished (skipped), {summary.ran} run", err=True)
        if summary.claimed_elsewhere:
            held = "1 cell is" if summary.claimed_elsewhere == 1 else f"{summary.claimed_elsewhere} cells are"
            click.echo(f"{held} being trained by another run (their leases are live); "
                       f"`gstbench report {out}` shows them once stored", err=True)
        click.echo(render_run_summary(report, out, screen_width()))
        if report.speed is not None:  # the speed suite's figure: measured against predicted speed-up
            from gstbench.reports.plots import save_figures

            drawn = save_figures(results, report, out / "plots", only=("speed",))["written"]
            click.echo("measured against predicted speed-up, drawn:\n" + "\n".join(f"  {p}" for p in drawn))
    if report.totals["failed"]:
        sys.exit(1)


def _say_which_cells_have_no_model(suite, out: Path) -> None:
    """--save-models stores models of cells it trains; cells finished before it are not trained again."""
    from gstbench.store.store import MODEL, Store, cell_model

    store = Store(out)
    without = [spec for spec in suite.cells if cell_model(out, spec) is None
               and (result := store.load_result(spec)) is not None and result.ok]
    if without:
        held = "1 cell finished before without it has" if len(without) == 1 else \
            f"{len(without)} cells finished before without it have"
        click.echo(f"--save-models: {held} no {MODEL} (e.g. "
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


@click.command("measure")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--metric", "metrics", multiple=True, required=True, metavar="NAME",
              help="A metric to add to every finished cell (repeatable; e.g. hessian-trace, ood-accuracy).")
@device_option("Torch device the metrics run on.")
@threads_option("CPU threads; the values equal a run's at the same thread count.")
def measure_cmd(directory, metrics, device, threads) -> None:
    """Add metrics to every finished cell of DIRECTORY (a `gstbench run --out`) on its stored models, without
    training; report, claims, plot and gstbench.results then show them."""
    from gstbench.run.measure import measure_run, metric_refs

    reg = registry()
    check_device(device)
    try:
        refs = metric_refs(reg, list(metrics))  # an unknown metric is refused before any cell is read
    except GstbenchError as exc:
        raise click.BadParameter(getattr(exc, "message", str(exc)), param_hint="--metric") from None
    summary = measure_run(directory, refs, reg, device=device, threads=threads)
    for line in summary.without_model + summary.failed:
        click.echo(line, err=True)
    parts = [f"{cells(summary.measured)} measured ({', '.join(ref.label for ref in refs)}; "
             f"`gstbench report {directory}` shows them)" if summary.measured else "0 cells measured"]
    if summary.already:
        parts.append(f"{cells(summary.already)} had every metric already")
    if summary.without_model:
        parts.append(f"{cells(len(summary.without_model))} skipped: no stored model (above)")
    if summary.failed:
        parts.append(f"{cells(len(summary.failed))} failed and kept as they were (above)")
    if summary.unfinished:
        parts.append(f"{cells(summary.unfinished)} not finished, left alone")
    click.echo(f"{directory}: " + "; ".join(parts), err=True)
    if (summary.without_model or summary.failed) and not summary.measured:
        sys.exit(1)


COMMANDS = [run_cmd, measure_cmd]
