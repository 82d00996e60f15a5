"""Ctrl-C and SIGTERM for `gstbench run`: a stop request that no swallowed exception can lose.

Python raises KeyboardInterrupt wherever the main thread is when the signal lands; inside a
finalizer (``__del__``, a weakref callback) it is printed as "Exception ignored" and lost,
and the run would train on. So the handler also records the request, and the training loop
asks ``check()`` at every step, which raises it again. Processes that never ``install()``
(pool workers, Ray tasks) are not affected.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Callable, Iterator

from gstbench.errors import Terminated

_requested: int | None = None
_deferred: dict[int, Callable] = {}  # signal -> the handler check() runs for it
_pending: list[int] = []  # deferred signals received, not handled yet


def _stop(signum: int, frame) -> None:
    global _requested
    _requested = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def check() -> None:
    """Raise the stop request again if one came, and run deferred handlers (cheap: every training step)."""
    if _requested is not None:
        raise Terminated() if _requested == signal.SIGTERM else KeyboardInterrupt()
    while _pending:
        signum = _pending.pop(0)
        if signum in _deferred:
            _deferred[signum](signum, None)


def _record(signum: int, frame) -> None:
    if signum not in _pending:
        _pending.append(signum)


@contextlib.contextmanager
def deferred(signum: int, handler: Callable) -> Iterator[None]:
    """While inside, ``signum`` runs ``handler(signum, None)`` at the next ``check()``, not where it lands."""
    previous = signal.signal(signum, _record)
    _deferred[signum] = handler
    try:
        yield
    finally:
        signal.signal(signum, previous)
        _deferred.pop(signum, None)
        if signum in _pending:
            _pending.remove(signum)


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """SIGINT and SIGTERM stop the run (KeyboardInterrupt, Terminated) while inside; then as before."""
    global _requested
    _requested = None
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _stop) for s in signals}
    # A parent may have blocked them (a blocked signal waits forever): this run promises to stop on them.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = None


def forget_handled_interrupt() -> None:
    """Call once a Ctrl-C is handled, before exiting with a status of one's own.

    CPython notes every KeyboardInterrupt that escapes an ``exec`` of a string (the standard library builds
    dataclasses and namedtuples so; Ctrl-C lands there when a lazy import runs), caught later or not, and
    ``python -m`` then ends the process by SIGINT instead of the status asked for. Each ``exec`` of a string
    clears that note as it starts."""
    exec("")
