"""What a component is: the registered record, and the interfaces each kind implements.

Plugins register factories; the engine calls the objects they build through the small
interfaces below. Only the methods marked required must exist; each optional one is
declared here with what it is for, and the engine calls it when the object has it.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gstbench.layers import GroupSlice, PrunableGroup, PrunableLayer  # noqa: F401  (re-exported for plugins)

if TYPE_CHECKING:  # annotations only: listing components must not load torch
    import torch
    from torch import nn

KINDS = (
    "scorers",
    "targets",
    "effectors",
    "rewinds",
    "regularizers",
    "metrics",
    "models",
    "datasets",
    "executors",
    "loggers",
    "runtimes",
    "suites",
)

# Capability flags a component may declare; the matrix checks them before training.
NEEDS_ACTIVATIONS = "needs-activations"  # scorer: the engine lets it hook forward passes
REMOVES_UNITS = "removes-units"  # effector: changes tensor shapes (physical removal)
TEMPORARY = "temporary"  # effector: targeted units come back after a while (zero, noise)
SOFT = "soft"  # effector: pruned units train on; each event re-picks the whole share, the last one for good
WEIGHTS = "weights"  # scorer or effector: also works on individual weights (granularity = "weights")
GROUPS = "groups"  # scorer or effector: also works on declared groups of coupled slices (heads, neurons)
ACROSS_LAYERS = "across-layers"  # scorer: its unit scores compare across layers (a global ranking of units needs it)
MAPS_2D = "2d-maps"  # scorer: reads 2-D feature maps (images); refused on 1-D signals
LOADS_WEIGHTS = "loads-weights"  # rewind: loads a stored state (needs the unpruned shapes)
NEEDS_PARENT = "needs-parent"  # metric: compares with the unpruned parent (same model, data, training, seed)
NEEDS_INDEPENDENT = "needs-independent-parent"  # metric: compares the parent with one trained from another seed


@functools.lru_cache(maxsize=None)
def _options_of(factory: Any, is_model: bool) -> dict[str, Any] | None:
    """A factory's options once per process: a large matrix resolves the same components thousands of times."""
    params = list(inspect.signature(factory).parameters.values())
    if is_model:
        params = params[2:]
    options: dict[str, Any] = {}
    for p in params:
        if p.kind is p.VAR_KEYWORD:
            return None
        if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
            options[p.name] = p.default if p.default is not p.empty else REQUIRED
    return options


@dataclass(frozen=True)
class Component:
    """One registered component: ``plugin:name`` plus how to build it."""

    kind: str
    name: str
    plugin: str
    factory: Any
    description: str = ""
    capabilities: tuple[str, ...] = ()
    revision: int = 1
    # metrics: (result key, "higher" or "lower") for each key whose better direction is known
    better: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"{self.plugin}:{self.name}"

    @property
    def hash_id(self) -> str:
        """The id as it enters a cell's hash: the revision only when bumped."""
        return self.id if self.revision == 1 else f"{self.id}@{self.revision}"

    def option_defaults(self) -> dict[str, Any] | None:
        """Options a suite may set, with their defaults; None if the factory takes **kwargs.

        A model factory's first two parameters (input shape, number of classes) come
        from the dataset, not from the suite.
        """
        if not callable(self.factory):
            return {}
        try:
            options = _options_of(self.factory, self.kind == "models")
        except TypeError:  # an unhashable callable object: not cached
            options = _options_of.__wrapped__(self.factory, self.kind == "models")
        return None if options is None else dict(options)


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()  # option_defaults' value of an option without a default


def id_parts(component_id: str) -> tuple[str, str, str]:
    """A component id as a cell's hash writes it, ``plugin:name@revision``, split into its three parts.

    A bare ``name`` has plugin ""; an id without ``@`` has revision "" (revision 1, omitted).
    """
    plugin, _, rest = component_id.partition(":") if ":" in component_id else ("", "", component_id)
    name, _, revision = rest.partition("@")
    return plugin, name, revision


