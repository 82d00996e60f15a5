"""Testing kit for gstbench and its plugins: pytest fixtures, contract checks, and files in real formats.

A plugin's tests opt in with ``pytest_plugins = "gstbench.testing"``, which provides the
fixtures ``register_plugin`` (a fresh registry with your plugin, for one test),
``tiny_data`` and ``tiny_model``. The ``check_*`` functions run a component through the
engine's calling protocol on a tiny real model and data and raise ``ContractError``
naming the component, the broken rule and the fix. docs/plugins.md describes each rule
and the helpers (``make_tiny_*``, ``stored_results``, ``files_outside``, ``descendants``,
``running``, ``write_cifar``, ``forkserver.run_gstbench`` and ``forkserver.popen_gstbench``):
that is the whole kit.
The checks raise their own errors, so pytest need not rewrite this module:
PYTEST_DONT_REWRITE (which also spares a plugin's test module a warning when it imports
the kit before ``pytest_plugins`` loads it).
"""

from __future__ import annotations

from typing import Any

from gstbench.testing.bench import ContractError, make_tiny_data, make_tiny_model
from gstbench.testing.components import check_dataset, check_metric, check_model, check_regularizer, check_rewind
from gstbench.testing.files import CIFAR10_CLASSES, files_outside, stored_results, write_cifar
from gstbench.testing.processes import descendants, running
from gstbench.testing.pruning import check_effector, check_scorer, check_target

try:
    import pytest
except ImportError:  # the kit's helpers work without pytest; its fixtures need it
    pytest = None

__all__ = ["CIFAR10_CLASSES", "ContractError", "check_dataset", "check_effector", "check_metric", "check_model",
           "check_regularizer", "check_rewind", "check_scorer", "check_target", "descendants", "files_outside",
           "make_tiny_data", "make_tiny_model", "running", "stored_results", "write_cifar"]


# ---- pytest fixtures (pytest_plugins = "gstbench.testing") ---------------------------------
if pytest is not None:

    @pytest.fixture
    def register_plugin(monkeypatch):
        """``register_plugin(plugin, name=None) -> Registry``: a fresh registry of the built-ins and ``plugin``
        (a module or object with hook implementations), used as gstbench's registry for this test only.

        Installed plugins are left out unless ``installed=True``. A plugin that fails to load
        raises ``PluginError`` here instead of warning.
        """
        from gstbench import plugins

        previous = plugins._REGISTRY

        def register(*items: Any, name: str | None = None, installed: bool = False) -> "plugins.Registry":
            monkeypatch.setenv("GSTBENCH_STRICT_PLUGINS", "1")
            named = [(name or getattr(item, "__name__", type(item).__name__).rsplit(".", 1)[-1], item)
                     for item in items]
            if name is not None and len(items) > 1:
                raise ValueError("name= applies to a single plugin")
            registry = plugins.Registry(named, installed=installed)
            plugins.reset_registry(registry)
            return registry

        yield register
        plugins.reset_registry(previous)

    @pytest.fixture(scope="session")
    def tiny_data():
        """MNIST-1D, 200 training and 200 test signals of shape (1, 40), 10 classes."""
        return make_tiny_data()

    @pytest.fixture
    def tiny_model(tiny_data):
        """A fresh seeded ``cnn1d`` with 8-16 filters per layer (prunable conv1..conv4), in train mode."""
        return make_tiny_model(tiny_data)
