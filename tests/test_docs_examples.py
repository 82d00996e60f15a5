"""README.md and docs/*.md as a user copies them: every code block run, built-in suites at a tiny size, and every
`gstbench` command in them, in a block or in the prose, parsed by the real command line.

Every fenced block has a language: ``text`` is printed output (a table, an error line, a tree) and is not run;
every other block is run here or by the test file its HTML comment names. ``gstbench`` commands run as real
subprocesses of the CLI (their cells in the command's process, as tests' commands do: conftest.run_cli) with
these rewrites, so that a page's commands take seconds, not hours:
- ``--suite S`` runs S's stand-in: a file named S that extends S and keeps its axes, includes, schedule, claims
  and scales, on 200 MNIST-1D signals of one training batch, a narrow network and one seed (``stand_in``);
- ``--seeds A-B`` runs seed A only;
- docs/ci.md's /tmp is the test's directory.
A command that needs a GPU (``--device cuda``) runs where one is present; elsewhere it is parsed, and its suite
and scale resolved, as every other command is. docs/replication.md runs each suite on its own seeds and one of
its eight runs on fresh seeds (the others differ from it only in the suite, seen to run the line before).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import re
import shlex
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from gstbench import hookimpl
from gstbench.errors import GstbenchError
from gstbench.plan.suite import load_suite
from gstbench.plugins import Registry

from conftest import run_cli, speed_in_eager

pytest_plugins = "gstbench.testing"

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"bash", "python", "toml", "yaml", "text"}


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence
    language: str
    text: str
    note: str  # the HTML comment on the line above the fence, if any

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path | None = None) -> list[Block]:
    """The fenced blocks of one page (or of all), indented ones (inside a list item) included."""
    found = []
    for path in [page] if page else PAGES:
        text = path.read_text()
        for m in re.finditer(r"^(?:[ \t]*(<!--.*?-->)\n)?([ \t]*)```(\S*)\n(.*?)^\2```", text, re.S | re.M):
            body = textwrap.dedent(m.group(4)) if m.group(2) else m.group(4)
            found.append(Block(path, text[:m.start(2)].count("\n") + 1, m.group(3), body, m.group(1) or ""))
    return found


def block_at(page: str, first_line: str) -> Block:
    """The block of ``page`` whose text starts with ``first_line``."""
    matches = [b for b in blocks(ROOT / page) if b.text.startswith(first_line)]
    assert len(matches) == 1, f"{page}: {len(matches)} blocks start with {first_line!r}"
    return matches[0]


def commands(text: str) -> list[str]:
    """A bash block's commands: comments dropped, continuation lines joined, `a && b` split, and a `for x in ...;
    do ... done` loop unrolled."""
    text = re.sub(r"\\\n\s*", " ", text)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    out: list[str] = []
    while lines:
        line = lines.pop(0)
        loop = re.fullmatch(r"for (\w+) in (.*?); do", line)
        if loop:
            body = []
            while (inner := lines.pop(0)) != "done":
                body.append(inner)
            out += [b.replace(f"${loop.group(1)}", value) for value in loop.group(2).split() for b in body]
        else:
            out += [part.strip() for part in line.split("&&")]
    return [" ".join(c.split()) for c in out]


def prose_commands(page: Path) -> list[str]:
    """The `gstbench ...` commands written inline in a page's prose (outside fenced blocks)."""
    text = re.sub(r"^([ \t]*)```.*?^\1```", "", page.read_text(), flags=re.S | re.M)
    found = [" ".join(m.group(1).split()) for m in re.finditer(r"`(gstbench [^`]+)`", text)]
    return [c for c in found if not c.split()[1].endswith(":")]  # `gstbench trace: ...` is output


# ---- parsing: every command's subcommand, options and names exist ----

def parse(args: list[str]) -> click.Context:
    """``gstbench ARGS`` through the real command group's parser, down to the command (nothing runs)."""
    from gstbench.cli import cli

    ctx = cli.make_context("gstbench", list(args))
    command: click.Command = cli
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            assert command.invoke_without_command, f"gstbench {command.name} needs a command"
            break
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


PLACEHOLDERS = re.compile(r"^[A-Z][A-Z_]*(\[.*)?$|\.\.\.|<")  # DIR, NAME:TARGET, BASE NEW, <hash>, ...


def check_synopsis(command: str, where: str) -> None:
    """A usage line (``gstbench run --suite NAME [--scale quick|paper] ...``): its command and each option exist."""
    from gstbench.cli import cli

    words = command.split()[1:]
    group, path = cli, []
    while isinstance(group, click.Group) and words and re.fullmatch(r"[a-z][a-z-]*", words[0]):
        path.append(words.pop(0))
        group = group.get_command(click.Context(cli), path[-1])
        assert group is not None, f"{where}: `{command}`: no command {' '.join(path)}"
    known = {o for p in group.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", command):
        assert option in known, f"{where}: `{command}`: gstbench {' '.join(path)} has no option {option}"


def check_parses(command: str, where: str) -> None:
    if "[" in command or "..." in command or "|" in command.split(" > ")[0]:
        return check_synopsis(command, where)
    args = shlex.split(command.split(" > ")[0])[1:]
    try:
        ctx = parse(args)
    except click.MissingParameter:  # prose may name an option without the arguments it goes with
        return
    except click.BadParameter as exc:
        if "does not exist" in str(exc):  # a directory the page's earlier commands make: the option parsed
            return
        raise AssertionError(f"{where}: `{command}`: {exc.format_message()}") from None
    except click.BadOptionUsage as exc:
        if "requires an argument" in str(exc) and command.split()[-1].startswith("--"):
            return  # prose names an option (`gstbench run --out`): it exists
        raise AssertionError(f"{where}: `{command}`: {exc.format_message()}") from None
    except click.UsageError as exc:
        raise AssertionError(f"{where}: `{command}`: {exc.format_message()}") from None
    if ctx.command.name != "run":
        return
    registry = installed()
    suite = ctx.params.get("suite_name")
    if suite and not suite.endswith(".toml") and not PLACEHOLDERS.search(suite):
        scales = load_suite(registry, suite, placeholders=True, build_models=False).scales
        assert ctx.params["scale"] in scales, f"{where}: `{command}`: suite {suite} has no scale {ctx.params['scale']}"
    # a component of gstbench or an installed plugin must exist (the pages' own example plugins are the reader's)
    for kind, name in [("scorers", ctx.params.get("scorer")), *(("metrics", m) for m in ctx.params["metrics"])]:
        if name and not PLACEHOLDERS.search(name) and (":" not in name or name.split(":")[0] in registry.plugins):
            try:
                registry.get(kind, name)
            except GstbenchError as exc:
                raise AssertionError(f"{where}: `{command}`: {exc}") from None


@functools.cache
def installed() -> Registry:
    """gstbench and every installed plugin (the first-party ones, in CI), built once."""
    return Registry()


def every_command() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for block in blocks(page):
            if block.language == "bash":
                found += [(str(block), c) for c in commands(block.text) if c.startswith("gstbench ")]
        found += [(str(page.relative_to(ROOT)), c) for c in prose_commands(page)]
    return found


def test_every_gstbench_command_in_the_docs_parses_with_the_options_it_names(monkeypatch):
    monkeypatch.delenv("GSTBENCH_PLUGINS_DIR", raising=False)  # --plugins-dir sets it as it parses
    found = every_command()
    assert len(found) > 80, len(found)  # the extraction still finds the pages' commands
    skipped = []
    for where, command in found:
        if PLACEHOLDERS.search(command.split()[1]):
            skipped.append(command)
            continue
        check_parses(command, where)
    assert not skipped, skipped


def test_a_wrong_option_or_suite_scale_in_a_page_would_be_caught():
    for wrong in ("gstbench run --suite tradeoff --seed 3", "gstbench run --suite smoke --scale paper",
                  "gstbench run --suite NAME [--scale quick|paper] [--seed N]",
                  "gstbench run --suite tradeoff --scorer torch-pruning:taylr", "gstbench run --metric hessian-trac",
                  "gstbench report DIR --formats html", "gstbench suites shows tradeoff"):
        with pytest.raises(AssertionError):
            check_parses(wrong, "planted")


# ---- the inventory: each block is output, or run here, or run by the test its note names ----

def test_every_block_has_a_language_and_each_runnable_one_is_run():
    for block in blocks():
        assert block.language in LANGUAGES, f"{block}: a fenced block needs a language ({', '.join(sorted(LANGUAGES))})"
        if block.language == "text":
            assert not any(line.startswith(("gstbench ", "$ ", "python")) for line in block.text.splitlines()), \
                f"{block}: a command in a text block is never run: make it a bash block"
            continue
        elsewhere = re.search(r"(tests/test_\w+\.py)", block.note)
        if elsewhere:
            assert (ROOT / elsewhere.group(1)).exists(), f"{block}: its note names {elsewhere.group(1)}, which is gone"
            assert block.page.name in (ROOT / elsewhere.group(1)).read_text(), \
                f"{block}: {elsewhere.group(1)} does not read {block.page.name}"
        else:
            assert run_here(block), \
                f"{block}: no test runs this {block.language} block (run it in tests/test_docs_examples.py)"


def run_here(block: Block) -> bool:
    """Whether a test of this module runs the block (each test finds its blocks by these first lines)."""
    if block.page.name == "plugins.md" and block.language == "python":
        return bool(SIGNATURE.match(block.text.strip())) or block in hook_examples() or block.text.startswith(
            ("import gstbench_mysnip", "pytest_plugins"))
    return block.text.startswith(RUN_HERE.get(block.page.name, ()))


RUN_HERE = {  # page: the first lines of its blocks that tests here run
    "README.md": ("# in a virtual environment", "gstbench run --suite tradeoff ", 'name = "mysuite"', "import gstbench\n",
                  "gstbench new-plugin"),
    "plugins.md": ("[project.entry-points.gstbench]", "gstbench --plugins-dir", "# my-tradeoff.toml",
                   "gstbench run --suite tradeoff --scorer torch-pruning"),
    "ci.md": ("gstbench run --suite ci --out /tmp/ci", "name: pruning-regression"),
    "paper-scale.md": ("gstbench suites show tradeoff --scale paper", "gstbench run --suite tradeoff --scale paper"),
    "replication.md": ("gstbench run --suite tradeoff ", "for suite in"),
}


# ---- stand-ins: a built-in suite at a tiny size ----

STAND_IN = """\
name = "{name}"
extends = "{parent}"
seeds = 1
[base]
model = {{ name = "gstbench:cnn1d", channels = [8, 8, 8, 16] }}
dataset = {{ name = "gstbench:mnist1d", num_samples = 200, train_split = 0.5 }}
[base.train]
batch_size = 100
"""


# a suite of the built-in transformer keeps its blocks, heads and linear layers (its layers name them)
TRANSFORMER = '{ name = "gstbench:transformer", dim = 8, depth = 3, heads = 4, head_dim = 2, hidden = 20, patch = 4 }'


def stand_in(suite: str, where: Path) -> Path:
    """A file named like ``suite`` (a built-in name or a suite file) that runs its matrix at a tiny size."""
    registry = installed()
    parent = str(Path(suite).resolve()) if suite.endswith(".toml") else suite
    real = load_suite(registry, parent, placeholders=True, build_models=False)
    path = where / f"{real.name}.toml"
    text = STAND_IN.format(name=real.name, parent=parent)
    text = text.replace("[base.train]", f"{speed_in_eager(parent)}[base.train]")  # speed in eager alone
    if any(cell.model.id == "gstbench:transformer" for cell in real.cells):
        text = text.replace('{ name = "gstbench:cnn1d", channels = [8, 8, 8, 16] }', TRANSFORMER)
    path.write_text(text)
    return path


@pytest.mark.parametrize("suite", ["smoke", "ci", "tradeoff", "flatness", "rate", "permanence", "methods", "ood", "rewind",
                                   "heads", "posttrain"])
def test_a_stand_in_has_its_suites_configurations_and_claims(suite, tmp_path):
    registry = installed()
    real = load_suite(registry, suite, seeds=[0], placeholders=True, build_models=False)
    small = load_suite(registry, str(stand_in(suite, tmp_path)), placeholders=True, build_models=False)
    assert small.name == real.name and len(small.cells) == len(real.cells) and small.scales == real.scales
    assert small.axis_labels == real.axis_labels and small.groups == real.groups
    assert [c["id"] for c in small.claims] == [c["id"] for c in real.claims]


def gstbench(command: str, cwd: Path, env: dict | None = None) -> str:
    """Run a page's `gstbench ...` command as the module docstring says; its stdout (it must succeed)."""
    args = shlex.split(command)[1:]
    out = None
    if ">" in args:
        at = args.index(">")
        args, out = args[:at], args[at + 1]
    if "--suite" in args:
        at = args.index("--suite") + 1
        args[at] = str(stand_in(args[at] if not args[at].endswith(".toml") else str(cwd / args[at]), cwd / ".stand-ins"))
    if "--seeds" in args:
        at = args.index("--seeds") + 1
        first = args[at].split("-")[0]
        args[at] = f"{first}-{first}"  # a range of one: a bare number is a count of seeds
    proc = run_cli(*args, cwd=cwd, env=env, timeout=600)
    assert proc.returncode == 0, f"`{command}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    if out and out != "/dev/null":
        (cwd / out).write_text(proc.stdout)
    return proc.stdout


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / ".stand-ins").mkdir()
    return tmp_path



def ci_install_arguments() -> list[str]:
    """The packages .ci/run installs (what the README's install command must install)."""
    line = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if "uv pip install" in line)
    return [a for a in shlex.split(line.split("uv pip install", 1)[1]) if not a.startswith(('"${', "${"))]


def installed_arguments(command: str) -> list[str]:
    return shlex.split(re.split(r"pip install", command)[-1])


# ---- README.md ----



@pytest.mark.slow
def test_the_readme_runs_as_written(workdir, monkeypatch):
    # Install, test, run: the install command is .ci/run's (CI runs it on a fresh machine), the test command too
    install = commands(block_at("README.md", "# in a virtual environment").text)
    assert installed_arguments(install[1]) == ci_install_arguments(), "README and .ci/run install different things"
    assert install[0] == "python3 -m pip install uv" and install[2] == "python3 -m pytest"
    assert "\npython3 -m pytest\n" in (ROOT / ".ci" / "run").read_text()
    assert install[3] == "gstbench run --suite tradeoff"
    gstbench(install[3], workdir)
    # Adding a measurement without training again: the run above is stored, flatness measures its trainings
    reuse = commands(block_at("README.md", "gstbench run --suite tradeoff ").text)
    assert reuse[0] == install[3]
    for command in reuse[1:]:
        gstbench(command, workdir)
    flatness = json.loads((workdir / "gstbench-results" / "flatness" / "suite.json").read_text())
    assert flatness["name"] == "flatness"
    # Suite files: the example runs, and a misspelt scorer is refused with the line the README shows
    mysuite = block_at("README.md", 'name = "mysuite"')
    (workdir / "mysuite.toml").write_text(mysuite.text)
    assert "gstbench run --suite mysuite.toml" in prose_commands(ROOT / "README.md")
    gstbench("gstbench run --suite mysuite.toml", workdir)
    (workdir / "mysuite.toml").write_text(mysuite.text.replace('scorer = "bn-gamma"', 'scorer = "l3"'))
    refused = run_cli("run", "--suite", "mysuite.toml", cwd=workdir)
    shown = next(b for b in blocks(ROOT / "README.md") if b.text.startswith("Error: in mysuite.toml"))
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == shown.text.strip()
    # Pruned networks: the load_model example, on the run above
    monkeypatch.chdir(workdir)
    example = block_at("README.md", "import gstbench\n")
    namespace: dict = {}
    exec(compile(example.text, str(example), "exec"), namespace)
    assert namespace["slim"] is not None and namespace["model"] is not None
    # Plugins: the four commands are the author guide's walkthrough, which tests/test_plugin_walkthrough.py runs
    assert commands(block_at("README.md", "gstbench new-plugin").text) == \
        commands(block_at("docs/plugins.md", "gstbench new-plugin").text)


# ---- docs/plugins.md ----

SIGNATURE = re.compile(r"^(register\w*)\((.*)\)( -> None)?$")




def hook_examples() -> list[Block]:
    """docs/plugins.md's example plugin module: its imports, then each hook's example, in page order."""
    return [b for b in blocks(ROOT / "docs" / "plugins.md") if b.language == "python"
            and not SIGNATURE.match(b.text.strip()) and ("@hookimpl" in b.text or b.text.startswith("import click"))]


def test_the_hooks_signatures_in_the_author_guide_are_the_hooks_and_register_gstbench_calls():
    from gstbench import hookspecs

    documented = [b for b in blocks(ROOT / "docs" / "plugins.md") if SIGNATURE.match(b.text.strip())]
    hooks = {name for name, f in vars(hookspecs).items() if name.startswith("register_") and callable(f)}
    assert {SIGNATURE.match(b.text.strip()).group(1) for b in documented} == hooks | {"register"}
    seen = {}

    class Probe:
        @staticmethod
        @hookimpl
        def register_scorers(register):
            seen["register"] = [p for p in inspect.signature(register).parameters.values() if not p.name.startswith("_")]

    Registry(extra_plugins=[("probe", Probe())])
    for block in documented:
        name, params, _ = SIGNATURE.match(block.text.strip()).groups()
        shown = [p.strip() for p in params.split(",")]
        if name == "register":
            actual = [f"{p.name}={p.default!r}" if p.default is not p.empty else p.name for p in seen["register"]]
            actual.insert(2, "*")
            assert shown == actual, f"{block}: gstbench calls register({', '.join(actual)})"
        else:
            actual = list(inspect.signature(getattr(hookspecs, name)).parameters)
            assert [s.split(":")[0] for s in shown] == actual, f"{block}: the hook's parameters are {actual}"


EXAMPLE_SUITE = """\
name = "my-sweep"
seeds = 1
[base]
model = { name = "mysnip:tiny-cnn", width = 8 }
dataset = { name = "mysnip:blobs", num_samples = 200 }
metrics = ["mysnip:weight-norm"]
[base.train]
epochs = 4
batch_size = 50
checkpoint_every = 2
regularizer = "mysnip:gamma-l2"
[base.prune]
scorer = "mysnip:filter-l1"
target = "mysnip:middle"
effector = "mysnip:zero-for-good"
start = "1ep"
end = "2ep"
period = "1ep"
layers = { conv2 = { fraction = 0.5 } }
[[include]]
prune = { scorer = "mysnip:filter-l1", target = "mysnip:middle", effector = "gstbench:mask", rounds = 2, fraction = 0.5, layers = ["conv1"] }
rewind = "mysnip:lr-halfway"
[scales.quick]
"""


def example_plugin(root: Path) -> Path:
    """docs/plugins.md's hook examples as the installed package gstbench_mysnip (its entry point as the guide's
    pyproject table declares it), shipping the my-sweep suite that uses every component it registers."""
    entry = tomllib.loads(block_at("docs/plugins.md", "[project.entry-points.gstbench]").text)
    (name, module), = entry["project"]["entry-points"]["gstbench"].items()
    source = "\n\n".join(b.text for b in hook_examples())
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gstbench]\n{name} = {module}\n")
    (root / module).mkdir()
    (root / module / "__init__.py").write_text(source)
    (root / module / "my-sweep.toml").write_text(EXAMPLE_SUITE)
    return root