@dataclass
class LayerState:
    """Pruning state of one layer during a cell, in the layer's current (physical) indexing.

    With granularity "filters" a unit is an output channel, or a group's unit (a head, a neuron), and
    ``alive`` has one entry per unit; with "weights" a unit is one weight and ``alive`` has the weight's shape.
    Scorers return scores of ``alive``'s shape; targets and effectors see flat indices.
    """

    name: str
    spec: PrunableLayer | PrunableGroup
    conv: nn.Module  # a group's: the module of its first slice (its device, its dtype)
    bn: nn.Module | None
    n_original: int
    original_index: torch.Tensor  # physical unit -> original unit (flat)
    alive: torch.Tensor  # bool per physical unit
    granularity: str = "filters"

    @property
    def is_group(self) -> bool:
        return isinstance(self.spec, PrunableGroup)

    @property
    def n_physical(self) -> int:
        return int(self.alive.numel())

    @property
    def n_alive(self) -> int:
        return int(self.alive.sum())

    @property
    def alive_flat(self) -> torch.Tensor:
        return self.alive.flatten()


@dataclass
class PruningContext:
    """What scorers, targets and effectors may use during a cell."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    example_input: torch.Tensor
    generator: torch.Generator  # seeded per cell; draw all pruning randomness from it
    step: int = 0
    data: "TensorData | None" = None  # the cell's data, for scorers that need labelled examples
    batch_seed: int = 0
    calibration: int | None = None  # the suite's prune.calibration: every draw's size when set

    def training_batch(self, size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` training examples (inputs, labels) for gradient-based scorers, without augmentation
        (``calibration`` of them where the suite sets ``prune.calibration``: every method the same number).

        Drawn from ``batch_seed`` and the current step, not from ``generator``: a scorer that
        asks for a batch changes no other random draw of the cell, and every run of the cell
        sees the same examples at the same step.
        """
        if self.data is None:
            raise ValueError("this pruning context has no data; gradient-based scorers need the cell's data")
        import torch

        n = self.data.x_train.shape[0]
        size = self.calibration or size
        g = torch.Generator().manual_seed(self.batch_seed * 1_000_003 + self.step)
        idx = torch.randperm(n, generator=g)[:min(size, n)].to(self.data.x_train.device)
        return self.data.x_train[idx], self.data.y_train[idx]


class Scorer(Protocol):
    """Gives each physical filter of a layer a score (higher = more important)."""

    def score(self, layer: LayerState, ctx: PruningContext) -> torch.Tensor:  # required
        ...

    def attach(self, ctx: PruningContext, layers: dict[str, LayerState]) -> None:  # optional
        """Before training: hook what the scorer watches (activations). A scorer with it skips the parent cache."""

    def before_train_batch(self, step: int) -> None:  # optional
        """Before every training batch (e.g. to collect statistics on every n-th)."""

    def detach(self) -> None:  # optional
        """After the last event: remove what ``attach`` added."""

    def units_removed(self, layer: LayerState, kept: torch.Tensor) -> None:  # optional
        """After a physical removal: keep per-unit state in step with the surviving units ``kept``."""

    def state_dict(self) -> dict:  # optional, for a scorer that keeps state between batches or events
        """What a mid-cell checkpoint saves: tensors, numbers, strings, lists and dicts of them only."""

    def load_state_dict(self, state: dict, ctx: PruningContext, layers: dict[str, LayerState]) -> None:  # optional
        """Resume from ``state_dict``'s output (after ``attach``, in a fresh process)."""


def scores_fault(scores: torch.Tensor) -> str | None:
    """What breaks a scorer's rule of one finite float per unit ("non-float", "non-finite"), or None: the engine
    fails a cell on it and gstbench.testing.check_scorer reports it (a NaN would rank anywhere)."""
    if not scores.is_floating_point():
        return "non-float"
    return None if bool(scores.isfinite().all()) else "non-finite"


class Target(Protocol):
    """Picks ``count`` physical indices among the alive units, given their scores."""

    def select(self, scores: torch.Tensor, alive: torch.Tensor, count: int,
               generator: torch.Generator) -> torch.Tensor:  # required
        ...

    # state_dict / load_state_dict: optional, as for Scorer (draw randomness from ``generator``:
    # the checkpoint keeps its state already)


