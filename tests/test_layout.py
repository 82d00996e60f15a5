"""The package layout: imports run only down the data path, plugin authors' import paths hold, and light commands load no torch."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gstbench"

# The data path, as layers: a module may import from its own stage and the stages below it, never above;
# run and reports are both fed by the store and engine, and neither imports the other. Top-level modules
# (errors, names, components, hookspecs, plugins, pruning, stopping) are the base every stage may use;
# the command line, the scaffold and the testing kit sit above everything.
LAYERS = {"plan": 1, "store": 2, "engine": 3, "builtin": 4, "run": 5, "reports": 5}
ENTRY = {"cli", "scaffold", "testing", "_doubles", "__main__"}


def _stage(module: str) -> tuple[str, int] | None:
    parts = module.split(".")
    if parts[0] != "gstbench":
        return None
    if len(parts) == 1:
        return ("gstbench", 0)  # the package itself: its __version__ and hookimpl
    head = parts[1]
    if head in LAYERS:
        return head, LAYERS[head]
    if head in ENTRY:
        return head, 6
    return "base", 0


def _imports(tree: ast.Module):
    """Every import in a module, function-level ones included; ``if TYPE_CHECKING:`` blocks left out."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, [node.module] + [f"{node.module}.{a.name}" for a in node.names]


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if module.endswith(".__init__") and module.count(".") == 1:
            continue  # gstbench/__init__.py: its lazy helpers import where plugin authors call them
        here, rank = _stage(module)
        for line, names in _imports(ast.parse(path.read_text(), str(path))):
            for name in names:
                target = _stage(name)
                if target is None or target[0] in (here, "gstbench"):
                    continue
                if target[1] > rank or (target[1] == rank and rank not in (0, 6)):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name} "
                                 f"({here} may not import {target[0]})")
    return sorted(set(found))


def test_no_import_runs_back_up_the_data_path():
    assert _violations() == []


def test_the_engine_executes_orders_and_never_reads_the_training_cache():
    """The run stage decides (run/orders.py); the engine imports nothing of store/trainings.py."""
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}" for path in sorted((PACKAGE / "engine").rglob("*.py"))
             for line, names in _imports(ast.parse(path.read_text(), str(path)))
             if any(name.startswith("gstbench.store.trainings") for name in names)]
    assert found == []


def test_the_checkpoint_code_names_no_engine_class():
    """Checkpoints save and load registered parts by name: engine/checkpoint.py imports nothing of the engine."""
    path = PACKAGE / "engine" / "checkpoint.py"
    tree = ast.parse(path.read_text(), str(path))
    imported = [name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for name in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])]
    assert not [name for name in imported if name.startswith("gstbench.engine")]
    assert not {"Trainer", "Pruner"} & {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_the_check_sees_an_import_up_the_path(tmp_path, monkeypatch):
    """The check itself can fail: a planted upward import in a copy of the tree is found."""
    import shutil

    copy = tmp_path / "gstbench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    planted = copy / "plan" / "seeds.py"
    planted.write_text(planted.read_text() + "\n\ndef _late():\n    from gstbench.reports.report import build_report\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", copy)
    assert _violations() == ["gstbench/plan/seeds.py:" + str(planted.read_text().count("\n")) +
                             " imports gstbench.reports.report (plan may not import reports)",
                             "gstbench/plan/seeds.py:" + str(planted.read_text().count("\n")) +
                             " imports gstbench.reports.report.build_report (plan may not import reports)"]


@pytest.mark.parametrize("path", ["gstbench.hookimpl", "gstbench.results", "gstbench.load_model",
                                  "gstbench.components.TensorData", "gstbench.components.PruningContext",
                                  "gstbench.testing.check_scorer", "gstbench.testing.stored_results"])
def test_plugin_authors_import_paths_keep_working(path):
    module, _, name = path.rpartition(".")
    assert getattr(importlib.import_module(module), name) is not None


def test_results_is_still_the_notebook_function_after_the_reports_load():
    import gstbench
    import gstbench.reports.report  # noqa: F401  (a subpackage named results would replace the function here)

    assert callable(gstbench.results)


def _modules_after(args: list[str]) -> dict:
    """The modules a fresh interpreter has loaded after running ``gstbench ARGS`` in-process."""
    code = ("import sys, json\nfrom gstbench.cli import main\nsys.argv = ['gstbench', *json.loads(sys.argv[1])]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps({m: True for m in ('torch', 'numpy', 'scipy', 'matplotlib') if m in sys.modules}),"
            " file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


STORED = str(Path(__file__).parent / "data" / "stored-eb9532a")


@pytest.mark.parametrize("args", [["--help"], ["list", "scorers"], ["plugins"], ["suites"], ["run", "--help"],
                                  ["suites", "show", "methods", "--scale", "paper"], ["report", STORED],
                                  ["claims", STORED], ["compare", STORED, STORED]])
def test_light_commands_load_no_torch(args):
    """Whatever only lists, plans or reads: the listings, a suite's matrix and cost, a stored run's tables."""
    assert "torch" not in _modules_after(args)


def test_help_loads_no_numerics():
    assert _modules_after(["--help"]) == {}


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def test_every_module_fits_450_lines_and_every_function_80_unless_a_comment_says_why():
    """DESIGN.md's size rule: a longer function carries a ``# long:`` comment on its first line saying why."""
    long_modules = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
                    if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    long_functions = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and "# long:" not in lines[node.lineno - 1]:
                    long_functions.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}: {length}")
    assert long_modules == [] and long_functions == []
