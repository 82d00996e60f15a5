"""A plugin whose components are named like built-in ones never breaks a built-in suite, and a flag's unknown
component is refused against the flag."""

from __future__ import annotations

import pytest

from gstbench import hookimpl
from gstbench.plan.suite import load_suite
from gstbench.plugins import Registry

from conftest import run_cli

KINDS = ("scorers", "targets", "effectors", "rewinds", "regularizers", "metrics", "models", "datasets")
SUITES = ("smoke", "ci", "tradeoff", "flatness", "permanence", "rate", "methods", "ood", "rewind", "heads", "posttrain",
          "speed")


class Shadow:
    """Registers, under its own plugin name, a component named like every built-in one (the built-in's factory)."""

    def __init__(self, builtins: Registry) -> None:
        self.components = {kind: [(c.name, c.factory) for c in builtins.components(kind)
                                  if c.plugin == "gstbench" and "*" not in c.name] for kind in KINDS}


def _hook(kind: str):
    def register_kind(self, register):
        for name, factory in self.components[kind]:
            register(name, factory)
    register_kind.__name__ = f"register_{kind}"
    return hookimpl(register_kind)


for _kind in KINDS:  # one hook per kind, each registering that kind's names
    setattr(Shadow, f"register_{_kind}", _hook(_kind))


@pytest.fixture(scope="module")
def registries():
    plain = Registry()
    shadowed = Registry(extra_plugins=[("shadow", Shadow(plain))])
    assert any(c.plugin == "shadow" and c.name == "bn-gamma" for c in shadowed.components("scorers"))
    return plain, shadowed


@pytest.mark.parametrize("suite", SUITES)
def test_a_plugin_named_like_every_built_in_leaves_each_built_in_suite_as_it_was(registries, suite):
    plain, shadowed = registries
    for scale in load_suite(plain, suite, placeholders=True, build_models=False).scales:
        expected = load_suite(plain, suite, scale=scale, placeholders=True, build_models=False)
        got = load_suite(shadowed, suite, scale=scale, placeholders=True, build_models=False)
        assert [c.hash for c in got.cells] == [c.hash for c in expected.cells], (suite, scale)
        assert got.axis_labels == expected.axis_labels


def test_a_suite_that_extends_a_built_in_inherits_its_full_ids(registries, tmp_path):
    plain, shadowed = registries
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "smoke"\nseeds = 1\n')
    assert [c.hash for c in load_suite(shadowed, str(mine)).cells] == [c.hash for c in load_suite(plain, str(mine)).cells]


SHADOW_FILE = """
from gstbench import hookimpl
from gstbench.builtin.impl.scorers import BatchNormScaleScorer


@hookimpl
def register_scorers(register):
    register("bn-gamma", BatchNormScaleScorer, description="a scorer named like the built-in one")
"""


def test_smoke_and_methods_run_beside_a_local_plugin_named_like_a_built_in(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "mine.py").write_text(SHADOW_FILE)
    plugins = ["--plugins-dir", str(tmp_path / "plugins")]
    run = run_cli(*plugins, "run", "--suite", "smoke", "--seeds", "1", "--out", str(tmp_path / "smoke"), "--json")
    assert run.returncode == 0, run.stderr
    shown = run_cli(*plugins, "suites", "show", "methods")
    assert shown.returncode == 0, shown.stderr
    # where a user writes the bare name it is ambiguous, and refused against the flag before any training
    ambiguous = run_cli(*plugins, "run", "--suite", "smoke", "--scorer", "bn-gamma", "--out", str(tmp_path / "a"))
    assert ambiguous.returncode == 2 and "Error: --scorer bn-gamma: scorer name 'bn-gamma' is ambiguous" in \
        ambiguous.stderr and not (tmp_path / "a").exists()


def test_a_flags_unknown_component_is_refused_against_the_flag_naming_the_plugin_that_failed(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "badimport.py").write_text("import no_such_module\n")
    proc = run_cli("--plugins-dir", str(tmp_path / "plugins"), "run", "--suite", "smoke", "--scorer", "badimport:nope",
                   "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("Error: --scorer badimport:nope: unknown scorer") and "smoke.toml" not in line
    assert "plugin 'badimport' failed to load" in line and "no_such_module" in line
    typo = run_cli("run", "--suite", "smoke", "--metric", "hessian-trac", "--out", str(tmp_path / "r"))
    assert typo.returncode == 2 and "--metric hessian-trac: unknown metric" in typo.stderr


def test_new_plugin_warns_when_its_name_shadows_a_built_in(tmp_path):
    proc = run_cli("new-plugin", "snip", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "warning: gstbench has a built-in scorer named 'snip'" in proc.stderr and "snip:snip" in proc.stderr
    assert "gstbench run --suite smoke --seeds 1 --scorer snip:snip" in proc.stderr
    quiet = run_cli("new-plugin", "mysnip", "--dir", str(tmp_path))
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_the_catalog_commands_fit_100_columns_off_a_terminal():
    """plugins, suites and list print long descriptions and provides lists: wrapped, never wider than run's screen."""
    for command in (["plugins"], ["suites"], *(["list", kind] for kind in KINDS + ("executors", "loggers"))):
        proc = run_cli(*command)
        assert proc.returncode == 0, proc.stderr
        assert max(map(len, proc.stdout.splitlines())) <= 100, command
