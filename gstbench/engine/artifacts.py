"""Pruned models as artifacts: a cell's final model in safetensors, rebuilt through the registry, exported.

``trainings/<key16>/model.safetensors`` (``train.save_model``, on by default; ``cells/<hash16>/`` in
directories written before trainings were kept; store/trainings.py) holds the final model's state dict (parameters and BatchNorm buffers, on CPU, contiguous), one
``gstbench.kept.<layer>`` tensor per pruned layer (uint8 over the layer's original units: 1 =
the unit is alive in the final model), and in its metadata the cell's canonical spec, hash,
input shape and number of classes: everything ``load_model`` needs to rebuild the network
from the installed plugins, without the dataset.

``load_model(..., structured=False)`` gives the model as it trained: original shapes with dead
filters zeroed (mask effector), or already slim (remove effector). ``structured=True`` removes
every dead filter physically with torch-pruning (and what depends on it: the next BatchNorm,
the consumers' input channels), which computes the same function with fewer MACs.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from gstbench.plan.config import CellSpec, canonical_json, short_hash, spec_from_canonical, stored_spec
from gstbench.errors import GstbenchError, StoreWarning
from gstbench.plugins import Registry

if TYPE_CHECKING:
    from gstbench.engine.pruner import Pruner
    from gstbench.engine.state import Cell

from gstbench.store.store import MODEL, cell_model, link_or_copy, round_model
FORMAT = "gstbench-model-1"
KEPT = "gstbench.kept."


def kept_units(layers: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Per pruned layer, which of its original units the final model still has alive (bool, original indexing)."""
    out = {}
    for name, layer in layers.items():
        kept = torch.zeros(layer.n_original, dtype=torch.bool)
        kept[layer.original_index.cpu()] = layer.alive.flatten().cpu()
        out[name] = kept
    return out


