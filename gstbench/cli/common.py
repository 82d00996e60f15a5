"""What every command shares: the one-line refusals and their exit codes, the registry, JSON output, and the
options several commands take, each declared once here."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from gstbench.errors import GstbenchError
from gstbench.plugins import get_registry


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


def registry():
    # also called while click lists the commands for --help, before the group's invoke
    try:
        return get_registry()
    except GstbenchError as exc:
        raise UserError(str(exc)) from None


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def cells(n: int) -> str:
    return "1 cell" if n == 1 else f"{n} cells"


def screen_width() -> int:
    """The terminal's columns when stdout is one, else 100 (a log, a pipe, CI)."""
    if sys.stdout.isatty():
        return max(60, shutil.get_terminal_size((100, 24)).columns)
    return 100


def check_device(device: str) -> None:
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


# Options several commands take, declared once.
def json_option(help: str = "Print machine-readable JSON."):
    return click.option("--json", "as_json", is_flag=True, help=help)


def seeds_option(help: str = "A count, a range (100-104) or a list (1,5,9)."):
    return click.option("--seeds", type=SeedsType(), default=None, help=help)


def scale_option(help: str | None = None):
    return click.option("--scale", default="quick", show_default=True, help=help)


def max_cells_option():
    return click.option("--max-cells", type=click.IntRange(min=1, max=10**9), default=None,
                        help="Refuse a suite whose matrix has more cells than this, before building it "
                             "[default: 1,000,000].")


def threads_option(help: str):
    return click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True, help=help)


def device_option(help: str):
    return click.option("--device", default="cpu", show_default=True, help=help)


def data_dir_option(help: str):
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=help)


def directory_argument(name: str = "directory"):
    """A result directory that must exist (report, plot, export, ...)."""
    return click.argument(name, type=click.Path(exists=True, file_okay=False, path_type=Path))


def output_option(help: str):
    return click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help)
