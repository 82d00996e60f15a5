"""Real `python -m gstbench` subprocesses for tests, forked from a warm interpreter that has the heavy libraries imported.

A `gstbench run` spends about 6 s of CPU importing torch, torch._dynamo (which torch's
optimizers import on first use), torch-pruning (which imports timm and torchvision) and
mnist1d before it trains anything, and a test suite starts a few hundred such processes.
``run_gstbench`` starts each of them by forking a server process that imported those
libraries once (and nothing of gstbench): the child is a real, separate process with the
test's argv, environment, working directory, stdout, stderr and exit status, that imports
gstbench and its plugins afresh and runs `python -m gstbench` as the interpreter would. It
falls back to a fresh interpreter (``subprocess.run``) where forking could differ: an
environment that changes what those libraries read when imported (``PYTHON*``, thread
counts, CUDA, torch and Hugging Face settings), a platform without ``fork`` or
``socket.send_fds``, or ``GSTBENCH_TEST_FRESH_PROCESSES=1``. A test of what a command
imports or how fast it starts must start a fresh interpreter itself.

The server lives as long as the test process that started it (it exits when its stdin, a
pipe from that process, closes) and serves one test process.
"""

from __future__ import annotations

import atexit
import io
import json
import locale
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

WARM = ("numpy", "scipy.stats", "torch", "torch._dynamo", "torch_pruning", "mnist1d.data")
# what the warm libraries read from the environment when imported: a child whose environment differs here
# starts in a fresh interpreter
IMPORT_TIME_ENV = ("PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS", "GOMP", "CUDA", "NVIDIA", "TORCH", "PYTORCH",
                   "HF_", "HUGGINGFACE", "TIMM", "LD_", "NUMPY", "SCIPY")
FRESH = "GSTBENCH_TEST_FRESH_PROCESSES"


class _Server:
    """The client's handle on one server process."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="gstbench-forkserver-")
        self.path = os.path.join(self.dir, "socket")
        self.env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, __file__, self.path], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env)
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

    def close(self) -> None:
        self.proc.stdin.close()  # the server's cue to exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def forks_alike(self, env: dict[str, str]) -> bool:
        keys = set(env) | set(self.env)
        return all(env.get(k) == self.env.get(k) for k in keys if k.startswith(IMPORT_TIME_ENV))

    def run(self, argv: list[str], env: dict[str, str], cwd: str | None, timeout: float | None
            ) -> subprocess.CompletedProcess:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
                socket.socket(socket.AF_UNIX) as conn:
            conn.connect(self.path)
            request = json.dumps({"argv": argv, "env": env, "cwd": cwd or os.getcwd()}).encode() + b"\n"
            socket.send_fds(conn, [request], [out.fileno(), err.fileno()])
            pid = int(_line(conn))
            conn.settimeout(timeout)
            try:
                status = _line(conn)
            except TimeoutError:
                os.kill(pid, 9)
                conn.settimeout(None)
                _line(conn)
                raise subprocess.TimeoutExpired(argv, timeout, *_read(out, err)) from None
            stdout, stderr = _read(out, err)
        return subprocess.CompletedProcess(argv, int(status), stdout, stderr)


def _line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise RuntimeError("the test fork server hung up")
        data += chunk
    return data


def _read(*files) -> list[str]:
    """The files' text as ``subprocess.run(..., text=True)`` gives it: the locale's encoding, universal newlines."""
    texts = []
    for f in files:
        f.seek(0)
        texts.append(io.TextIOWrapper(f, encoding=locale.getpreferredencoding(False)).read())
    return texts


_server: _Server | None = None
_server_lock = threading.Lock()


def run_gstbench(*args: str, env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
                 timeout: float | None = 300) -> subprocess.CompletedProcess:
    """``subprocess.run([python, "-m", "gstbench", *args], capture_output=True, text=True, ...)``, forked from a
    warm interpreter where the environment allows (the module's docstring says when)."""
    global _server
    full_env = dict(os.environ if env is None else env)
    argv = [sys.executable, "-m", "gstbench", *args]
    usable = hasattr(os, "fork") and hasattr(socket, "send_fds") and os.environ.get(FRESH) != "1"
    if usable:
        with _server_lock:
            if _server is None or _server.proc.poll() is not None:
                _server = _Server()
        if _server.forks_alike(full_env):
            return _server.run(argv, full_env, None if cwd is None else str(cwd), timeout)
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


# ---- the server: run as a script, so that it imports nothing of gstbench ----

def _serve(path: str) -> dict | None:
    """Accept requests until stdin closes; return the request in a forked child, None in the server."""
    import selectors

    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # connectable only once listening
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    while True:
        for key, _ in selector.select(timeout=0.05):
            if key.fileobj != listener:  # stdin closed: the test process is gone
                for pid in children:
                    _kill(pid)
                os._exit(0)
            conn, _ = listener.accept()
            conn.setblocking(True)
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
            while not message.endswith(b"\n"):
                message += conn.recv(1 << 20)
            request = json.loads(message)
            if not request:
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                selector.close()
                for other in children.values():
                    other.close()
                conn.close()
                null = os.open(os.devnull, os.O_RDONLY)
                for source, target in ((null, 0), (fds[0], 1), (fds[1], 2)):
                    os.dup2(source, target)
                    os.close(source)
                return request
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                conn = children.pop(pid)
                try:
                    conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
                except OSError:
                    pass
                conn.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def _become_gstbench(request: dict) -> None:
    """In the child: the test's environment, directory and argv, then `python -m gstbench` as the interpreter runs it."""
    import importlib
    import runpy

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.path.insert(0, os.getcwd())  # as `python -m` sets it
    importlib.invalidate_caches()
    sys.argv = ["-m", *request["argv"][3:]]
    runpy.run_module("gstbench", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    import importlib

    del sys.path[0]  # this file's directory: nothing of gstbench comes from here
    for name in WARM:
        importlib.import_module(name)
    child_request = _serve(sys.argv[1])
    if child_request is not None:
        _become_gstbench(child_request)