def save_model(path: Path, model: nn.Module, spec: CellSpec, input_shape: tuple[int, ...], num_classes: int,
               kept: dict[str, torch.Tensor], granularity: str = "filters") -> None:
    """Write ``model`` (any device) with its kept units and what rebuilds it, atomically."""
    from safetensors.torch import save_file

    from gstbench import __version__
    from gstbench.store.store import atomic_replace

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({KEPT + name: mask.to(torch.uint8) for name, mask in kept.items()})
    metadata = {"format": FORMAT, "gstbench": __version__, "hash": spec.hash, "spec": spec.canonical_json(),
                "input_shape": json.dumps(list(input_shape)), "num_classes": str(num_classes),
                "granularity": granularity}
    atomic_replace(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def keep_model(cell: Cell, name: str, model: nn.Module, pruner: Pruner | None) -> None:
    """Write ``model`` as ``name`` with the cell's training (``cell.models``), when the cell keeps models."""
    if cell.models is None:
        return
    prune = cell.spec.prune
    _keeping(cell, lambda: save_model(
        cell.models / name, model, cell.spec.training_spec, cell.data.input_shape, cell.data.num_classes,
        kept_units(pruner.layers) if pruner is not None and not pruner.temporary else {},
        prune.granularity if prune else "filters"))


def keep_last_round(cell: Cell, rounds: int) -> None:
    """A rounds cell's final model is its last round's: linked as the training's model.safetensors."""
    if cell.models is not None:
        _keeping(cell, lambda: link_or_copy(cell.models / round_model(rounds), cell.models / MODEL))


def _keeping(cell: Cell, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:  # a full disk costs the kept model, not the cell: it trains on, keeping none
        warnings.warn(f"could not keep the model of cell {cell.spec.short_hash} in {cell.models} "
                      f"({exc.strerror or exc}); it goes on without keeping models", StoreWarning, stacklevel=3)
        cell.models = None


def model_file(where: Path | str) -> Path:
    """A cell directory's model file (in it, or with its training), or the file itself; one line naming the fix
    when there is none."""
    where = Path(where)
    if not where.exists() and (where.parent / where.name[:16]).is_dir() and len(where.name) == 64:
        where = where.parent / where.name[:16]  # a cell's full hash, as results(DIR).cells has it: its directory
    if not where.exists():
        raise GstbenchError(f"{where} does not exist: give a cell's directory, <run>/cells/<hash16> (the first 16 "
                            f"characters of its hash; gstbench.results(DIR).cells has each cell's `directory`)")
    path = where / MODEL if where.is_dir() else where
    if not path.is_file() and (where / "cells").is_dir():
        raise GstbenchError(f"{where} is a run directory; give one of its cells, {where / 'cells'}/<hash16> "
                            f"(gstbench.results(DIR).cells lists each cell's hash, label and seed)")
    if not path.is_file() and where.is_dir() and (where / "spec.json").is_file():
        try:
            spec = stored_spec(json.loads((where / "spec.json").read_text())["spec"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            spec = None  # the cell's spec cannot be read: the message below still names the directory
        if spec is not None and (kept := cell_model(where.parent.parent, spec)) is not None:
            return kept
    if not path.is_file():
        raise GstbenchError(f"{path} does not exist: the cell keeps no model (run before models were kept, or "
                            f"with --no-models); `gstbench run` without --no-models trains it again with its model")
    return path


def read_model_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types on a damaged header
        raise GstbenchError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc}); "
                            f"train the cell again to store its model: remove its directory and run `gstbench run` again") from None
    if metadata.get("format") != FORMAT:
        raise GstbenchError(f"{path} is not a gstbench model file (metadata format {metadata.get('format')!r}, "
                            f"expected {FORMAT!r})")
    return tensors, metadata


def load_model(where: Path | str, structured: bool = False, registry: Registry = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """The cell's final model, rebuilt through the registry and in eval mode.

    ``where`` is a cell directory or a model file. ``structured=True`` removes the dead filters
    physically. The returned module carries ``pruning_kept`` (layer -> bool per original unit)
    and ``gstbench_spec`` (its CellSpec); to fine-tune a masked model and keep it pruned,
    load it structured or zero the dead units again after each step.
    """
    path = model_file(where)
    return _rebuild(path, *read_model_file(path), structured, registry).to(device).eval()


def _rebuild(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str], structured: bool,
             registry: Registry) -> nn.Module:
    from gstbench.plugins import get_registry
    from gstbench.pruning import remove_dead_filters

    spec = spec_from_canonical(json.loads(metadata["spec"]))
    if canonical_json(spec.canonical()) != metadata["spec"] or spec.hash != metadata["hash"]:
        raise GstbenchError(f"{path}: its spec does not hash to its recorded cell {short_hash(metadata['hash'])}; "
                            f"the file was changed after gstbench wrote it")
    registry = registry or get_registry()
    input_shape = tuple(json.loads(metadata["input_shape"]))
    model = registry.build("models", spec.model, input_shape, int(metadata["num_classes"]))
    kept = {k[len(KEPT):]: v.bool() for k, v in tensors.items() if k.startswith(KEPT)}
    state = {k: v for k, v in tensors.items() if not k.startswith(KEPT)}
    example = torch.zeros(1, *input_shape)
    filters = metadata.get("granularity", "filters") == "filters"
    if filters:  # a fresh model gets the slim shapes of the layers the remove effector cut
        remove_dead_filters(model, {n: ~k for n, k in kept.items() if _stored_slim(model, n, k, state)}, example)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise GstbenchError(f"{path}: the weights do not fit model {spec.model.label} as the installed plugins "
                            f"build it ({str(exc).splitlines()[0]}); install the plugin version that trained it "
                            f"(its result.json's environment lists them)") from None
    if structured:
        if not filters:
            raise GstbenchError(f"{path}: this cell pruned single weights, which leaves no filter to remove; "
                                f"load it with structured=False (export-model --masked)")
        remove_dead_filters(model, {n: ~k for n, k in kept.items() if _physical(model, n) == k.numel()}, example)
    model.pruning_kept = kept
    model.gstbench_spec = spec
    return model


def _physical(model: nn.Module, name: str) -> int:
    from gstbench.pruning import layer_states

    return layer_states(model, [name])[name].n_physical


def _stored_slim(model: nn.Module, name: str, kept: torch.Tensor, state: dict[str, torch.Tensor]) -> bool:
    """Whether the stored weights of layer ``name`` have fewer filters than its original units."""
    from gstbench.pruning import stored_units

    declared = getattr(model, "prunable_layers", {})
    units = stored_units(declared[name], state) if name in declared else None
    return units is not None and units != kept.numel()


def export_model(where: Path | str, out: Path | str, structured: bool = True, registry: Registry = None) -> nn.Module:
    """Write a cell's model to ``out``: ``.safetensors`` (weights, kept units, spec: ``load_model`` reads it)
    or ``.pt2`` (a ``torch.export`` program: runs with ``torch.export.load(out).module()``, no gstbench)."""
    out = Path(out)
    if out.suffix not in (".safetensors", ".pt2"):
        raise GstbenchError(f"{out}: the file name must end in .safetensors (weights and spec) or .pt2 "
                            f"(a torch.export program)")
    path = model_file(where)
    tensors, metadata = read_model_file(path)
    model = _rebuild(path, tensors, metadata, structured, registry).eval()
    input_shape = tuple(json.loads(metadata["input_shape"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".safetensors":
        granularity = metadata.get("granularity", "filters")
        save_model(out, model, model.gstbench_spec, input_shape, int(metadata["num_classes"]), model.pruning_kept,
                   granularity)
    else:
        from gstbench.store.store import atomic_replace

        program = torch.export.export(model, (torch.zeros(2, *input_shape),),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:  # a file object: given a path, torch wants it to end in .pt2
                torch.export.save(program, f)

        atomic_replace(out, write)
    return model
