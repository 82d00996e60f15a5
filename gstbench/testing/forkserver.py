"""Real `python -m gstbench` subprocesses for tests, forked from a warm interpreter that has the heavy libraries imported.

A `gstbench run` spends about 6 s of CPU importing torch, torch._dynamo (which torch's optimizers
import on first use), torch-pruning (which imports timm and torchvision) and mnist1d before it
trains anything, and a test suite starts a few hundred such processes. ``run_gstbench`` (for a
finished command) and ``popen_gstbench`` (for one a test signals, kills or reads while it runs)
start each of them by forking a server process that imported those libraries once (and nothing of
gstbench): the child is a real, separate process with the test's argv, environment, working
directory, stdout, stderr and exit status, that imports gstbench and its plugins afresh and runs
`python -m gstbench` as the interpreter would. Its parent is the server, not the test. So is the
fork server of a pool the child starts (multiprocessing's, which would import torch and the engine
again: about 5 s of CPU per pool run): it runs multiprocessing's own loop, in the child's
environment, on the socket and pipe the child made. What the interpreter and those libraries read
from the environment as they start (``PYTHON*`` flags, thread counts, CUDA, torch and Hugging Face
settings) is the server's: a child whose environment differs there is forked from another server,
started in that environment (at most ``MAX_SERVERS`` live at once). A child whose module search path
differs from the test process's (``PYTHONPATH``, ``PYTHONHOME``, ``PYTHONUSERBASE``) starts in a
fresh interpreter (``subprocess.run``, ``subprocess.Popen``): a ``sitecustomize`` there runs as
Python starts and may read any variable, which no fork can redo. So does every child on a platform
without ``fork`` or ``socket.send_fds``, or with ``GSTBENCH_TEST_FRESH_PROCESSES=1``. A test of what
a command imports or how fast it starts must start a fresh interpreter itself.

A server lives as long as the test process that started it (it exits when its stdin, a
pipe from that process, closes) and serves that test process and the children it forked: a
benchmark script's own commands fork from the server that forked the script, where their
import-time settings are the script's.
"""

from __future__ import annotations

import atexit
import io
import json
import locale
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gstbench.testing import forkserver_process
from gstbench.testing.forkserver_process import INHERITED, environment_key, read_line

# where the interpreter finds code to run as it starts: a child whose environment differs here starts afresh
SEARCH_PATH_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE")
FRESH = "GSTBENCH_TEST_FRESH_PROCESSES"


class _Server:
    """The client's handle on one server process."""

    def __init__(self, env: dict[str, str]) -> None:
        base = tempfile.gettempdir()
        if len(os.path.join(base, "gstbench-forkserver-12345678", "socket.tmp")) > 100:
            base = "/tmp"  # a Unix socket's path holds at most 107 bytes; a test's TMPDIR can be longer
        self.dir = tempfile.mkdtemp(prefix="gstbench-forkserver-", dir=base)
        self.path = os.path.join(self.dir, "socket")
        self.proc = subprocess.Popen([sys.executable, forkserver_process.__file__, self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        with socket.socket(socket.AF_UNIX) as probe:  # ready once it accepts: the libraries are imported
            probe.settimeout(120)
            for _ in range(1200):
                try:
                    probe.connect(self.path)
                    break
                except (FileNotFoundError, ConnectionRefusedError):
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"the test fork server exited with {self.proc.returncode}")
                    threading.Event().wait(0.1)
            probe.sendall(b"{}\n")  # an empty request: hang up
        atexit.register(self.close)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.proc.stdin.closed:
            return
        self.proc.stdin.close()  # the server's cue to exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, argv: list[str], env: dict[str, str], cwd: str | None, fds: tuple[int, int],
              sigint_default: bool = False) -> tuple[socket.socket, int]:
        """Fork a child that writes its stdout and stderr to ``fds``: the connection that reports its exit
        status, and its pid."""
        conn = socket.socket(socket.AF_UNIX)
        conn.connect(self.path)
        request = {"argv": argv, "env": env, "cwd": cwd or os.getcwd(), "sigint_default": sigint_default}
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], list(fds))
        return conn, int(read_line(conn))

    def run(self, argv: list[str], env: dict[str, str], cwd: str | None, timeout: float | None
            ) -> subprocess.CompletedProcess:
        # files, not pipes: the command is done when it exits, whatever it started that still holds its stdout
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = ForkedProcess(self, argv, env, cwd, out, err, text=False, sigint_default=False)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise subprocess.TimeoutExpired(argv, timeout, *_read(out, err)) from None
            stdout, stderr = _read(out, err)
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