def test_each_hook_example_in_the_author_guide_passes_its_contract_check(tmp_path, monkeypatch, register_plugin):
    from gstbench import testing

    assert hook_examples()[0].text.startswith("import click"), "the guide's example module lost its imports"
    monkeypatch.syspath_prepend(str(example_plugin(tmp_path)))
    monkeypatch.delitem(sys.modules, "gstbench_mysnip", raising=False)  # new-plugin's, where a test imported it
    plugin = importlib.import_module("gstbench_mysnip")
    registry = register_plugin(plugin, name="mysnip")
    checks = {"scorers": ("filter-l1", testing.check_scorer), "targets": ("middle", testing.check_target),
              "effectors": ("zero-for-good", testing.check_effector), "rewinds": ("lr-halfway", testing.check_rewind),
              "regularizers": ("gamma-l2", testing.check_regularizer), "metrics": ("weight-norm", testing.check_metric),
              "models": ("tiny-cnn", testing.check_model), "datasets": ("blobs", testing.check_dataset)}
    for kind, (name, check) in checks.items():
        check(registry.get(kind, f"mysnip:{name}"))
    assert {c.name for c in registry.components("executors") if c.plugin == "mysnip"} == {"reversed"}
    assert {c.name for c in registry.components("loggers") if c.plugin == "mysnip"} == {"jsonl"}
    # the guide's runtime computes what eager does
    import torch
    from gstbench.plan.config import ComponentRef

    blobs = testing.check_dataset(registry.get("datasets", "mysnip:blobs"))
    model = registry.build_model(ComponentRef("mysnip:tiny-cnn"), blobs).eval()
    exported, x = registry.build("runtimes", ComponentRef("mysnip:exported")), blobs.x_test[:4]
    assert exported.unavailable(model, x.device) is None
    with torch.inference_mode():
        torch.testing.assert_close(exported.prepare(model, x)(x), model(x))


