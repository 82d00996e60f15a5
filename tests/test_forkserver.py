"""The tests' forked CLI processes behave as fresh `python -m gstbench` ones: output, exit status, cwd, env, numbers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DATA
from gstbench.testing import descendants, running, stored_results
from gstbench.testing.forkserver import FRESH, ForkedProcess, popen_gstbench, run_gstbench, run_script

ENV = {**os.environ, "GSTBENCH_LOAD_PLUGINS": ""}


def fresh(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gstbench", *args], capture_output=True, text=True,
                          env=env or ENV, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [["--help"], ["nosuch"], ["report", "schedule", "--format", "csv"],
                                  ["suites", "show", "tradeoff", "--scale", "quik"]])
def test_a_forked_command_prints_and_exits_as_a_fresh_interpreter_does(args):
    cwd = DATA / "stored-eb9532a"  # a relative path resolves against the child's own directory
    forked, expected = run_gstbench(*args, env=ENV, cwd=cwd), fresh(*args, cwd=cwd)
    assert (forked.returncode, forked.stdout, forked.stderr) == (expected.returncode, expected.stdout, expected.stderr)


SCRIPT = """import atexit, io, sys, threading, time, helper
# what an exit shows: atexit handlers, non-daemon threads joined, buffered output flushed, the status
sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)))  # buffered under PYTHONUNBUFFERED too
print(__name__, sys.argv[1:], sys.path[0], helper.NAME)
atexit.register(lambda: print("atexit handler ran"))
threading.Thread(target=lambda: (time.sleep(0.2), sys.stdout.write("the thread ended, no newline"))).start()
sys.stderr.write("buffered, no newline")
code = sys.argv[1]
if code != "end":
    sys.exit(int(code) if code.lstrip("-").isdigit() else code)
"""


@pytest.mark.parametrize("code", ["0", "3", "-1", "a message", "end"])
def test_a_forked_script_sees_its_argv_name_directory_and_exits_as_a_fresh_interpreter_does(tmp_path, code):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "bench.py").write_text(SCRIPT)
    (tmp_path / "scripts" / "helper.py").write_text("NAME = 'beside the script'\n")
    script = tmp_path / "scripts" / "bench.py"
    forked = run_script(script, code, env=ENV, cwd=tmp_path)
    expected = subprocess.run([sys.executable, str(script), code], capture_output=True, text=True, env=ENV,
                              cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (expected.returncode, expected.stdout, expected.stderr)
    assert "__main__ ['%s']" % code in forked.stdout and "atexit handler ran" in forked.stdout
    assert forked.returncode == {"0": 0, "3": 3, "-1": 255, "a message": 1, "end": 0}[code]


NESTED = """import os, sys
from gstbench.testing.forkserver import run_script
if sys.argv[1] == "outer":
    env = {**os.environ, **({"OMP_NUM_THREADS": "3"} if sys.argv[2] == "other" else {})}
    inner = run_script(__file__, "inner", env=env)
    print(os.getppid(), inner.stdout.strip())
else:
    print(os.getppid())
"""


@pytest.mark.parametrize("settings", ["same", "other"])
def test_a_forked_scripts_commands_fork_from_its_server_where_their_import_time_settings_agree(tmp_path, settings):
    script = tmp_path / "nested.py"
    script.write_text(NESTED)
    outer = run_script(script, "outer", settings, env=ENV, cwd=tmp_path)
    assert outer.returncode == 0, outer.stderr
    script_server, command_server = outer.stdout.split()
    assert (script_server == command_server) == (settings == "same")  # other settings: a server started in them


POOLS = """import json, multiprocessing, os, sys, time

def parent_of(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])

def where(_):
    import torch
    return os.getppid(), parent_of(os.getppid()), os.environ.get("OMP_NUM_THREADS"), "torch" in sys.modules

if __name__ == "__main__":
    if sys.argv[1] == "other":
        os.environ["OMP_NUM_THREADS"] = "3"  # read as torch is imported: a fork server that imported it cannot
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch"])
    for pool_index in range(3):
        with context.Pool(2) as pool:
            rows = set(pool.map(where, range(4)))
        print(json.dumps([os.getpid(), os.getppid(), sorted(rows)]))
        if pool_index == 1:
            os.kill(next(iter(rows))[0], 9)  # the pool's fork server dies: the next pool starts another
            time.sleep(0.2)
