"""The test fork server's own process (gstbench.testing.forkserver starts it): run as a script, it imports the heavy
libraries and nothing of gstbench, forks a child per request and reports its exit status; the child becomes the
requested `python -m gstbench` (or script), or the fork server of a pool that such a command starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from typing import Any

WARM = ("numpy", "scipy.stats", "torch", "torch._dynamo", "torch_pruning", "mnist1d.data")
# what the interpreter and the warm libraries read as they start: a child whose environment differs here is
# forked from a server started in its environment
IMPORT_TIME_ENV = ("PYTHON", "OMP_", "MKL_", "KMP_", "OPENBLAS", "GOMP", "CUDA", "NVIDIA", "TORCH", "PYTORCH",
                   "HF_", "HUGGINGFACE", "TIMM", "LD_", "NUMPY", "SCIPY")
INHERITED = "_gstbench_test_fork_server"  # a sys attribute in a forked child: its server's socket and key


def _torch_default(name: str, value: str) -> bool:
    """Whether ``name=value`` is what importing torch sets by itself (inductor's default cache directory): a
    server started without it gets it as it warms torch, so it tells no two environments apart."""
    if name != "TORCHINDUCTOR_CACHE_DIR" or "torch" not in sys.modules:
        return False
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    return value == default_cache_dir()


def environment_key(env: dict[str, str]) -> tuple:
    """What tells the servers for ``env`` apart: its import-time settings."""
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(IMPORT_TIME_ENV) and not _torch_default(k, v)))


def _serve(path: str) -> tuple[dict, list[int]] | None:
    """Accept requests until stdin closes; return the request and the descriptors it sent beyond stdout and stderr
    in a forked child, None in the server."""
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
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 4)
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
                return request, fds[2:]
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


def read_line(conn: socket.socket) -> bytes:
    """One line the server sent (a pid, an exit status), byte by byte: what follows it stays unread."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(1)
        if not chunk:
            raise RuntimeError("the test fork server hung up")
        data += chunk
    return data


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except OSError:
        pass


def _become_child(request: dict, path: str) -> None:
    """In the child: the test's environment, directory and argv, then `python -m gstbench` (or the script) as the
    interpreter runs it; the child's own children fork from this server (``path``) where they can."""
    import importlib
    import runpy

    if request.get("sigint_default"):
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    _enter(request)
    key = environment_key(request["env"])
    setattr(sys, INHERITED, (path, key))
    _adopt_pool_fork_server(path, key)
    argv = request["argv"]
    try:
        if argv[1] == "-m":
            sys.path.insert(0, os.getcwd())  # as `python -m` sets it
            importlib.invalidate_caches()
            sys.argv = ["-m", *argv[3:]]
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        else:
            sys.path.insert(0, os.path.dirname(argv[1]))  # as `python script.py` sets it
            importlib.invalidate_caches()
            sys.argv = argv[1:]
            runpy.run_path(argv[1], run_name="__main__")
    except SystemExit as exc:
        _exit_without_teardown(exc.code)
    _exit_without_teardown(None)


def _enter(request: dict) -> None:
    """In a child: the requesting process's environment and working directory."""
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])


