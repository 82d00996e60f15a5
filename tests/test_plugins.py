"""Plugins: built-ins are ordinary plugins, ids resolve, a broken plugin is named and left out."""

from __future__ import annotations

import sys
import warnings

import pytest

from gstbench.errors import PluginError, UnknownComponent
from gstbench.plugins import PluginWarning, Registry

from conftest import make_plugin_dist, run_cli

GOOD = '''
from gstbench import hookimpl

class Halves:
    def score(self, layer, ctx):
        import torch
        return torch.arange(layer.n_physical, dtype=torch.float32)

def l2():
    """A scorer that shares its bare name with the built-in l2."""
    return Halves()

def index():
    """Scores each filter by its index."""
    return Halves()

@hookimpl
def register_scorers(register):
    register("l2", l2)
    register("index", index)
'''


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Put plugin distributions on sys.path the way pip would, for this test only."""
    def install(dist, module, source):
        make_plugin_dist(tmp_path, dist, module, source)
        monkeypatch.syspath_prepend(str(tmp_path))
        sys.modules.pop(module, None)
        return tmp_path
    monkeypatch.delenv("GSTBENCH_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("GSTBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("GSTBENCH_STRICT_PLUGINS", raising=False)
    return install


def test_builtins_are_ordinary_plugins_with_full_ids(registry):
    assert registry.plugins["gstbench"].status == "loaded"
    assert registry.get("scorers", "l2").id == "gstbench:l2"
    assert registry.get("scorers", "gstbench:activation-l1").name == "activation-l1"
    for kind in ("scorers", "targets", "effectors", "rewinds", "models", "datasets", "executors", "suites"):
        assert registry.components(kind), kind


def test_unknown_names_suggest_the_closest(registry):
    with pytest.raises(UnknownComponent, match=r"unknown scorer 'activaton-l1' \(did you mean: activation-l1"):
        registry.get("scorers", "activaton-l1")
    with pytest.raises(UnknownComponent, match="did you mean: smallest"):
        registry.get("targets", "smalest")


def test_third_party_plugin_adds_components_and_clashes_are_named(installed):
    installed("gstbench-good", "goodplug", GOOD)
    registry = Registry()
    assert registry.plugins["gstbench-good"].provides == {"scorers": ["l2", "index"]}
    assert registry.get("scorers", "index").id == "gstbench-good:index"
    with pytest.raises(UnknownComponent, match="both gstbench-good:l2 and gstbench:l2"):
        registry.get("scorers", "l2")
    assert registry.get("scorers", "gstbench-good:l2").plugin == "gstbench-good"


def test_load_and_disable_environment_variables(installed, monkeypatch):
    installed("gstbench-good", "goodplug", GOOD)
    monkeypatch.setenv("GSTBENCH_LOAD_PLUGINS", "")
    assert Registry().plugins["gstbench-good"].status == "disabled"
    monkeypatch.setenv("GSTBENCH_LOAD_PLUGINS", "gstbench-good")
    assert Registry().plugins["gstbench-good"].status == "loaded"
    monkeypatch.delenv("GSTBENCH_LOAD_PLUGINS")
    monkeypatch.setenv("GSTBENCH_DISABLE_PLUGINS", "gstbench-good")
    registry = Registry()
    assert registry.plugins["gstbench-good"].status == "disabled"
    assert registry.get("scorers", "l2").id == "gstbench:l2"


@pytest.mark.parametrize("source,reason", [
    ("raise ImportError('no module named torchish')\n", "import of brokenplug failed: ImportError"),
    ("from gstbench import hookimpl\n@hookimpl\ndef register_scorerz(register):\n    pass\n",
     "unknown hook(s) register_scorerz (did you mean: register_scorers"),
    ("from gstbench import hookimpl\n@hookimpl\ndef register_scorers(register):\n    register('x', None)\n"
     "    raise RuntimeError('boom')\n", "register_scorers raised RuntimeError: boom"),
    ("from gstbench import hookimpl\n@hookimpl\ndef register_targets(register):\n"
     "    register('t', object)\n    register('t', object)\n", "registers the target 't' twice"),
    ("from gstbench import hookimpl\n@hookimpl\ndef register_scorers(register):\n    register('../evil', object)\n",
     "invalid scorer name: '../evil' is not a name"),  # names reach directories: never a path
])
def test_a_broken_plugin_is_named_and_everything_else_works(installed, monkeypatch, source, reason):
    installed("gstbench-broken", "brokenplug", source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry = Registry()
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    assert len(messages) == 1 and 'plugin "gstbench-broken"' in messages[0] and reason in messages[0]
    assert registry.plugins["gstbench-broken"].status == "failed"
    assert "x" not in [c.name for c in registry.components("scorers")]
    assert registry.get("scorers", "l2").id == "gstbench:l2"
    monkeypatch.setenv("GSTBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="gstbench-broken"):
        Registry()


def test_plugins_can_add_commands(installed, monkeypatch):
    source = ("import click\nfrom gstbench import hookimpl\n@hookimpl\ndef register_commands(cli):\n"
              "    @cli.command('hello')\n    def hello():\n        click.echo('hello from a plugin')\n")
    root = installed("gstbench-cmd", "cmdplug", source)
    proc = run_cli("hello", env={"PYTHONPATH": str(root), "GSTBENCH_LOAD_PLUGINS": "gstbench-cmd"})
    assert proc.returncode == 0 and "hello from a plugin" in proc.stdout
