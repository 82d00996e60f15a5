"""`gstbench measure`: add metrics to every finished cell of a run directory, on its stored models, without training.

Each finished cell's training is found as `gstbench run` finds it (run/orders.py); the
new metrics run on its model(s) exactly as a cell that had them from the start would run
them (same seeds, one thread), and their values join the cell's result.json, with each
metric's name and numeric keys in its ``measured_later`` (the leaderboard shows those keys
as columns). The cell keeps its hash: its spec says how it trained. Reports, claims, plots
and ``gstbench.results`` read the added values like any other.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gstbench.errors import GstbenchError, SpecError
from gstbench.plan.config import CellSpec, ComponentRef, stored_spec
from gstbench.plan.parse import component_ref
from gstbench.plan.seeds import seeds_flag
from gstbench.plan.selection import config_label
from gstbench.plan.checks import matrix_key, validate_cells
from gstbench.plugins import Registry
from gstbench.store.cell_result import CellResult
from gstbench.store.parents import ParentCache
from gstbench.store.store import Store, atomic_write_json, training_path
from gstbench.run.orders import MEASURE, resolve
from gstbench.store.trainings import Trainings, TrainingStore


@dataclass
class MeasureSummary:
    measured: int = 0  # cells that gained metrics
    already: int = 0  # cells that had every metric asked for
    unfinished: int = 0  # cells not finished (or failed): left alone
    without_model: list[str] = field(default_factory=list)  # one line per cell whose model is not stored
    failed: list[str] = field(default_factory=list)  # one line per cell whose metric raised: left as it was


def rerun_command(suite: dict[str, Any], registry: Registry) -> str:
    """``gstbench run`` of a stored run's suite as it ran: the built-in's name, or the suite file; the scale and
    the seeds when they are not the defaults."""
    import shlex

    name, source = str(suite.get("name", "SUITE")), str(suite.get("source", ""))
    try:
        builtin = Path(registry.get("suites", name).factory).resolve() == Path(source).resolve()
    except GstbenchError:
        builtin = False
    command = f"gstbench run --suite {name if builtin else shlex.quote(source or name + '.toml')}"
    if suite.get("scale") not in (None, "quick"):
        command += f" --scale {suite['scale']}"
    if suite.get("seeds"):
        command += f" --seeds {seeds_flag(suite['seeds'])}"
    return command


def metric_refs(registry: Registry, texts: list[str]) -> list[ComponentRef]:
    """``--metric`` values as refs; an unknown metric is refused in one line, with the closest name."""
    return [component_ref(registry, "metrics", text, "--metric", None) for text in texts]


def measure_run(directory: Path | str, refs: list[ComponentRef], registry: Registry, device: str = "cpu",
                threads: int | None = 1) -> MeasureSummary:
    """Compute the metrics ``refs`` (``metric_refs``) on every finished cell of ``directory`` that lacks them;
    returns what was done. Refuses (GstbenchError, one line) a metric that cannot apply to a cell's data."""
    import torch

    from gstbench.engine.cell import measure_stored
    from gstbench.engine.tracking import CellTracker
    from gstbench.run.runner import cpu_threads

    directory = Path(directory)
    store = Store(directory)
    suite = store.read_suite()  # one line when it is not a run directory
    summary = MeasureSummary()
    work: list[tuple[Path, CellSpec, CellResult, CellSpec]] = []
    for files in store.iter_cells():
        if files.result is None or not files.result.ok or files.spec is None:
            summary.unfinished += 1
            continue
        spec = stored_spec(files.spec["spec"])
        have = {ref.label for ref in spec.metrics} | set(files.result.measured_later)
        new = tuple(ref for ref in refs if ref.label not in have)
        if not new:
            summary.already += 1
            continue
        work.append((files.directory, spec, files.result, dataclasses.replace(spec, metrics=new)))
    groups: dict = {}  # each metric is checked once per model and data: it applies to them, or not
    for cell_dir, _, _, adding in work:
        groups.setdefault(matrix_key((adding.model, adding.dataset, adding.metrics)), []).append((cell_dir, adding))
    for cells in groups.values():
        try:
            validate_cells([cells[0][1]], registry)
        except SpecError as exc:
            others = f" (and {len(cells) - 1} more cells on the same data)" if len(cells) > 1 else ""
            raise GstbenchError(f"{cells[0][0]}{others}: {exc.message}; measure only the metrics that apply "
                                f"(`gstbench list metrics` describes each)") from None
    found = list(TrainingStore(directory).damaged()) if work else []
    TrainingStore(directory).set_aside(found)
    damaged = {d.directory.name: d for d in found}
    trainings = Trainings([directory])
    parents = ParentCache(directory / "parents")
    again = rerun_command(suite, registry)
    for cell_dir, spec, result, adding in work:
        order = resolve(adding, None, trainings).order
        if order.action != MEASURE:
            label = config_label(spec.canonical(), list(suite.get("axes", {})))
            damage = damaged.get(training_path(directory, spec.training_hash).name)
            why = (f"its stored training was damaged ({damage.why}; moved aside)" if damage is not None else
                   "keeps no model (stored before models were kept, or with --no-models)")
            summary.without_model.append(
                f"{cell_dir}: {label} seed {spec.seed} {why}; train it with the metrics in another directory: "
                f"{again} " + " ".join(f"--metric {ref.label}" for ref in adding.metrics)
                + f" --reuse {directory} --out NEWDIR")
            continue
        keys: dict[str, list[str]] = {}
        started = time.perf_counter()
        stored = order.stored
        try:
            with cpu_threads(threads):  # all at once: work metrics share is done once, as in a run
                added = measure_stored(adding, registry, torch.device(device), parents, CellTracker(), stored, keys)
        except Exception as exc:  # a cell whose metric fails is reported, as a run stores a failed cell
            summary.failed.append(f"{cell_dir}: {type(exc).__name__}: {exc}".replace("\n", " "))
            continue
        added.wall_s = time.perf_counter() - started
        if spec.prune is not None and spec.prune.rounds:
            values = added.rounds[-1].metrics or {}
        else:
            values = {k: v for k, v in added.metrics.items() if k not in stored.result.metrics}
        numeric = {label: sorted(k for k in names if isinstance(values.get(k), (int, float))
                                 and not isinstance(values.get(k), bool)) for label, names in keys.items()}
        _merge(cell_dir, result, added, values, numeric)
        summary.measured += 1
    return summary


def _merge(cell_dir: Path, result: CellResult, added: CellResult, values: dict, keys: dict[str, list[str]]) -> None:
    """The added metrics' values into the cell's result.json (its rounds' too), written atomically."""

    def joined(old: dict | None, new: dict | None) -> dict | None:
        if new is None:
            return old
        out = {**(old or {}), **{k: v for k, v in new.items() if k != "metric_wall_s"}}
        out["metric_wall_s"] = {**(old or {}).get("metric_wall_s", {}), **new.get("metric_wall_s", {})}
        return out

    rounds = [dataclasses.replace(r, metrics=joined(r.metrics, a.metrics)) for r, a in zip(result.rounds, added.rounds)]
    timing = dict(result.timing)
    timing["metrics_s"] = round(timing.get("metrics_s", 0.0) + added.timing.get("metrics_s", 0.0), 4)
    merged = dataclasses.replace(result, wall_s=round(result.wall_s + added.wall_s, 3),
                                 metrics=joined(result.metrics, values), rounds=rounds, timing=timing,
                                 measured_later={**result.measured_later, **keys})
    atomic_write_json(cell_dir / "result.json", merged.to_json())
