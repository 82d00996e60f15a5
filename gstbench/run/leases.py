"""Per-cell leases: several `gstbench run` into one directory train each cell once.

A run takes a cell's lease (``cells/<hash16>/lease.json``: host, pid, run id) before
training it and drops it after its result is stored; other runs skip a leased cell. The
check-and-take is serialized by a file lock (filelock) beside it, so two runs never both
take one cell, on one machine or on a shared filesystem. A holder refreshes its leases'
modification time every ``HEARTBEAT_S`` seconds; a lease is stale, and taken over, when
its pid is gone on this host, or when it was not refreshed for ``timeout`` seconds (a
run on another host that died).
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

from gstbench.store.store import atomic_write_json, exit_fd, pid_alive

LEASE = "lease.json"
HEARTBEAT_S = 30.0
DEFAULT_TIMEOUT_S = 600.0  # twenty missed heartbeats
LOCK_WAIT_S = 60.0  # the lock is held for milliseconds; waiting longer means a hung filesystem
WATCH_S = 5.0  # how often a job away from its driver looks at its lease (at once when a same-host driver exits)


def watch(cell_dir: Path, run: str, timeout_s: float, on_lost: Callable[[str], None],
          poll_s: float = WATCH_S) -> threading.Thread:
    """For a job that outlives its driver when the driver is killed (a cluster job): a daemon thread that
    calls ``on_lost(why)`` once the cell's lease is no longer ``run``'s (another run took the cell over,
    or the lease was dropped) or is stale (its driver's pid gone on this host, or no heartbeat for
    ``timeout_s``). Any cell is then trained once, by the run that holds its lease."""
    leases = Leases(timeout_s)

    def check() -> None:
        lease = cell_dir / LEASE
        driver_exit = None
        try:
            while True:
                holder = leases._read(lease)
                if holder is None or holder.get("run") != run:
                    return on_lost("its lease passed to another run" if holder else "its lease was dropped")
                if leases._stale(lease, holder):
                    return on_lost("its driver is gone (the lease is stale)")
                if driver_exit is None:
                    driver_exit = leases.exit_of(holder)
                if driver_exit is None:
                    time.sleep(poll_s)
                else:  # a driver on this host: its exit wakes the watch at once
                    select.select([driver_exit], [], [], poll_s)
        finally:
            if driver_exit is not None:
                os.close(driver_exit)

    thread = threading.Thread(target=check, name="gstbench-lease-watch", daemon=True)
    thread.start()
    return thread


class Leases:
    """The cell leases one run holds, refreshed by a background thread while held."""

    def __init__(self, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.timeout_s = float(timeout_s)
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "run": uuid.uuid4().hex}
        self.held: set[Path] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def take(self, cell_dir: Path, finished) -> str:
        """``taken``, ``finished`` (``finished()`` became true meanwhile) or ``elsewhere`` (a live lease)."""
        cell_dir.mkdir(parents=True, exist_ok=True)
        lease = cell_dir / LEASE
        try:
            with FileLock(str(cell_dir / ".lease.lock"), timeout=LOCK_WAIT_S):
                if finished():
                    return "finished"
                holder = self._read(lease)
                if holder is not None and holder != self.me and not self._stale(lease, holder):
                    return "elsewhere"
                atomic_write_json(lease, {**self.me, "since": time.time()})
        except Timeout:
            return "elsewhere"
        self.held.add(lease)
        self._start()
        return "taken"

    def drop(self, cell_dir: Path) -> None:
        lease = cell_dir / LEASE
        self.held.discard(lease)
        if self._read(lease) == self.me:
            lease.unlink(missing_ok=True)

    def drop_all(self) -> None:
        for lease in list(self.held):
            self.drop(lease.parent)
        self._stop.set()

    def holder(self, cell_dir: Path) -> dict | None:
        """Who holds the cell's live lease (None when free or stale)."""
        lease = cell_dir / LEASE
        holder = self._read(lease)
        return holder if holder is not None and not self._stale(lease, holder) else None

    def exit_of(self, holder: dict) -> int | None:
        """A file descriptor that becomes readable when the holder's process exits (Linux pidfd), or None
        where it runs on another host or the platform has none."""
        if holder.get("host") != self.me["host"] or not isinstance(holder.get("pid"), int):
            return None
        return exit_fd(holder["pid"])  # None when already gone: the next look finds the lease stale

    def _stale(self, lease: Path, holder: dict) -> bool:
        if holder.get("host") == self.me["host"] and isinstance(holder.get("pid"), int) and not pid_alive(holder["pid"]):
            return True
        try:
            return time.time() - lease.stat().st_mtime > self.timeout_s
        except OSError:
            return True

    @staticmethod
    def _read(lease: Path) -> dict | None:
        try:
            data = json.loads(lease.read_text())
        except (OSError, ValueError):
            return None  # none, or cut short by a crash: free to take
        return {k: data.get(k) for k in ("host", "pid", "run")} if isinstance(data, dict) else None

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name="gstbench-leases", daemon=True)
            self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            for lease in list(self.held):
                try:
                    os.utime(lease)
                except OSError:
                    pass  # dropped meanwhile, or the filesystem is gone: the store will say so
