"""A gstbench command run with its stderr on a pseudo-terminal of a given width: what a user's terminal shows."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading


class TerminalProcess:
    """``python -m gstbench ARGS`` (``popen_gstbench``: forked from a warm interpreter where the environment allows)
    with stderr on a pty ``columns`` wide (stdout as given); ``text()`` is what the terminal received so far.
    ``sigint_default``: the child takes Ctrl-C even when the tests run in a background job, which ignores SIGINT."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, columns: int = 200,
                 stdout: int | None = subprocess.DEVNULL, sigint_default: bool = False):
        from gstbench.testing.forkserver import popen_gstbench

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        with open(slave, "wb", closefd=True) as terminal:  # the child holds its own copy
            self.proc = popen_gstbench(*args, env=env, stdout=stdout, stderr=terminal, sigint_default=sigint_default)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, args=(master,), daemon=True)
        self._reader.start()

    def _read(self, master: int) -> None:
        try:
            while chunk := os.read(master, 4096):
                self._chunks.append(chunk)
        except OSError:  # EIO: every writer closed the terminal
            pass
        finally:
            os.close(master)

    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace")

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code
