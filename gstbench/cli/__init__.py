"""The ``gstbench`` command line: the command group, one module per command group, thin click commands.

Each command parses, calls the library and prints; tables, CSV and pages are rendered by the modules that
compute them (reports/). Commands import what they need inside their bodies: ``--help``, the listings and
``suites show`` load no torch. run.py: run and measure; results.py: report, claims, plot, export,
export-model and compare; catalog.py: suites, plugins, list and new-plugin; common.py: what they share.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from gstbench.cli import catalog, results, run
from gstbench.cli.common import StorageFailed, UserError, registry
from gstbench.errors import GstbenchError, StorageError, install_warning_format

__all__ = ["cli", "main", "UserError", "StorageFailed"]


class PluginCommands(click.Group):
    """The command group; plugins' commands join it once the plugins load, after ``--plugins-dir`` is read."""

    _added = False

    def _add_plugin_commands(self) -> None:
        if not PluginCommands._added:
            PluginCommands._added = True
            registry().add_commands(self)

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


for _module in (run, results, catalog):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


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