class Effector(Protocol):
    """Acts on the selected units of a layer.

    ``apply`` returns the kept physical indices when it changed shapes (physical removal),
    else None. ``after_step`` runs after every optimizer step (e.g. to keep masks at zero).
    """

    def apply(self, layer: LayerState, indices: torch.Tensor, ctx: PruningContext) -> torch.Tensor | None:  # required
        ...

    def after_step(self) -> None:  # optional
        """After every optimizer step (and after a rewind): e.g. keep masks at zero."""

    def harden(self, layer: LayerState, ctx: PruningContext) -> None:  # optional; required with ``soft``
        """After the layer's last event (``soft`` effectors): its dead units (``~layer.alive``) stay pruned."""

    def check_layer(self, model: nn.Module, layer_name: str, prunable: Any,
                    example_input: torch.Tensor) -> str | None:  # optional
        """Before training: the reason this effector cannot work on the layer, or None."""

    def state_dict(self) -> dict:  # optional
        """State of its own for a mid-cell checkpoint (e.g. temporary interventions under way).

        Without it, a resumed cell applies the effector once more to every unit pruned so far
        (that rebuilds masks and removed shapes), so an effector whose effect follows from the
        pruned units alone needs nothing.
        """

    def load_state_dict(self, state: dict, ctx: PruningContext, layers: dict[str, LayerState]) -> None:  # optional
        """Resume from ``state_dict``'s output, in place of that replay."""


@dataclass
class Resume:
    """Where retraining starts after a rewind: the schedule's step (its learning rate and data order).

    ``replay_lr`` False trains at the schedule's final learning rate instead (fine-tuning).
    """

    step: int
    replay_lr: bool = True


@dataclass
class RewindContext:
    """What a rewind may use between rounds. The engine re-applies the masks afterwards."""

    model: nn.Module
    checkpoint: dict[str, torch.Tensor] | None  # state_dict at checkpoint_step, if the rewind asked for one
    fresh_state: Any  # () -> state_dict of a newly initialized model (seeded per cell and round)
    steps_per_epoch: int
    total_steps: int
    round: int


class Rewind(Protocol):
    """What happens to weights and learning rate between prune-retrain rounds."""

    def checkpoint_step(self, steps_per_epoch: int, total_steps: int) -> int | None:  # required
        """The training step whose weights the engine must keep from the first run (None: none)."""
        ...

    def rewind(self, ctx: RewindContext) -> Resume:  # required
        ...

    def resume_step(self, steps_per_epoch: int, total_steps: int) -> int:  # optional
        """The step each round retrains from (the cost estimate reads it; without it: checkpoint_step, or 0)."""


class Regularizer(Protocol):
    """A training-time penalty: every training step minimizes cross-entropy + ``penalty(model)``.

    Network slimming (Liu et al. 2017) trains with an L1 penalty on BatchNorm's gamma so that
    pruning by gamma later removes channels the network already learned to do without. The
    penalty is added in every training run of the cell (the unpruned parent's, each round's).
    """

    def penalty(self, model: nn.Module) -> torch.Tensor:  # required
        """The penalty on the model's current parameters: a differentiable scalar tensor, on their device."""
        ...


@dataclass
class Evaluated:
    """A model a metric measures, with a memo that metrics share while that model stays unchanged."""

    model: nn.Module
    memo: dict[str, Any] = field(default_factory=dict)


@dataclass
class MetricContext:
    """What a metric sees at the end of a cell (in rounds mode: at the end of every round).

    ``parent`` is the unpruned model trained with the same model, data, training and seed;
    the engine provides it to metrics that declare ``needs-parent`` (for an unpruned cell,
    the parent is the cell's own model). ``independent`` is an unpruned network trained
    like the parent from another seed (engine.independent_seed), for metrics that declare
    ``needs-independent-parent``: how far apart two parents land is the reference for how
    far a pruned network is from its own. Metrics draw randomness from their own seeded
    generators, so every cell measures on the same samples and probes.
    """

    subject: Evaluated
    data: "TensorData"
    device: torch.device
    parent: Evaluated | None = None
    round: int | None = None
    independent: Evaluated | None = None

    @property
    def model(self) -> nn.Module:
        return self.subject.model