class _Inherited(_Server):
    """The server this process was forked from, asked for this process's own children: a benchmark script's
    commands fork from the server that forked the script, where their environments' import-time settings agree,
    instead of a new server importing torch again. It outlives this process (it ends its children as it exits)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def alive(self) -> bool:
        return True

    def close(self) -> None:
        pass

    @staticmethod
    def matching(key: tuple) -> _Inherited | None:
        inherited = getattr(sys, INHERITED, None)  # (socket, key) where _become_child left them
        return _Inherited(inherited[0]) if inherited is not None and inherited[1] == key else None


def _read(*files) -> list[str]:
    """The files' text as ``subprocess.run(..., text=True)`` gives it: the locale's encoding, universal newlines."""
    texts = []
    for f in files:
        f.seek(0)
        texts.append(io.TextIOWrapper(f, encoding=locale.getpreferredencoding(False)).read())
    return texts


_servers: dict[tuple, _Server] = {}  # by the environment the libraries were imported in, least recently used first
_servers_lock = threading.Lock()
MAX_SERVERS = 3  # about 0.5 GB each


def _server_for(env: dict[str, str]) -> _Server | None:
    """This test process's server for ``env``'s import-time settings, started on first use (the least recently
    used one closes past ``MAX_SERVERS``); None where a child cannot be forked alike (the module's docstring)."""
    if not (hasattr(os, "fork") and hasattr(socket, "send_fds")) or os.environ.get(FRESH) == "1":
        return None
    if any(env.get(k) != os.environ.get(k) for k in SEARCH_PATH_ENV):
        return None
    key = environment_key(env)
    with _servers_lock:
        server = _servers.pop(key, None)
        if server is not None and not server.alive():
            server.close()  # its socket's directory
            server = None
        if server is None:
            server = _Inherited.matching(key) or _Server(env)
        _servers[key] = server
        while len(_servers) > MAX_SERVERS:
            _servers.pop(next(iter(_servers))).close()
    return server


def run_gstbench(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 timeout: float | None = 300) -> subprocess.CompletedProcess:
    """``subprocess.run([python, "-m", "gstbench", *args], capture_output=True, text=True, ...)``, forked from a
    warm interpreter where the environment allows (the module's docstring says when)."""
    return _run([sys.executable, "-m", "gstbench", *args], env, cwd, timeout)


def run_script(script: str | os.PathLike, *args: str, env: dict[str, str] | None = None,
               cwd: str | os.PathLike | None = None, timeout: float | None = 300) -> subprocess.CompletedProcess:
    """``subprocess.run([python, script, *args], capture_output=True, text=True, ...)`` for a Python script
    (a benchmark), forked like ``run_gstbench``: its module search path starts with the script's directory."""
    return _run([sys.executable, str(Path(script).resolve()), *args], env, cwd, timeout)


def _run(argv: list[str], env: dict[str, str] | None, cwd: str | os.PathLike | None, timeout: float | None
         ) -> subprocess.CompletedProcess:
    full_env = dict(os.environ if env is None else env)
    server = _server_for(full_env)
    if server is not None:
        return server.run(argv, full_env, None if cwd is None else str(cwd), timeout)
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


class ForkedProcess:
    """What tests use of ``subprocess.Popen`` for a child forked by the server: ``pid``, ``returncode``,
    ``stdout`` and ``stderr`` (pipes where ``subprocess.PIPE`` was asked), ``poll``, ``wait``,
    ``communicate``, ``send_signal``, ``terminate`` and ``kill``. Its output goes to a pipe
    (``subprocess.PIPE``), nowhere (``subprocess.DEVNULL``), this process's own (None) or an open file. The
    server reaps the child and reports its exit status over the connection."""

    def __init__(self, server: _Server, argv: list[str], env: dict[str, str], cwd: str | None, stdout: Any,
                 stderr: Any, text: bool, sigint_default: bool) -> None:
        self.args, self.returncode, self._status = argv, None, b""
        ends, streams, child_fds = [], [], []
        for wanted, inherited in ((stdout, 1), (stderr, 2)):
            if wanted == subprocess.PIPE:
                read, write = os.pipe()
                ends.append(write)
                child_fds.append(write)
                stream = open(read, "rb")
                streams.append(io.TextIOWrapper(stream, encoding=locale.getpreferredencoding(False)) if text
                               else stream)
            elif wanted == subprocess.DEVNULL:
                null = os.open(os.devnull, os.O_WRONLY)
                ends.append(null)
                child_fds.append(null)
                streams.append(None)
            else:
                child_fds.append(inherited if wanted is None else wanted.fileno())
                streams.append(None)
        try:
            self._conn, self.pid = server.start(argv, env, cwd, (child_fds[0], child_fds[1]), sigint_default)
        finally:
            for fd in ends:  # the child holds its own copies: end of file once it (and what it started) exits
                os.close(fd)
        self.stdout, self.stderr = streams
        self._output: dict[int, list] = {}
        self._readers: list[threading.Thread] = []

    def poll(self) -> int | None:
        return self._reported(0)

    def wait(self, timeout: float | None = None) -> int:
        if self._reported(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _reported(self, timeout: float | None) -> int | None:
        """The exit status once the server has reported it within ``timeout`` seconds, else None."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self._conn], [], [], left)[0]:
                return None
            chunk = self._conn.recv(64)
            if not chunk:
                raise RuntimeError("the test fork server hung up")
            self._status += chunk
            if self._status.endswith(b"\n"):
                self.returncode = int(self._status)
                self._conn.close()
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple:
        """Read the piped streams to their end and wait for the exit, as ``Popen.communicate`` does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._readers:
            for index, stream in enumerate((self.stdout, self.stderr)):
                if stream is not None:
                    self._output[index] = []
                    reader = threading.Thread(target=lambda s=stream, o=self._output[index]: o.append(s.read()),
                                              daemon=True)
                    reader.start()
                    self._readers.append(reader)
        for reader in self._readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        return tuple(self._output[i][0] if i in self._output else None for i in (0, 1))

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never signal a pid the server has reaped
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def popen_gstbench(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                   stdout: int | None = None, stderr: int | None = None, text: bool = False,
                   sigint_default: bool = False) -> ForkedProcess | subprocess.Popen:
    """``subprocess.Popen([python, "-m", "gstbench", *args], ...)``, forked from a warm interpreter where the
    environment allows (the module's docstring says when). ``sigint_default``: the child takes Ctrl-C (SIGINT
    and SIGTERM unblocked, SIGINT raising KeyboardInterrupt) even when the tests run in a background job,
    which ignores SIGINT."""
    full_env = dict(os.environ if env is None else env)
    argv = [sys.executable, "-m", "gstbench", *args]
    server = _server_for(full_env)
    if server is not None:
        return ForkedProcess(server, argv, full_env, None if cwd is None else str(cwd), stdout, stderr, text,
                             sigint_default)
    return subprocess.Popen(argv, stdout=stdout, stderr=stderr, text=text, env=full_env, cwd=cwd,
                            preexec_fn=_take_sigint if sigint_default else None)


def _take_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a fresh interpreter then installs its KeyboardInterrupt handler
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
