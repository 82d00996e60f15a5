"""Property-based tests (hypothesis): no input gives a traceback, only a clean error naming the file and key.

Mutated built-in suite files (both scales; names like paths among the values), matrices of
random sizes around the cell limit, damaged result directories, random CLI arguments, and
random mixes of concurrent runs, kills and re-runs over one directory. CI runs a bounded,
derandomized budget; ``GSTBENCH_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py`` runs a longer
one (and ``GSTBENCH_FUZZ_RUNS=50`` more of the concurrent mixes, which take seconds each).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import time
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA, run_cli
from gstbench.cli import cli
from gstbench.run.cost import estimate
from gstbench.errors import GstbenchError, SpecError
from gstbench.plan.suite import load_suite
from gstbench.testing import descendants, files_outside, running, stored_results
from gstbench.testing.forkserver import popen_gstbench

SUITES = sorted((Path(__file__).parent.parent / "gstbench" / "suites").glob("*.toml"))
EXAMPLES = int(os.environ.get("GSTBENCH_FUZZ_EXAMPLES", "8"))
RUNS = int(os.environ.get("GSTBENCH_FUZZ_RUNS", "2"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="GSTBENCH_FUZZ_EXAMPLES" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

PATH_LIKE = ["../../escaped-suite", "/tmp/absolute", "a/b", "..", ".hidden", "x" * 101, "~user"]
scalars = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12), st.booleans(), st.sampled_from(["1ep", "50%", "l2", "mask", "-3it"]),
                    st.sampled_from(PATH_LIKE), st.integers(10**18, 10**22))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(data, prefix=()):
    """Every key path into nested tables and arrays."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _mutate(data, path, how, value):
    """Replace, delete or add beside the item at ``path`` (a copy of ``data``)."""
    data = json.loads(json.dumps(data))
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "replace":
        parent[last] = value
    elif how == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[f"{last}_typo"] = value
    else:
        parent.append(value)
    return data