class Metric(Protocol):
    """Returns a dict of JSON-able values, its settings included; must leave the model as it found it."""

    def compute(self, ctx: MetricContext) -> dict[str, Any]:  # required
        ...

    def check(self, data: "TensorData", model: nn.Module) -> str | None:  # optional
        """Before training: the reason this metric cannot apply to the model and data, or None."""


class Shifts(Protocol):
    """Named distribution shifts of a dataset's test set, each at severities 1-5."""

    names: tuple[str, ...]

    def test_set(self, name: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:  # required
        """The shifted test inputs (normalized as the nominal ones) and their labels, on the CPU."""
        ...


class DatasetFactory(Protocol):
    """A dataset plugin's factory: called with the suite's options, it returns a TensorData."""

    def __call__(self, **options: Any) -> "TensorData":  # required
        ...

    def placeholder(self) -> "TensorData":  # optional
        """A stand-in of the data's shapes and classes that reads no files (suite checks, the cost estimate)."""


class Logger(Protocol):
    """An experiment tracker's view of one cell, built by ``factory(target)`` in the process that trains it.

    ``target`` is the TARGET of ``--log NAME:TARGET`` (None: the logger's default, under the
    run directory). Whatever a logger raises, the cell goes on without it (engine/tracking.py).
    """

    def start(self, run: Any) -> None:  # required
        """Once, before training: ``run`` is a ``gstbench.engine.tracking.LoggedRun`` (names, group, flat config)."""

    def log(self, step: int, values: dict[str, float]) -> None:  # required
        """Scalars at a training step: each epoch's curve point, and each pruning event (``prune/...``)."""

    def finish(self, status: str, metrics: dict[str, float], error: str | None) -> None:  # required
        """Once, after the cell: ``ok`` with its final metrics, or ``failed`` with its error."""


class Runtime(Protocol):
    """How a network runs for inference (eager, torch.compile, ONNX Runtime, a sparse format), built by
    ``factory(**options)``; its ``tolerance`` (rtol, atol) bounds its outputs' distance from eager's, ``sparse =
    True`` times the parent dense in eager, and an optional ``fresh()`` runs before each pair is prepared."""

    def unavailable(self, model: nn.Module, device: torch.device) -> str | None:  # required
        """Why it cannot run ``model`` on ``device`` here, in one line; None where it can."""

    def prepare(self, model: nn.Module, example: torch.Tensor) -> Any:  # required
        """Once per network and input shape (timed apart): a callable ``f(x) -> logits`` on ``x``'s device."""


DATA_DIR_ENV = "GSTBENCH_DATA_DIR"


def data_dir() -> Path:
    """Where dataset plugins keep files: ``$GSTBENCH_DATA_DIR`` (set by ``--data-dir``), else ~/.cache/gstbench/data."""
    return Path(os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "gstbench" / "data").expanduser()


@dataclass
class TensorData:
    """A dataset held as tensors (train and test), small enough to live on the device.

    ``shifts`` offers the dataset's own shifted test sets (MNIST-1D: stronger generator
    settings). ``normalization`` is the per-channel (mean, std) applied to image inputs
    whose raw values lie in [0, 1]; with it, image corruptions apply to the test set.
    ``augmentation(x, generator)`` transforms each training batch on its device (never the
    test set); the engine seeds its generator per step, so a resumed run draws the same.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    shifts: Shifts | None = None
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    augmentation: Any = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str, channels_last: bool = False) -> "TensorData":
        """The same data on ``device``; ``channels_last`` stores image inputs NHWC (faster convolutions on GPUs)."""
        import torch

        def move(x: torch.Tensor) -> torch.Tensor:
            x = x.to(device)
            return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x

        return TensorData(move(self.x_train), self.y_train.to(device), move(self.x_test), self.y_test.to(device),
                          self.num_classes, self.shifts, self.normalization, self.augmentation)
