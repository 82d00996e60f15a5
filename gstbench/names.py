"""Names that become parts of paths, checked where they are read, and every written path kept inside its directory.

A suite's name picks its result directory (``gstbench-results/<name>``), a plugin's component
names and a suite's name reach trackers' directories. Suite files come from colleagues and
third-party plugins: a name is a name, never a path, so ``../x`` or ``a/b`` is refused before
anything is trained or written.
"""

from __future__ import annotations

import re
from pathlib import Path

from gstbench.errors import GstbenchError

NAME_MAX = 100
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
NAME_RULE = f"letters, digits, '-', '_' and '.' (not first), at most {NAME_MAX} characters"


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a name (None when it is one)."""
    if not isinstance(value, str) or not value:
        return f"{value!r} is not a name ({NAME_RULE})"
    if len(value) > NAME_MAX:
        return f"'{value[:20]}...' has {len(value)} characters, more than {NAME_MAX}"
    if not _NAME.fullmatch(value):
        return f"{value!r} is not a name: use {NAME_RULE}"
    return None


def inside(root: Path | str, path: Path | str, given_by: str) -> Path:
    """``path``, after checking that it lies in ``root`` (both resolved, links followed); ``given_by``
    names where ``root`` came from (e.g. ``--out``) for the one-line refusal."""
    root_resolved, resolved = Path(root).resolve(), Path(path).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise GstbenchError(f"refusing to write {path}: it lies outside {root} ({given_by}), at {resolved}; remove "
                            f"the symbolic link that leads there, or the path in the name ({NAME_RULE})")
    return Path(path)
