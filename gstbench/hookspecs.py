"""The whole plugin contract of gstbench: one registration hook per kind of component.

A plugin is a module (or object) with functions decorated by ``gstbench.hookimpl``
and named like the hooks below. Each ``register_*`` hook receives a ``register``
callable::

    register(name, factory, *, description=None, capabilities=(), revision=1, better=None)

``name`` is the bare name (the full id becomes ``plugin:name``), ``factory`` builds the
component (its keyword parameters become the component's options in suite files),
``description`` defaults to the first line of the factory's docstring, ``capabilities``
are flags the matrix checks before training (see ``gstbench.components``), and
``revision`` is bumped by the author whenever the component's results change, so that
stored results are not reused across the change. A metric may declare ``better``, a
table of its result keys to "higher" or "lower" (``{"ood_acc_mean": "higher"}``): what
``gstbench compare`` calls improved or regressed; a key without one is only "changed".

A plugin that offers a whole family of components (every timm model, say) registers the
name ``*`` with a resolver: ``register("*", resolve)``; ``plugin:anything`` then calls
``resolve("anything")``, which returns that component's factory or raises
``gstbench.errors.UnknownComponent``. Family members are addressed by full id only.

Hooks only ever gain optional arguments: an implementation may accept any subset of
the documented parameters. docs/plugins.md has a section per hook (a test keeps it so),
the rules each kind must keep, and the testing kit that checks them (gstbench.testing).
"""

from __future__ import annotations

from typing import Callable

import click
import pluggy

hookspec = pluggy.HookspecMarker("gstbench")

Register = Callable[..., None]


@hookspec
def register_scorers(register: Register) -> None:
    """Register scorers: factories of ``Scorer`` objects that score each filter of a layer."""


@hookspec
def register_targets(register: Register) -> None:
    """Register targets: factories of ``Target`` objects that pick which scored units are hit."""


@hookspec
def register_effectors(register: Register) -> None:
    """Register effectors: factories of ``Effector`` objects that act on the hit units (mask, remove, ...)."""


@hookspec
def register_rewinds(register: Register) -> None:
    """Register rewinds: what happens to weights or learning rate after a pruning round."""


@hookspec
def register_regularizers(register: Register) -> None:
    """Register regularizers: factories of ``Regularizer`` objects whose penalty joins every training step's loss."""


@hookspec
def register_metrics(register: Register) -> None:
    """Register metrics computed at the end of a cell: factories of ``Metric`` objects."""


@hookspec
def register_models(register: Register) -> None:
    """Register models: ``factory(input_shape, num_classes, **options) -> nn.Module`` with ``prunable_layers``."""


@hookspec
def register_datasets(register: Register) -> None:
    """Register datasets: ``factory(**options) -> TensorDataset`` (train and test tensors)."""


@hookspec
def register_executors(register: Register) -> None:
    """Register executors: factories of ``Executor`` objects that map cells to results."""


@hookspec
def register_loggers(register: Register) -> None:
    """Register loggers: ``factory(target) -> Logger`` that sends each cell to an experiment tracker."""


@hookspec
def register_runtimes(register: Register) -> None:
    """Register runtimes: ``factory(**options) -> Runtime`` that runs a network for inference (TensorRT, OpenVINO, ...)."""


@hookspec
def register_suites(register: Register) -> None:
    """Register suites: ``register(name, path_to_toml, description=...)``."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands to the ``gstbench`` command group."""