@pytest.mark.slow
def test_the_author_guides_example_plugin_installed_runs_a_suite_with_every_component_it_registers(tmp_path):
    site = example_plugin(tmp_path / "site")
    env = {"PYTHONPATH": str(site), "GSTBENCH_LOAD_PLUGINS": "mysnip"}
    hello = run_cli("hello", env=env, cwd=tmp_path)
    assert hello.returncode == 0 and hello.stdout == "hello from a plugin\n", hello.stderr
    log = tmp_path / "cells.jsonl"
    proc = run_cli("run", "--suite", "my-sweep", "--executor", "reversed", "--log", f"jsonl:{log}", "--json",
                   "--out", str(tmp_path / "out"), env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["run"]["executor"] == "reversed" and report["run"]["failed"] == 0 and report["run"]["ran"] == 2, \
        report["run"]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {line["status"] for line in lines if line["step"] == -1} == {"ok"}
    assert all("weight_norm" in line for line in lines if line["step"] == -1)


@pytest.mark.slow
def test_the_author_guides_commands_run(workdir, tmp_path, monkeypatch, register_plugin):
    # a local plugin file: DIR/snip.py registering "snip" is snip:snip (its scorer is the guide's example)
    (workdir / "myplugins").mkdir()
    scorer = next(b for b in hook_examples() if "register_scorers" in b.text)
    (workdir / "myplugins" / "snip.py").write_text(hook_examples()[0].text + "\n\n" + scorer.text.replace(
        'register("filter-l1"', 'register("snip"'))
    gstbench(commands(block_at("docs/plugins.md", "gstbench --plugins-dir").text)[0], workdir)
    # a first-party plugin's scorer in the tradeoff suite
    taylor, = commands(block_at("docs/plugins.md", "gstbench run --suite tradeoff --scorer torch-pruning").text)
    gstbench(taylor, workdir, env={"GSTBENCH_LOAD_PLUGINS": "torch-pruning"})
    # my-tradeoff.toml: the tradeoff matrix plus its scorer axis, with new-plugin's mysnip and torch-pruning's taylor
    assert run_cli("new-plugin", "mysnip", "--kind", "scorer", cwd=tmp_path).returncode == 0
    monkeypatch.syspath_prepend(str(tmp_path / "mysnip"))
    monkeypatch.delitem(sys.modules, "gstbench_mysnip", raising=False)  # the guide's, where a test imported it
    gstbench_mysnip = importlib.import_module("gstbench_mysnip")

    monkeypatch.setenv("GSTBENCH_LOAD_PLUGINS", "torch-pruning")
    registry = register_plugin(gstbench_mysnip, name="mysnip", installed=True)
    mine = block_at("docs/plugins.md", "# my-tradeoff.toml")
    (tmp_path / "my-tradeoff.toml").write_text(mine.text)
    suite = load_suite(registry, str(tmp_path / "my-tradeoff.toml"), placeholders=True, build_models=False)
    tradeoff = load_suite(registry, "tradeoff", placeholders=True, build_models=False)
    assert list(suite.axes) == [*tradeoff.axes, "prune.scorer"] and len(suite.axes["prune.scorer"]) == 3
    assert len(suite.cells) == len(tradeoff.seeds) * (3 * (len(tradeoff.cells) // len(tradeoff.seeds) - 1) + 1)
    # the testing kit's example test module, on new-plugin's mysnip
    kit = block_at("docs/plugins.md", "import gstbench_mysnip")
    namespace: dict = {}
    exec(compile(kit.text, str(kit), "exec"), namespace)
    assert namespace["pytest_plugins"] == block_at("docs/plugins.md", "pytest_plugins").text.split("= ")[1].strip().strip('"')
    namespace["test_the_scorer_meets_gstbench_contract"](register_plugin)


# ---- docs/ci.md: the baseline command, then the GitHub Actions job's steps ----



@pytest.mark.slow
def test_the_ci_recipe_runs_as_written(workdir):
    regenerate = commands(block_at("docs/ci.md", "gstbench run --suite ci --out /tmp/ci").text)
    (workdir / "benchmarks" / "baselines").mkdir(parents=True)
    for command in regenerate:  # its /tmp is the test's directory
        gstbench(command.replace("/tmp/", f"{workdir}/"), workdir)
    job = yaml.safe_load(block_at("docs/ci.md", "name: pruning-regression").text)
    steps = job["jobs"]["gstbench"]["steps"]
    scripts = [step["run"] for step in steps if "run" in step]
    assert installed_arguments(scripts[0]) == ci_install_arguments(), "the job installs other packages than CI"
    ran = []
    for script in scripts[1:]:
        for command in commands(script):
            if not command.startswith("gstbench "):
                continue  # GitHub's own: set +e, $GITHUB_OUTPUT, gh pr comment, exit with the gate's status
            command = command.removesuffix("|| true").strip()
            ran.append(command.split()[1])
            if command.split()[1] == "compare":
                args = shlex.split(command.split(" > ")[0])[1:]
                proc = run_cli(*args, cwd=workdir)
                assert proc.returncode == 0, f"`{command}`: the gate failed on the run it was made from:\n{proc.stdout}"
                if " > " in command:
                    (workdir / command.split(" > ")[1].strip()).write_text(proc.stdout)
            else:
                gstbench(command, workdir)
    assert ran == ["run", "compare", "compare"]
    assert (workdir / "compare.md").read_text().startswith("| configuration ")
    assert (workdir / "compare.html").read_text().startswith("<!DOCTYPE html>")


# ---- docs/paper-scale.md: the paper scale's matrix; its runs need GPUs ----



def test_the_paper_scale_commands_show_the_matrix_and_the_rest_need_a_gpu(workdir):
    import torch

    found = [c for b in blocks(ROOT / "docs" / "paper-scale.md") if b.language == "bash" for c in commands(b.text)]
    shown = [c for c in found if c.startswith("gstbench suites show")]
    assert shown and all("--device cuda" in c for c in found if c not in shown)
    for command in shown:
        out = gstbench(command, workdir)
        assert "scale paper" in out and "= 70 cells" in out and "GPU-hours" in out, out[-2000:]
    if torch.cuda.is_available():  # a GPU machine runs them at the tiny size (the stand-ins are cnn1d on MNIST-1D)
        for command in found:
            if command not in shown and "--executor" not in command:
                gstbench(command.replace("--scale paper", "").replace("--data-dir ~/data", ""), workdir)


# ---- docs/replication.md: every suite on its own seeds and on fresh ones, then the claims table ----



@pytest.mark.slow
def test_the_replication_commands_run_and_tabulate_the_claims(workdir):
    first, second = [b for b in blocks(ROOT / "docs" / "replication.md") if b.language == "bash"]
    assert set(commands(second.text)) <= set(commands(first.text)), "the earlier recipe runs what the later does not"
    # Each suite on its own seeds; of the eight runs on fresh seeds, which differ from those only in --seeds and
    # --out (each suite's own run above shows the suite works), the cheapest (smoke's): CI's minutes are few.
    again = [c for c in commands(first.text) if "--seeds" in c]
    own = [c for c in commands(first.text) if c.startswith("gstbench run") and c not in again]
    assert [re.sub(r" --seeds \S+ --out \S+$", "", c) for c in again] == own
    fresh = next(c for c in again if " --suite smoke " in c)
    for command in [*own, fresh]:
        gstbench(command, workdir)
    table = gstbench(commands(first.text)[-1], workdir)
    suites = sorted(path.name for path in (workdir / "gstbench-results").iterdir())
    assert suites == sorted([c.split()[3] for c in own] + [fresh.split()[-1].split("/")[-1]])
    registry = installed()
    for suite in suites:
        declared = load_suite(registry, suite.removesuffix("-s100"), placeholders=True, build_models=False).claims
        assert all(f"| {c['id']}" in table for c in declared), (suite, table[:3000])


# ---- pages whose examples other tests run ----

