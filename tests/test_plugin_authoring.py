"""Writing plugins: the guide covers every hook, new-plugin packages pass their own checks, local plugin files
load, hook calls trace, and a broken plugin package installed with pip leaves the CLI working."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gstbench import hookspecs, testing
from gstbench.scaffold import KINDS, new_plugin

from conftest import DATA, run_cli

pytest_plugins = "gstbench.testing"

GUIDE = Path(__file__).parents[1] / "docs" / "plugins.md"


def test_every_hook_has_a_section_with_its_signature_in_the_author_guide():
    hooks = [name for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if hasattr(f, "gstbench_spec")]
    assert len(hooks) == 13
    text = GUIDE.read_text()
    sections = dict(re.findall(r"^### (register_\w+)\n(.*?)(?=^#{2,3} )", text, re.M | re.S))
    for hook in hooks:
        assert hook in sections, f"docs/plugins.md has no '### {hook}' section"
        params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
        assert f"{hook}({params}" in sections[hook], f"the {hook} section does not show its signature"
        assert "```python" in sections[hook] and "@hookimpl" in sections[hook], f"the {hook} section has no example"


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", list(KINDS))
def test_new_plugin_of_each_kind_meets_its_own_contract(kind, tmp_path, register_plugin):
    name = f"my-{kind}"
    written = new_plugin(name, kind, tmp_path)
    root = tmp_path / name
    assert {p.relative_to(root).as_posix() for p in written} == {
        "pyproject.toml", "README.md", f"gstbench_my_{kind}/__init__.py", f"tests/test_my_{kind}.py"}
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points.gstbench]\nmy-%s = "gstbench_my_%s"' % (kind, kind) in pyproject
    test_source = (root / "tests" / f"test_my_{kind}.py").read_text()
    assert 'pytest_plugins = "gstbench.testing"' in test_source and f"check_{kind}(" in test_source
    module = _load(root / f"gstbench_my_{kind}" / "__init__.py", f"gstbench_my_{kind}")
    registry = register_plugin(module, name=name)
    getattr(testing, f"check_{kind}")(registry.get(f"{kind}s", f"{name}:{name}"))


def test_new_plugin_refuses_a_bad_name_and_an_existing_folder(tmp_path):
    bad = run_cli("new-plugin", "My_Snip", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "plugin name 'My_Snip': use lowercase letters" in bad.stderr
    (tmp_path / "snip").mkdir()
    exists = run_cli("new-plugin", "snip", "--dir", str(tmp_path))
    assert exists.returncode == 2 and "already exists" in exists.stderr


LOCAL_SCORER = '''
"""A local scorer: each filter's mean absolute weight."""
from gstbench import hookimpl


class MeanAbs:
    def score(self, layer, ctx):
        return layer.conv.weight.detach().flatten(1).abs().mean(1).cpu()


@hookimpl
def register_scorers(register):
    register("snip", MeanAbs, description="Mean |w| of each filter")