def _adopt_pool_fork_server(path: str, key: tuple) -> None:
    """A pool's fork server (multiprocessing's, which the command starts as a fresh interpreter importing torch,
    torch-pruning and the engine: about 5 s of CPU) forks from this server (``path``) instead, while the command's
    import-time settings are still the server's (``key``). It gets the descriptors, environment, directory and
    preload that multiprocessing would pass and runs multiprocessing's own fork server loop, so the pool, its
    workers and their lives (it exits once the command and its workers have) are as a fresh one's. Elsewhere (a
    Python whose fork server protocol differs, settings changed since) the pool starts its own as usual."""
    from multiprocessing import forkserver, resource_tracker

    pool_server = forkserver._forkserver
    fields = ("_lock", "_preload_modules", "_forkserver_pid", "_forkserver_address", "_forkserver_alive_fd")
    if not all(hasattr(pool_server, name) for name in fields) or hasattr(pool_server, "_forkserver_authkey"):
        return
    started_by_multiprocessing = pool_server.ensure_running
    adopted: dict[int, socket.socket] = {}  # pid -> the connection its exit status comes back on

    def ensure_running() -> None:  # what connect_to_new_process calls before each worker starts
        import select

        with pool_server._lock:
            resource_tracker.ensure_running()  # as multiprocessing's own does first
            pid = pool_server._forkserver_pid
            if pid in adopted:
                if not select.select([adopted[pid]], [], [], 0)[0]:
                    return  # no exit status yet: alive
                adopted.pop(pid).close()
                os.close(pool_server._forkserver_alive_fd)
                pool_server._forkserver_pid = pool_server._forkserver_address = None
                pool_server._forkserver_alive_fd = None
            if pool_server._forkserver_pid is None and environment_key(dict(os.environ)) == key:
                pid, adopted_conn = _start_pool_fork_server(path, pool_server)
                adopted[pid] = adopted_conn
                return
        started_by_multiprocessing()

    pool_server.ensure_running = ensure_running


def _start_pool_fork_server(path: str, pool_server: Any) -> tuple[int, socket.socket]:
    """What multiprocessing.forkserver.ForkServer.ensure_running does to start a server (a listening socket, the
    "alive" pipe, the preload and the main module's path), with a fork of this server for its spawn."""
    from multiprocessing import connection, spawn, util

    data = {}
    if pool_server._preload_modules:
        prepared = spawn.get_preparation_data("ignore")
        data = {name: value for name, value in prepared.items() if name in ("main_path", "sys_path")}
    with socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()  # every client holds the write end: end of file once all have exited
        conn = socket.socket(socket.AF_UNIX)
        try:
            conn.connect(path)
            request = {"pool": {"preload": list(pool_server._preload_modules), **data}, "env": dict(os.environ),
                       "cwd": os.getcwd()}
            socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [1, 2, listener.fileno(), alive_r])
            reply = read_line(conn)
        except BaseException:
            conn.close()
            os.close(alive_w)
            raise
        finally:
            os.close(alive_r)
    pool_server._forkserver_address, pool_server._forkserver_alive_fd = address, alive_w
    pool_server._forkserver_pid = int(reply)
    return int(reply), conn


def _become_pool_fork_server(request: dict, fds: list[int]) -> None:
    """In the child: multiprocessing's fork server loop for the requesting command's pool, in its environment and
    directory, on the listening socket and "alive" pipe it sent (``fds``)."""
    import traceback
    from multiprocessing import forkserver

    _enter(request)
    pool = request["pool"]
    status = 1
    try:
        forkserver.main(fds[0], fds[1], pool["preload"], pool.get("main_path"), pool.get("sys_path"))
        status = 0
    except SystemExit as exc:  # how the loop ends once every client has exited
        status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(status)


def _exit_without_teardown(code: Any) -> None:
    """Exit as the interpreter does after ``sys.exit(code)`` (or the script's end), less its teardown of the modules.

    That teardown writes to every page of the server's heap the child shares (torch's), and copying them costs
    0.3 s of CPU a command, most of a short one's. What a command can see of an exit happens first, in the
    interpreter's order: a non-int code is printed to stderr (status 1), non-daemon threads are joined, atexit
    handlers run, stdout and stderr are flushed where open (status 120 if they cannot be); then ``os._exit``, as
    multiprocessing ends its forked workers. An exception other than SystemExit takes the interpreter's own exit.
    """
    import atexit
    import threading

    if code is None or isinstance(code, int):
        status = code or 0
    else:
        print(code, file=sys.stderr)
        status = 1
    threading._shutdown()  # type: ignore[attr-defined]  # what the interpreter's exit calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except OSError:
            status = 120
    os._exit(status & 0xFF)


if __name__ == "__main__":
    import importlib

    del sys.path[0]  # this file's directory: nothing of gstbench comes from here
    for name in WARM:
        importlib.import_module(name)
    served = _serve(sys.argv[1])
    if served is not None:
        child_request, child_fds = served
        if "pool" in child_request:
            _become_pool_fork_server(child_request, child_fds)
        _become_child(child_request, sys.argv[1])
