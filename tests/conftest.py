"""Shared fixtures: the real registry, tiny real data, and helpers to run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from gstbench.plugins import Registry
from gstbench.testing.forkserver import run_gstbench

DATA = Path(__file__).parent / "data"

# The test files that take longest (CPU-seconds of a serial run, 2026-12-07: 60 down to 10), started first: the
# workers take files in collection order (--no-loadscope-reorder), and a long file taken last keeps one worker
# busy while the other waits (15 s of a 5:37 run in alphabetical order). Ray's and Slurm's first: they wait on
# their instances' processes. Only the order changes; the other files follow in their own.
LONGEST_FIRST = ("test_ray_executor.py", "test_slurm_executor.py", "test_docs_examples.py", "test_benchmarks.py",
                 "test_reuse.py", "test_forkserver.py", "test_power.py", "test_fuzz.py", "test_durability.py",
                 "test_cli_run.py", "test_plugin_walkthrough.py", "test_methods_suite.py", "test_verdicts.py",
                 "test_groups.py", "test_executors.py", "test_posttrain.py", "test_cifar.py", "test_progress.py",
                 "test_mlflow_logger.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def registry():
    return Registry()


def train_steps(model, optimizer, x, y, n: int = 1, after_step=None) -> None:
    """``n`` optimizer steps of cross-entropy on one batch, calling ``after_step`` after each."""
    from torch.nn import functional as F

    for _ in range(n):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()


def effector_applied(effector, model, optimizer, layer_name: str, indices: list[int], shape=(1, 40)):
    """Mark ``indices`` of a layer dead and apply ``effector`` to them, as the engine does; (layer state, its return)."""
    import torch

    from gstbench.components import PruningContext
    from gstbench.pruning import layer_states

    layer = layer_states(model, [layer_name])[layer_name]
    ctx = PruningContext(model, optimizer, torch.randn(2, *shape), torch.Generator().manual_seed(0))
    idx = torch.tensor(indices)
    layer.alive[idx] = False
    return layer, effector.apply(layer, idx, ctx)


def changed(base: dict, **changes) -> dict:
    """A deep copy of a cell config with changes: ``prune__effector="remove"`` sets ``prune.effector``."""
    import copy

    cfg = copy.deepcopy(base)
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            cfg[section][name] = value
        else:
            cfg[section] = value
    return cfg


def stop(proc, sig, timeout: int) -> str:
    """Send ``sig`` to a CLI subprocess and return its stderr; kill it if it outlives ``timeout`` (no orphans)."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        import signal

        proc.send_signal(signal.SIGUSR1)  # the CLI prints every thread's stack: where it was stuck
        try:
            proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        proc.kill()
        _, stderr = proc.communicate()
        swallowed = [line for line in (stderr or "").splitlines() if "Exception ignored" in line or "Interrupt" in line]
        raise AssertionError(f"no exit within {timeout} s of signal {sig}; {swallowed}; its stacks:\n"
                             f"{(stderr or '')[-6000:]}")


def speed_in_eager(suite: str) -> str:
    """A ``metrics = [...]`` line for a tiny run's [base]: the suite's own metrics, its speed timed in eager alone
    ("" where it times no other runtime). A tiny run spends its seconds exporting to ONNX Runtime otherwise (about
    a second a network); test_runtimes.py and test_methods_suite.py run the other runtimes."""
    from gstbench.plan.suite import load_suite
    from gstbench.plugins import Registry

    real = load_suite(Registry(), suite, placeholders=True, build_models=False)
    kinds = {cell.metrics for cell in real.cells if cell.prune is not None}
    if len(kinds) != 1 or not any(m.id == "gstbench:speed" for m in next(iter(kinds))):
        return ""

    def entry(ref) -> str:
        options = {**dict(ref.options), **({"runtimes": ["gstbench:eager"]} if ref.id == "gstbench:speed" else {})}
        return "{ " + ", ".join([f'name = "{ref.id}"', *(f"{k} = {json.dumps(v)}" for k, v in options.items())]) + " }"
    return f"metrics = [{', '.join(entry(ref) for ref in next(iter(kinds)))}]\n"


def tiny_transformer_suite(name: str, seeds: int) -> str:
    """A suite file that runs the built-in suite ``name`` (of the built-in transformer) at a tiny size: its blocks,
    heads and linear layers kept (its layers name them), 100 training signals at one step an epoch."""
    return f"""
name = "{name}"
extends = "{name}"
seeds = {seeds}
[base]
model = {{ name = "gstbench:transformer", dim = 8, depth = 3, heads = 4, head_dim = 2, hidden = 20, patch = 4 }}
dataset = {{ name = "gstbench:mnist1d", num_samples = 200, train_split = 0.5 }}
{speed_in_eager(name)}[base.train]
batch_size = 100
"""


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: int = 300):
    """Run `python -m gstbench ...` as a real subprocess (forked from a warm interpreter: gstbench.testing.forkserver);
    returns CompletedProcess.

    Its cells run in the command's own process unless the test names an executor (a flag, or GSTBENCH_EXECUTOR in
    ``env``): a pool's fork server, its workers and their queues cost about 0.7 s of CPU more per command (tiny.toml,
    2 seeds: 0.7 s in process, 1.4 s in a pool), which tests/test_executors.py and the other executor tests pay
    where the pool is what they test; the results are bitwise the same."""
    full_env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": "", "GSTBENCH_EXECUTOR": "sequential", **(env or {})}
    return run_gstbench(*args, env=full_env, cwd=cwd, timeout=timeout)


def make_plugin_dist(root: Path, dist: str, module: str, source: str, entry_name: str | None = None) -> Path:
    """An installed-looking plugin: module + dist-info with a `gstbench` entry point, under root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"  # pip normalizes - to _
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gstbench]\n{entry_name or dist} = {module}\n")
    return root

