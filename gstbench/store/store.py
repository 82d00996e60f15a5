"""Result store: one directory per cell, written so that a killed run or a full disk loses nothing.

Layout under the run directory::

    suite.json                the suite as resolved for this run
    cells/<hash16>/spec.json  canonical spec (written before training)
    cells/<hash16>/events.jsonl  one line per pruning event
    cells/<hash16>/result.json   written last and atomically: its presence means "done"
    cells/<hash16>/lease.json    held while a run trains the cell (run/leases.py)
    cells/<hash16>/checkpoint.pt while it trains, every train.checkpoint_every epochs
    cells/<hash16>/model.safetensors  the final model, in directories written before trainings were kept
    trainings/<key16>/        the cell's training, shared by cells that differ only in metrics (trainings.py)

A cell counts as finished when result.json exists (status "ok" or "failed"). A file that
cannot be read makes its cell ``corrupt``: readers count it and go on; ``gstbench run``
moves the file aside (``<name>.corrupt-<UTC time>``, never deleted) and recomputes the cell.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from gstbench.store.cell_result import CellResult, ResultFormatError
from gstbench.plan.config import CellSpec, digest, short_hash
from gstbench.errors import GstbenchError, SpecError, StoreWarning
from gstbench.names import inside

CHECKPOINT = "checkpoint.pt"  # engine/checkpoint.py writes it while a cell trains
MODEL = "model.safetensors"  # engine/artifacts.py writes and reads it
TRAININGS = "trainings"


HOST = socket.gethostname()
# A temp file names its writer (``.<name>.<pid>@<host>.<random>.tmp``), so that a run can remove
# what a killed process on this host left half-written without touching a live writer's.
_TEMP = re.compile(r"^\.(?:.*)\.(\d+)@(.+)\.[A-Za-z0-9_]{8}\.tmp$")


def exit_fd(pid: int) -> int | None:
    """A file descriptor that becomes readable when process ``pid`` exits (a Linux pidfd), or None where the
    platform has none or the process is gone (or not ours to watch)."""
    if not hasattr(os, "pidfd_open"):
        return None
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _temp_file(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}@{HOST}.", suffix=".tmp")


def remove_dead_temps(directory: Path) -> int:
    """Remove the temp files in ``directory`` whose writer, a process of this host, is gone; how many.
    One that cannot be removed (a read-only results directory) stays: it is never read."""
    removed = 0
    for temp in directory.glob(".*.tmp"):
        m = _TEMP.match(temp.name)
        if m and m.group(2) == HOST and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
                removed += 1
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, fsync, then os.replace."""
    atomic_write_files({path: text})


def atomic_write_files(files: dict[Path, str]) -> None:
    """Write every file to a temp file first (fsync'd), then replace them in order.

    A failure while writing (a full disk) leaves every target as it was and no temp file
    behind: renames need no space, so once all temps are written the replaces go through.
    """
    temps: dict[Path, str] = {}
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _temp_file(path)
            temps[path] = tmp
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
        for path, tmp in temps.items():
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps.values():
            try:
                Path(tmp).unlink(missing_ok=True)
            except OSError:
                pass  # the directory itself went unwritable: nothing more to do
        raise


def atomic_torch_save(path: Path, obj: Any) -> None:
    """``torch.save`` atomically: a temp file in the same directory, fsync, os.replace."""
    import torch

    atomic_replace(path, lambda tmp: torch.save(obj, tmp))


def atomic_replace(path: Path, write: Callable[[Path], None]) -> None:
    """``write(temp)`` to a temp file in ``path``'s directory, fsync it, then os.replace it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, _json(data))


def _json(data: Any) -> str:
    return json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n"


def set_aside(path: Path) -> Path:
    """Rename an unreadable file to ``<name>.corrupt-<UTC time>`` beside it (kept for inspection)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