def _toml(data) -> str:
    """TOML for a parsed document (inline tables; TOML's basic strings are JSON strings)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return "{" + ", ".join(f"{value(k)} = {value(x)}" for k, x in v.items()) + "}"
    return "".join(f"{value(k)} = {value(v)}\n" for k, v in data.items())


def _clean(exc: GstbenchError, path: Path) -> None:
    message = str(exc)
    assert "\n" not in message.strip(), message
    assert str(path) in message or path.name in message, f"the file is not named: {message}"
    if isinstance(exc, SpecError):
        assert exc.key or "key" in message or "line" in message, f"no key named: {message}"


@pytest.mark.parametrize("scale", ["quick", "paper"])
@pytest.mark.parametrize("suite", SUITES, ids=lambda p: p.stem)
@FUZZ
@given(data=st.data())
def test_a_mutated_suite_file_loads_or_is_refused_naming_file_and_key(registry, tmp_path, suite, scale, data):
    original = tomllib.loads(suite.read_text())
    path = data.draw(st.sampled_from(list(_paths(original))))
    how = data.draw(st.sampled_from(["replace", "delete", "add"]))
    mutated = _mutate(original, path, how, data.draw(values))
    file = tmp_path / suite.name
    file.write_text(_toml(mutated))
    try:
        loaded = load_suite(registry, str(file), scale=scale, placeholders=True)
        estimate(loaded, registry, placeholders=True)  # what `gstbench run` checks before training
    except GstbenchError as exc:
        _clean(exc, file)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "run"
    proc = run_cli("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    return out


def _damage(text: str, lines_of_json: bool, how: str, cut: float, pick: int, value) -> str:
    """Truncate, empty, or retype / delete one item of one JSON document (one line of events.jsonl)."""
    if how == "truncate":
        return text[: int(len(text) * cut)]
    if how == "empty":
        return ""
    lines = [line for line in text.splitlines() if line.strip()] or ["{}"]
    docs = [json.loads(line) for line in lines] if lines_of_json else [json.loads(text)]
    doc = pick % len(docs)
    paths = list(_paths(docs[doc]))
    if paths:
        docs[doc] = _mutate(docs[doc], paths[pick % len(paths)], "delete" if how == "delete" else "replace", value)
    return "\n".join(json.dumps(d) for d in docs) + "\n"


@FUZZ
@given(name=st.sampled_from(["result.json", "events.jsonl", "spec.json", "suite.json"]),
       how=st.sampled_from(["truncate", "empty", "retype", "delete"]), cut=st.floats(0, 1),
       pick=st.integers(0, 10_000), value=values, cell=st.integers(0, 2))
def test_a_damaged_result_directory_is_read_or_refused_naming_the_file(finished, tmp_path_factory, name, how, cut,
                                                                       pick, value, cell):
    from gstbench.reports.compare import collect
    from gstbench.reports.plots import plot_all
    from gstbench.store.reader import load_results
    from gstbench.reports.report import report_of
    from gstbench.reports.report_text import render_leaderboard

    out = tmp_path_factory.mktemp("damaged") / "run"
    shutil.copytree(finished, out)
    cells = sorted((out / "cells").iterdir())
    path = out / name if name == "suite.json" else cells[cell] / name
    if path.exists():
        path.write_text(_damage(path.read_text(), name.endswith(".jsonl"), how, cut, pick, value))
    try:
        results = load_results(out, warn=False)
        render_leaderboard(report_of(results))
        collect(out)
        plot_all(out, tmp_path_factory.mktemp("plots"))
    except GstbenchError as exc:
        _clean(exc, path)


@settings(max_examples=max(400, EXAMPLES), deadline=None, derandomize="GSTBENCH_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(how=st.sampled_from(["retype", "delete"]), pick=st.integers(0, 10_000), value=values)
def test_a_retyped_suite_record_is_read_or_refused_naming_it(finished, tmp_path_factory, how, pick, value):
    """suite.json at the budget that once found a traceback (its axes, scope, question and claims, entry by
    entry); reading and reporting only, so that 400 examples take seconds."""
    from gstbench.reports.compare import collect
    from gstbench.reports.report import report_of
    from gstbench.reports.report_text import render_leaderboard
    from gstbench.store.reader import load_results

    out = tmp_path_factory.mktemp("suite-record") / "run"
    shutil.copytree(finished, out, ignore=shutil.ignore_patterns("*.safetensors"))
    path = out / "suite.json"
    path.write_text(_damage(path.read_text(), False, how, 0.0, pick, value))
    try:
        render_leaderboard(report_of(load_results(out, warn=False)))
        collect(out)
    except GstbenchError as exc:
        _clean(exc, path)
    finally:
        shutil.rmtree(out.parent)


COMMANDS = st.sampled_from([["report"], ["export"], ["claims"], ["plot"], ["compare"], ["suites", "show"],
                            ["suites"], ["list"], ["plugins"], ["run", "--suite"]])
ARGS = st.lists(st.one_of(st.sampled_from(["--format", "--rank", "--interval", "--seeds", "--scale", "--metric",
                                           "--executor", "--workers", "--device", "--tolerance", "--json",
                                           "--out", "tiny", "smoke", "json", "t", "0", "-1", "cuda:9", "x=y",
                                           "1-", "best_test_acc", "", "--help"]),
                          st.text(max_size=6)), max_size=5)


@FUZZ
@given(command=COMMANDS, args=ARGS)
def test_random_cli_arguments_give_a_clean_exit(tmp_path_factory, finished, command, args):
    where = tmp_path_factory.mktemp("cli")
    argv = [*command, *(str(finished) if a == "tiny" and command[0] != "run" else a for a in args)]
    if command[0] == "run":  # never a real training run here: a missing suite or a bad option ends it first
        argv = ["run", "--suite", str(where / "absent.toml"), *args, "--out", str(where / "out")]
    result = CliRunner().invoke(cli, argv, catch_exceptions=True)
    assert result.exit_code in (0, 1, 2), (argv, result.output)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{argv}: {type(result.exception).__name__}: {result.exception}")


TINY = (DATA / "tiny.toml").read_text()

SIZED_AXES = ["train.lr", "train.weight_decay", "prune.layers.conv2.fraction", "prune.layers.conv3.fraction"]


@FUZZ
@given(sizes=st.lists(st.integers(1, 64), min_size=1, max_size=4),
       seeds=st.one_of(st.integers(1, 10**22), st.tuples(st.integers(0, 10**6), st.integers(0, 10**22))),
       limit=st.integers(1, 60))
def test_a_matrix_of_any_size_is_built_or_refused_in_one_line_before_building(registry, tmp_path, sizes, seeds,
                                                                             limit):
    axes = "\n".join(f'"{key}" = [{", ".join(f"{0.01 + 0.5 * i / n:.9f}" for i in range(n))}]'
                     for key, n in zip(SIZED_AXES, sizes))
    seed_text, count = (seeds, seeds) if isinstance(seeds, int) else (f'"{seeds[0]}-{sum(seeds)}"', seeds[1] + 1)
    file = tmp_path / "sized.toml"
    file.write_text(TINY.replace("seeds = 2", f"seeds = {seed_text}").replace(
        '"prune.target" = ["smallest", "largest"]', axes))
    cells = (math.prod(sizes) + 1) * count  # the axes, the unpruned include, the seeds
    t0 = time.perf_counter()
    try:
        suite = load_suite(registry, str(file), max_cells=limit)
    except GstbenchError as exc:
        _clean(exc, file)
        assert cells > limit and f"{cells:,} cells" in str(exc), str(exc)
        assert time.perf_counter() - t0 < 5  # refused before anything was built
        return
    assert len(suite.cells) == cells <= limit


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = run_cli("run", "--suite", str(DATA / "tiny.toml"), "--out", str(out), "--executor", "sequential")
    assert proc.returncode == 0, proc.stderr
    return stored_results(out)


RUNNERS = st.lists(st.tuples(st.sampled_from(["sequential", "auto"]), st.floats(0, 3),
                             st.sampled_from([signal.SIGKILL, signal.SIGTERM, None]), st.floats(1, 15)),
                   min_size=2, max_size=4)


@settings(max_examples=RUNS, deadline=None, derandomize="GSTBENCH_FUZZ_EXAMPLES" not in os.environ,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(runners=RUNNERS)
def test_concurrent_runs_kills_and_reruns_store_each_cell_once_as_an_uninterrupted_run(tmp_path_factory,
                                                                                        uninterrupted, runners):
    """Two to four runs into one directory, started at random times, some killed (SIGKILL) or stopped
    (SIGTERM) at random times, then one clean run."""
    root = tmp_path_factory.mktemp("mix")
    out = root / "run"
    env = {**os.environ, "GSTBENCH_LOAD_PLUGINS": ""}
    started: list[tuple[subprocess.Popen, signal.Signals | None, float]] = []
    seen: dict[Path, int] = {}  # each result file as first stored: never written again
    family: set[int] = set()
    t0 = time.monotonic()
    pending = sorted(runners, key=lambda r: r[1])
    try:
        while pending or any(p.poll() is None for p, _, _ in started):
            now = time.monotonic() - t0
            while pending and pending[0][1] <= now:
                executor, _, sig, after = pending.pop(0)
                proc = popen_gstbench("run", "--suite", str(DATA / "tiny.toml"), "--out", str(out), "--executor",
                                      executor, *(["--workers", "2"] if executor == "auto" else []),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                started.append((proc, sig, now + after))
            for proc, sig, at in started:
                if proc.poll() is None:
                    family |= descendants(proc.pid)
                    if sig is not None and now >= at:
                        proc.send_signal(sig)
            for result in out.glob("cells/*/result.json"):
                stamp = result.stat().st_mtime_ns
                assert seen.setdefault(result, stamp) == stamp, f"{result} was stored twice"
            assert now < 300, "the runs did not end"
            time.sleep(0.05)
        deadline = time.monotonic() + 10  # a worker still importing when its driver died exits once it can check
        while running(family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not running(family), f"processes left behind: {running(family)}"
    finally:
        for proc, _, _ in started:
            if proc.poll() is None:
                proc.kill()
        for pid in running(family):
            os.kill(pid, signal.SIGKILL)
    clean = run_cli("run", "--suite", str(DATA / "tiny.toml"), "--out", str(out))
    assert clean.returncode == 0, clean.stderr
    for result, stamp in seen.items():
        assert result.stat().st_mtime_ns == stamp, f"{result} was stored again by the clean run"
    assert stored_results(out) == uninterrupted
    assert not list(out.rglob("*.tmp")) and not list(out.glob("cells/*/lease.json"))
    assert files_outside(root, out) == []
