"""Faults at the operating-system edge for subprocess tests of the CLI (on PYTHONPATH, loaded by ``site``).

GSTBENCH_TEST_READONLY=DIR  every write under DIR fails with EROFS, as on a read-only mount
                            (tests run as root, where chmod does not stop writes).
GSTBENCH_TEST_ENOSPC=NAME:K after K successful ones, fsync of a temp file for NAME (e.g.
                            result.json) fails with ENOSPC, as on a full disk.
"""

import builtins
import errno
import io
import os
import tempfile

_READONLY = os.environ.get("GSTBENCH_TEST_READONLY")
_ENOSPC = os.environ.get("GSTBENCH_TEST_ENOSPC")


def _under(path) -> bool:
    try:
        path = os.path.abspath(os.fspath(path))
    except TypeError:
        return False
    return path == _READONLY or path.startswith(_READONLY.rstrip("/") + "/")


def _refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))


if _READONLY:
    _READONLY = os.path.abspath(_READONLY)
    _open, _io_open, _os_open, _mkstemp = builtins.open, io.open, os.open, tempfile.mkstemp

    def _writes(mode) -> bool:
        return any(c in mode for c in "wax+")

    def open_(file, mode="r", *args, **kwargs):
        if _writes(mode) and not isinstance(file, int) and _under(file):
            _refuse(file)
        return _open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and _under(path):
            _refuse(path)
        return _os_open(path, flags, *args, **kwargs)

    builtins.open = io.open = open_
    os.open = os_open

    def _guard(name, *which):
        real = getattr(os, name)

        def guarded(*args, **kwargs):
            for i in which:
                if i < len(args) and _under(args[i]):
                    _refuse(args[i])
            return real(*args, **kwargs)

        setattr(os, name, guarded)

    for _name, _which in (("mkdir", (0,)), ("replace", (0, 1)), ("rename", (0, 1)), ("unlink", (0,)),
                          ("remove", (0,)), ("rmdir", (0,)), ("utime", (0,)), ("makedirs", (0,))):
        _guard(_name, *_which)

if _ENOSPC:
    _name, _, _allowed = _ENOSPC.partition(":")
    _left = [int(_allowed or 0)]
    _fsync = os.fsync

    def fsync(fd):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if f".{_name}." in os.path.basename(target):
            if _left[0] <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            _left[0] -= 1
        return _fsync(fd)

    os.fsync = fsync