"""


@pytest.mark.parametrize("settings", ["same", "other"])
def test_a_forked_commands_pool_forks_its_fork_server_from_the_tests_server_while_import_time_settings_agree(
        tmp_path, settings):
    script = tmp_path / "pools.py"
    script.write_text(POOLS)
    forked = run_script(script, settings, env=ENV, cwd=tmp_path)
    assert forked.returncode == 0, forked.stderr
    lines = [json.loads(line) for line in forked.stdout.splitlines()]  # [command, its server, rows], a pool each
    command, server = lines[0][:2]
    assert all(len(rows) == 1 for _, _, rows in lines), lines  # each pool's workers came from one fork server
    pools = [rows[0] for _, _, rows in lines]  # (pool's fork server, its parent, OMP_NUM_THREADS, torch imported)
    expected_parent = server if settings == "same" else command  # else multiprocessing's own spawn
    expected_env = os.environ.get("OMP_NUM_THREADS") if settings == "same" else "3"
    assert [pool[1:] for pool in pools] == [[expected_parent, expected_env, True]] * 3
    assert pools[0][0] == pools[1][0] != pools[2][0]  # one fork server serves every pool until it dies
    deadline = time.monotonic() + 10  # the command has exited: so have the fork servers it started
    while running({pool[0] for pool in pools}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running({pool[0] for pool in pools})


def test_a_forked_run_stores_what_a_fresh_one_stores_and_sees_the_tests_environment(tmp_path):
    env = {**ENV, "GSTBENCH_EXECUTOR": "sequential", "GSTBENCH_PLUGINS_DIR": str(tmp_path / "nowhere")}
    forked = run_gstbench("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(tmp_path / "a"),
                          env=env)
    assert forked.returncode == 2 and str(tmp_path / "nowhere") in forked.stderr  # the child read the test's env
    del env["GSTBENCH_PLUGINS_DIR"]
    forked = run_gstbench("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(tmp_path / "a"),
                          env=env)
    assert forked.returncode == 0, forked.stderr
    expected = fresh("run", "--suite", str(DATA / "tiny.toml"), "--seeds", "1", "--out", str(tmp_path / "b"), env=env)
    assert expected.returncode == 0, expected.stderr
    assert stored_results(tmp_path / "a") == stored_results(tmp_path / "b")


def test_a_forked_command_past_its_timeout_is_killed_and_says_so(tmp_path):
    suite = tmp_path / "long.toml"
    suite.write_text((DATA / "tiny.toml").read_text().replace("epochs = 3", "epochs = 300"))
    before = descendants(os.getpid())
    with pytest.raises(subprocess.TimeoutExpired):
        run_gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "out"), env=ENV, timeout=3)
    deadline = time.monotonic() + 10
    while running(descendants(os.getpid()) - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(descendants(os.getpid()) - before)


PROBE = """
import os, sys, torch
print(f"probe: parent {os.getppid()}, threads {torch.get_num_threads()}", file=sys.stderr)
"""


def probe_parent(stderr: str, threads: int) -> int:
    found = re.search(rf"probe: parent (\d+), threads {threads}\n", stderr)
    assert found, stderr
    return int(found.group(1))


def test_an_environment_read_at_import_gets_a_server_started_in_it_and_one_read_at_start_a_fresh_interpreter(
        tmp_path):
    (tmp_path / "probe.py").write_text(PROBE)  # a local plugin file: the child imports it afresh
    env = {**ENV, "GSTBENCH_PLUGINS_DIR": str(tmp_path)}
    forked = run_gstbench("plugins", env=env)
    assert forked.returncode == 0, forked.stderr
    server = probe_parent(forked.stderr, 1)
    assert server != os.getpid()
    other = run_gstbench("plugins", env={**env, "OMP_NUM_THREADS": "2"})  # what torch reads when imported
    assert probe_parent(other.stderr, 2) not in (os.getpid(), server)
    assert probe_parent(run_gstbench("plugins", env=env).stderr, 1) == server  # the first one serves it again
    # what importing torch sets by itself (inductor's default cache directory) tells no environments apart
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    without = {k: v for k, v in env.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    first = probe_parent(run_gstbench("plugins", env=without).stderr, 1)
    again = run_gstbench("plugins", env={**without, "TORCHINDUCTOR_CACHE_DIR": default_cache_dir()})
    assert probe_parent(again.stderr, 1) == first
    # what the interpreter reads as it starts (a sitecustomize on PYTHONPATH may read any variable): no fork
    started = run_gstbench("plugins", env={**env, "PYTHONPATH": str(tmp_path / "elsewhere")})
    assert probe_parent(started.stderr, 1) == os.getpid()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_a_forked_popen_is_read_signalled_and_waited_for_as_a_fresh_one(tmp_path, monkeypatch, sig, code):
    suite = tmp_path / "long.toml"  # far longer than the test: it must still be training when signalled
    suite.write_text((DATA / "tiny.toml").read_text().replace("epochs = 3", "epochs = 30000"))
    ends = {}
    for kind in ("forked", "fresh"):
        monkeypatch.setenv(FRESH, "1" if kind == "fresh" else "0")
        proc = popen_gstbench("run", "--suite", str(suite), "--out", str(tmp_path / f"run-{kind}"), "--seeds", "1",
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, sigint_default=True)
        assert isinstance(proc, ForkedProcess) == (kind == "forked")
        seen = ""
        while "to run, results in" not in seen:  # the run's first line, read from the pipe: it has started
            char = proc.stderr.read(1)
            assert char, f"{kind}: the run ended: {seen[-2000:]}"
            seen += char
        deadline = time.time() + 60
        while not list((tmp_path / f"run-{kind}").glob("cells/*/lease.json")) and time.time() < deadline:
            time.sleep(0.1)  # its first cell is leased: it trains
        assert proc.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(0.05)
        parent = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert (parent == os.getpid()) == (kind == "fresh")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == code and proc.wait() == code and proc.poll() == code, f"{kind}: {stderr[-3000:]}"
        ends[kind] = stderr.strip().splitlines()[-1].replace(f"run-{kind}", "OUT") if sig == signal.SIGINT else ""
        proc.kill()  # a no-op once it has ended
    assert ends["forked"] == ends["fresh"], ends
    if sig == signal.SIGINT:
        assert "run the same command again" in ends["forked"]
