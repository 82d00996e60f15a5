"""The commands that describe what is installed: ``suites`` (and ``suites show``: a suite's matrix and cost,
without torch), ``plugins``, ``list`` and ``new-plugin``."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import click

from gstbench.cli.common import (data_dir_option, echo_json, json_option, max_cells_option, registry, scale_option,
                                 screen_width, seeds_option)
from gstbench.components import KINDS, REQUIRED
from gstbench.reports.tables import fitted_table


@click.group("suites", invoke_without_command=True)
@click.pass_context
def suites_cmd(ctx) -> None:
    """List suites; `gstbench suites show NAME` shows one."""
    if ctx.invoked_subcommand is None:
        from gstbench.plan.suite import suite_summary

        reg = registry()
        rows = []
        for comp in reg.components("suites"):
            scales, desc = suite_summary(comp.factory)
            rows.append([comp.id, ", ".join(scales) or "-", desc])
        click.echo(fitted_table(rows, ["suite", "scales", "description"], [1, 2], screen_width()))


@suites_cmd.command("show")
@click.argument("name")
@scale_option()
@seeds_option()
@data_dir_option("Check the suite against the datasets there, each model built on them (loads torch); "
                 "without it, against the models' and datasets' declared shapes: nothing is read, "
                 "downloaded or built, and metrics, regularizers and effectors are checked when "
                 "`gstbench run` starts.")
@click.option("--tflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Achieved TFLOP/s of one GPU, for the cost estimate's GPU-hours.")
@max_cells_option()
@json_option()
def suites_show(name, scale, seeds, data_dir, tflops, max_cells, as_json) -> None:
    """Resolve a suite (built-in name or .toml path) and print its matrix and an estimate of its cost (without
    torch, from the models' shapes)."""
    from gstbench.run import cost
    from gstbench.components import DATA_DIR_ENV
    from gstbench.plan.seeds import describe_seeds
    from gstbench.plan.suite import MAX_CELLS, load_suite

    if data_dir is not None:
        os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    reg = registry()
    suite = load_suite(reg, name, scale=scale, seeds=seeds, placeholders=data_dir is None,
                       build_models=data_dir is not None,
                       max_cells=max_cells or MAX_CELLS)
    estimate = cost.estimate(suite, reg, tflops or cost.DEFAULT_TFLOPS, placeholders=data_dir is None)
    summary = suite.summary()
    if as_json:
        echo_json({**summary, "cost": estimate})
        return
    click.echo(f"suite {suite.name} ({suite.source}), scale {suite.scale}")
    if suite.description:
        click.echo(suite.description)
    for key, values in suite.axes.items():
        labels = suite.axis_labels.get(key) or [None] * len(values)  # as the tables label them (l2, not gstbench:l2)
        shown = [_axis_value(v) if isinstance(v, dict) and "name" not in v or label is None else label
                 for v, label in zip(values, labels)]
        click.echo(f"  axis {key}: {', '.join(shown)}")
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


@click.command("plugins")
@json_option()
def plugins_cmd(as_json) -> None:
    """List plugins with version, load status, hooks and what each provides."""
    reg = registry()
    infos = [info.as_json() for info in reg.plugins.values()]
    if as_json:
        echo_json(infos)
        return
    rows = []
    for info in infos:
        provides = "\n".join(f"{kind}: {', '.join(names)}" for kind, names in info["provides"].items()) or "-"
        hooks = ", ".join(h.removeprefix("register_") for h in info["hooks"]) or "-"
        rows.append([info["name"], info["version"], info["status"], provides, hooks])
    click.echo(fitted_table(rows, ["plugin", "version", "status", "provides", "register_* hooks"], [3, 4],
                            screen_width()))
    for info in infos:  # why a plugin failed, under the table: a message too long for a cell
        if info["error"]:
            click.echo("\n" + textwrap.fill(f"{info['name']} {info['status']}: {info['error']}", screen_width(),
                                            subsequent_indent="  ", break_on_hyphens=False, break_long_words=False))


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@json_option()
def list_components(kind, as_json) -> None:
    """List the components of one kind (scorers, targets, effectors, ...) with their descriptions."""
    comps = registry().components(kind)
    data = []
    for c in comps:
        defaults = c.option_defaults() if kind not in ("suites",) else {}
        options = {k: v for k, v in (defaults or {}).items() if v is not REQUIRED}
        required = [k for k, v in (defaults or {}).items() if v is REQUIRED]
        data.append({"id": c.id, "name": c.name, "plugin": c.plugin, "description": c.description,
                     "capabilities": list(c.capabilities), "revision": c.revision, "options": options,
                     "required": required})
    if as_json:
        echo_json(data)
        return
    if not data:
        click.echo(f"no {kind} registered")
        return
    def options(d: dict) -> str:
        return ", ".join([f"{k} (required)" for k in d["required"]] + [f"{k}={v}" for k, v in d["options"].items()])

    click.echo(fitted_table([[d["id"], options(d), ", ".join(d["capabilities"]), d["description"]] for d in data],
                            [kind[:-1], "options", "capabilities", "description"], [1, 2, 3], screen_width()))


@click.command("new-plugin")
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
    kinds = f"{kind}s"
    if any(c.name == name and c.plugin == "gstbench" for c in registry().components(kinds)):
        click.echo(f"warning: gstbench has a built-in {kind} named '{name}' (gstbench:{name}): where a suite file "
                   f"or flag names yours, write {name}:{name} ('{name}' alone is ambiguous there; the built-in "
                   f"suites name theirs by full id and are unaffected)", err=True)
    click.echo("\nnext:\n" + "\n".join(f"  {step}" for step in next_steps(name, kind, parent / name)), err=True)


COMMANDS = [suites_cmd, plugins_cmd, list_components, new_plugin_cmd]