@dataclass
class CellFiles:
    """What one cell directory holds, as read: its spec, its result, or why a file cannot be read."""

    directory: Path
    spec: dict[str, Any] | None  # spec.json's content; None when missing or unreadable
    result: CellResult | None  # None while the cell is not finished (or when unreadable)
    problem: str | None = None  # why the cell is corrupt
    bad_files: tuple[Path, ...] = ()  # the files that ``set_aside`` moves

    @property
    def hash16(self) -> str:
        return self.directory.name


def cell_path(run_dir: Path | str, cell_hash: str) -> Path:
    """Where a cell lives in a run directory: ``cells/<its short hash>`` (the one place that says so)."""
    return Path(run_dir) / "cells" / short_hash(cell_hash)


def training_path(run_dir: Path | str, training_hash: str) -> Path:
    """Where a training lives in a run directory: ``trainings/<its short hash>`` (store/trainings.py)."""
    return Path(run_dir) / TRAININGS / short_hash(training_hash)


def round_model(r: int) -> str:
    """A prune-retrain cell's model after round ``r``, beside its training's ``model.safetensors``."""
    return f"round-{r}.safetensors"


def cell_model(run_dir: Path | str, spec: CellSpec) -> Path | None:
    """A finished cell's final model: in its own directory (``--save-models`` before trainings were kept)
    or with its training."""
    for path in (cell_path(run_dir, spec.hash) / MODEL, training_path(run_dir, spec.training_hash) / MODEL):
        if path.is_file():
            return path
    return None


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (a copy where links cannot be made), replaced atomically."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}@{HOST}.{os.urandom(4).hex()}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another filesystem, or links not allowed
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_damage(path: Path) -> str | None:
    """Why a safetensors model file cannot be whole (cut short, or not safetensors at all), or None.
    Reads its header only: 8 bytes of length, the JSON table of tensors, then exactly their bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            length = int.from_bytes(head, "little")
            size = os.fstat(fh.fileno()).st_size
            if length > size - 8:
                return f"its header claims {length} bytes, the file has {size}"
            table = json.loads(fh.read(length))
        ends = [entry["data_offsets"][1] for key, entry in table.items() if key != "__metadata__"]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"not a safetensors file ({_why(exc)})"
    if 8 + length + max(ends, default=0) != size:
        return f"cut short: {size} bytes where its tensors need {8 + length + max(ends, default=0)}"
    return None


class _Table:
    """A JSON object with these keys: ``required`` ones and ``optional`` ones (absent or null allowed)."""

    def __init__(self, required: dict[str, Any], optional: dict[str, Any] = None):
        self.required, self.optional = required, optional or {}


ANY = object()  # any JSON value: an axis's values are the suite's own
NUMBER = (int, float)
# What the readers take from suite.json, down to each entry: a type (a number is never a bool), ``[S]`` a list of
# S, ``{str: S}`` a table of S by name, ``(S1, S2)`` a list of exactly those, a _Table named keys.
_QUESTION_GROUP = (str, {str: [ANY]})
_SUITE_RECORD = _Table({}, {
    "name": str, "scale": str, "rank": str, "axes": {str: [ANY]}, "axis_labels": {str: [str]}, "columns": [str],
    "correlate": [[str]], "claims": [dict], "groups": {str: {str: [ANY]}}, "seeds": [int],
    "question": _Table({"question": str, "groups": [_QUESTION_GROUP]}, {"split": str}), "delta": NUMBER,
    "scales": [str], "levels": str, "scope": {str: [str]}})


def _check(value: Any, schema: Any, where: str) -> None:
    """Raise ValueError naming the first place in ``value`` that ``schema`` does not describe."""
    if schema is ANY:
        return
    if isinstance(schema, _Table):
        if not isinstance(value, dict):
            raise ValueError(f"'{where}' is {type(value).__name__}, not the table a run writes")
        for key, inner in schema.required.items():
            if key not in value:
                raise ValueError(f"'{where}' lacks '{key}'")
            _check(value[key], inner, f"{where}.{key}".lstrip("."))
        for key, inner in schema.optional.items():
            if value.get(key) is not None:
                _check(value[key], inner, f"{where}.{key}".lstrip("."))
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise ValueError(f"'{where}' is {type(value).__name__}, not the list a run writes")
        for i, entry in enumerate(value):
            _check(entry, schema[0], f"{where}[{i}]")
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise ValueError(f"'{where}' is {type(value).__name__}, not the table a run writes")
        for key, entry in value.items():
            _check(entry, schema[str], f"{where}.{key}")
    elif isinstance(schema, tuple) and not all(isinstance(t, type) for t in schema):
        if not isinstance(value, list) or len(value) != len(schema):
            raise ValueError(f"'{where}' is not the list of {len(schema)} a run writes")
        for i, (entry, inner) in enumerate(zip(value, schema)):
            _check(entry, inner, f"{where}[{i}]")
    elif not isinstance(value, schema) or isinstance(value, bool):
        name = getattr(schema, "__name__", "number")
        raise ValueError(f"'{where}' is {type(value).__name__}, not the {name} a run writes")


def _check_suite_record(data: dict[str, Any]) -> None:
    """suite.json's keys the readers use have their types, entry by entry (a damaged one is refused in one
    line, never a traceback)."""
    _check(data, _SUITE_RECORD, "")
    if data.get("claims"):
        from gstbench.plan.claims import check_stored_claims

        try:
            check_stored_claims(data["claims"], "suite.json")
        except SpecError as exc:
            raise ValueError(f"at '{exc.key}': {exc.message}") from None


class Store:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def check_writable(self) -> None:
        """Refuse, in one line naming the directory, a run directory that cannot be written."""
        if self.root.exists() and not self.root.is_dir():
            raise GstbenchError(f"{self.root} is a file, not a directory; pass `gstbench run --out` a directory "
                                f"(it is created when missing)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".write-probe.", suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise GstbenchError(f"cannot write to {self.root} ({exc.strerror or exc}); pass `gstbench run --out` a "
                                f"writable directory, or make this one writable") from None

    def cell_dir(self, spec: CellSpec) -> Path:
        return cell_path(self.root, spec.hash)

    def result_path(self, spec: CellSpec) -> Path:
        return self.cell_dir(spec) / "result.json"

    def read_cell(self, spec: CellSpec) -> CellFiles:
        return self._cell(self.cell_dir(spec))

    def read_dir(self, directory: Path) -> CellFiles:
        """What a cell directory of this store holds (``read_cell`` by its spec)."""
        return self._cell(directory)

    def load_result(self, spec: CellSpec) -> CellResult | None:
        """The stored result, or None when missing or corrupt."""
        return self.read_cell(spec).result

    def begin(self, spec: CellSpec, clean: bool = True) -> None:
        """Write spec.json; ``clean`` (the caller holds the cell's lease) removes temp files of a killed write."""
        d = inside(self.root, self.cell_dir(spec), "the run directory, --out")  # no link out of it
        d.mkdir(parents=True, exist_ok=True)
        if clean:
            for stale in d.glob(".*.tmp"):
                stale.unlink(missing_ok=True)
        text = _json({"hash": spec.hash, "spec": spec.canonical()})
        path = d / "spec.json"
        if not path.exists() or path.read_text() != text:
            atomic_write_text(path, text)

    def finish(self, spec: CellSpec, result: CellResult) -> None:
        """Store a result: events.jsonl and result.json together, or neither (raises the OSError)."""
        d = self.cell_dir(spec)
        events = "".join(json.dumps(e, sort_keys=True) + "\n" for e in result.events_json())
        atomic_write_files({d / "events.jsonl": events, d / "result.json": _json(result.to_json())})
        (d / CHECKPOINT).unlink(missing_ok=True)  # the cell is done: nothing left to resume

    def write_suite(self, data: dict[str, Any]) -> None:
        atomic_write_json(self.root / "suite.json", data)

    def suite_is(self, data: dict[str, Any]) -> bool:
        """Whether suite.json already holds ``data`` (a run with nothing to do then writes nothing)."""
        path = self.root / "suite.json"
        try:
            return path.read_text() == _json(data)
        except OSError:
            return False

    def read_suite(self) -> dict[str, Any]:
        path = self.root / "suite.json"
        if self.root.exists() and not self.root.is_dir():
            raise GstbenchError(f"{self.root} is a file, not a result directory; pass the directory given to "
                                f"`gstbench run --out`")
        if not path.exists():
            raise GstbenchError(f"{self.root} holds no gstbench run (no suite.json); "
                                f"pass the directory given to `gstbench run --out`")
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"a JSON object expected, not {type(data).__name__}")
            _check_suite_record(data)
            return data
        except (OSError, ValueError) as exc:
            raise GstbenchError(f"cannot read {path}: {exc}; run the suite again with `gstbench run --suite NAME "
                                f"--out {self.root}` to rewrite it (stored cells are kept)") from None

    def iter_cells(self) -> Iterator[CellFiles]:
        """Every cell directory, read from disk (corrupt ones too, with their problem)."""
        cells = self.root / "cells"
        if not cells.is_dir():
            return
        for d in sorted(cells.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                yield self._cell(d)

    def set_aside(self, cell: CellFiles) -> list[Path]:
        """Move a corrupt cell's unreadable files aside, warning for each; returns where they went."""
        moved = []
        for path in cell.bad_files:
            try:
                target = set_aside(path)
            except FileNotFoundError:
                continue  # never written, or another run moved it first
            else:
                warnings.warn(f"{path} could not be read ({cell.problem}); moved it to {target.name} and "
                              f"recomputing its cell", StoreWarning, stacklevel=2)
                moved.append(target)
        return moved

    def _cell(self, d: Path) -> CellFiles:
        spec_path, result_path, events_path = d / "spec.json", d / "result.json", d / "events.jsonl"
        spec = None
        if spec_path.exists():
            try:
                spec = json.loads(spec_path.read_text())
                if not (isinstance(spec, dict) and isinstance(spec.get("spec"), dict)
                        and isinstance(spec.get("hash"), str) and isinstance(spec["spec"].get("seed"), int)):
                    raise ValueError("not a gstbench cell spec (needs 'hash' and 'spec' with a 'seed')")
                if digest(spec["spec"]) != spec["hash"]:  # a changed spec no longer describes the cell stored
                    raise ValueError("its 'spec' does not hash to its 'hash'")
            except (OSError, ValueError) as exc:  # which cell the result is of is unknown: recompute it
                return CellFiles(d, None, None, f"{spec_path.name}: {_why(exc)}",
                                 (spec_path, result_path, events_path))
        if not result_path.exists():
            return CellFiles(d, spec, None)
        try:
            data = json.loads(result_path.read_text())
        except (OSError, ValueError) as exc:
            return CellFiles(d, spec, None, f"{result_path.name}: {_why(exc)}", (result_path,))
        try:
            lines = events_path.read_text().splitlines() if events_path.exists() else []
            events = [json.loads(line) for line in lines if line.strip()]
        except (OSError, ValueError) as exc:  # a result without its events is incomplete: both go aside
            return CellFiles(d, spec, None, f"{events_path.name}: {_why(exc)}", (events_path, result_path))
        try:
            result = CellResult.from_json(data, events)
        except ResultFormatError as exc:
            bad = (result_path, events_path) if "events.jsonl" in str(exc) else (result_path,)
            return CellFiles(d, spec, None, f"{result_path.name}: {exc}", bad)
        return CellFiles(d, spec, result)


def _why(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"
    if isinstance(exc, UnicodeDecodeError):
        return "not text (binary content)"
    return str(exc)