'''


def test_plugins_dir_loads_local_files_into_a_run_with_pool_workers_and_names_a_broken_one(tmp_path):
    local = tmp_path / "myplugins"
    local.mkdir()
    (local / "snip.py").write_text(LOCAL_SCORER)
    (local / "broken.py").write_text("import torch\nraise RuntimeError('half-written idea')\n")
    listed = run_cli("--plugins-dir", str(local), "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    info = {p["name"]: p for p in json.loads(listed.stdout)}
    assert info["snip"]["status"] == "loaded" and info["snip"]["provides"] == {"scorers": ["snip"]}
    assert info["snip"]["source"] == str(local / "snip.py")
    assert info["broken"]["status"] == "failed"
    assert "RuntimeError: half-written idea (at broken.py:2); fix the file" in info["broken"]["error"]
    assert 'warning: gstbench plugin "broken" was left out' in listed.stderr
    assert "GSTBENCH_DISABLE_PLUGINS" not in listed.stderr  # it leaves out installed plugins, not files

    out = tmp_path / "out"
    run = run_cli("--plugins-dir", str(local), "run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1",
                  "--scorer", "snip:snip", "--executor", "pool", "--workers", "2", "--out", str(out), "--json")
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)["rows"]
    assert sorted(r["scorer"] for r in rows) == ["-", "snip", "snip"]  # the leaderboard shortens unique ids

    missing = run_cli("--plugins-dir", str(tmp_path / "nope"), "plugins")
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_trace_prints_each_plugin_load_and_hook_call(tmp_path):
    (tmp_path / "snip.py").write_text(LOCAL_SCORER)
    proc = run_cli("list", "scorers", env={"GSTBENCH_TRACE_PLUGINS": "1", "GSTBENCH_PLUGINS_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert f'gstbench trace: loaded plugin "snip" local from {tmp_path / "snip.py"} (hooks: register_scorers)' \
        in proc.stderr
    assert re.search(r"gstbench trace: snip\.register_scorers\(register\) registered snip \(\d+\.\d ms\)", proc.stderr)
    assert re.search(r"gstbench trace: gstbench\.register_scorers\(register\) registered l2, l1, ", proc.stderr)
    assert "snip:snip" in proc.stdout
    quiet = run_cli("list", "scorers", env={"GSTBENCH_PLUGINS_DIR": str(tmp_path)})
    assert "gstbench trace" not in quiet.stderr


BROKEN = {  # entry point -> (module source, what the message must say)
    "imports": ("import torchish\n", "import of broken_pkg.imports failed: ModuleNotFoundError: No module named "
                "'torchish' (at imports.py:1); install what it needs"),
    "raises": ("from gstbench import hookimpl\n\n@hookimpl\ndef register_scorers(register):\n"
               "    register('fine', object)\n    raise ValueError('no config')\n",
               "register_scorers raised ValueError: no config (at raises.py:6); fix the hook"),
    "twice": ("from gstbench import hookimpl\n\n@hookimpl\ndef register_targets(register):\n"
              "    register('t', object)\n    register('t', object)\n",
              "registers the target 't' twice (at twice.py:6); give each component of a kind its own name"),
    "unknown": ("from gstbench import hookimpl\n\n@hookimpl\ndef register_scorer(register):\n    pass\n",
                "implements unknown hook(s) register_scorer (did you mean: register_scorers"),
    "badparam": ("from gstbench import hookimpl\n\n@hookimpl\ndef register_scorers(reg):\n    pass\n",
                 "are declared in the hookimpl but can not be found in the hookspec"),
}


def test_a_broken_plugin_package_installed_with_pip_leaves_the_cli_working(tmp_path):
    package = tmp_path / "broken-pkg"
    (package / "broken_pkg").mkdir(parents=True)
    (package / "broken_pkg" / "__init__.py").write_text('"""Deliberately broken gstbench plugins."""\n')
    for name, (source, _) in BROKEN.items():
        (package / "broken_pkg" / f"{name}.py").write_text(source)
    entry_points = "\n".join(f'{name} = "broken_pkg.{name}"' for name in BROKEN)
    (package / "pyproject.toml").write_text(textwrap.dedent('''\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "gstbench-broken"
        version = "0.0.1"

        [project.entry-points.gstbench]
        ''') + entry_points + '\n\n[tool.setuptools]\npackages = ["broken_pkg"]\n')
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--no-build-isolation", "--target", str(site), str(package)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr
    env = {"PYTHONPATH": str(site), "GSTBENCH_LOAD_PLUGINS": ",".join(BROKEN)}

    listed = run_cli("plugins", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    info = {p["name"]: p for p in json.loads(listed.stdout)}
    for name, (_, message) in BROKEN.items():
        assert info[name]["status"] == "failed" and message in info[name]["error"], (name, info[name]["error"])
        assert f'gstbench plugin "{name}" was left out' in listed.stderr
        assert f"GSTBENCH_DISABLE_PLUGINS={name}" in listed.stderr
    assert info["gstbench"]["status"] == "loaded"
    table = run_cli("plugins", env=env)
    said = " ".join(table.stdout.split())  # the reason is wrapped under the table
    assert table.returncode == 0 and "raises failed: register_scorers raised ValueError: no config" in said

    scorers = run_cli("list", "scorers", "--json", env=env)
    assert scorers.returncode == 0
    assert "fine" not in {s["name"] for s in json.loads(scorers.stdout)}  # a failed plugin provides nothing
    shown = run_cli("suites", "show", "tradeoff", env=env)
    assert shown.returncode == 0 and "49 cells" in shown.stdout

    strict = run_cli("plugins", env={**env, "GSTBENCH_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "was left out" in strict.stderr and "Traceback" not in strict.stderr
