"""Seeds as users write them: a count (5: seeds 0-4), an inclusive range ("100-104") or a list ([100, 101]).

A cell's hash holds its seed number only, so seed s gives the same cell however the
seeds were written (a count, a range or a list).
"""

from __future__ import annotations

import re
from typing import Any

from gstbench.errors import SpecError

RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
MAX_SEEDS = 10_000_000  # far beyond any run; a larger count is a typo, refused before it is listed
SEEDS_HELP = "write a count (5: seeds 0-4), a range (\"100-104\") or a list ([100, 101, 102])"


def parse_seeds(value: Any, key: str = "seeds", source: str | None = None) -> tuple[int, ...]:
    """The seed numbers ``value`` names, in order; SpecError naming ``key`` when it names none or repeats one."""
    if isinstance(value, bool):
        raise SpecError(f"{value!r} is not seeds; {SEEDS_HELP}", source=source, key=key)
    count = count_seeds(value)
    if count is not None and count > MAX_SEEDS:  # before a list of them is built
        raise SpecError(f"{count:,} seeds: more than {MAX_SEEDS:,}; {SEEDS_HELP}", source=source, key=key)
    if isinstance(value, int):
        if value < 1:
            raise SpecError(f"{value!r} must be a count >= 1; {SEEDS_HELP}", source=source, key=key)
        return tuple(range(value))
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_seeds(int(text), key, source)
        if "," in text:
            return parse_seeds([int(p) if p.strip().isdigit() else p.strip() for p in text.split(",")], key, source)
        m = RANGE_RE.match(text)
        if not m or int(m.group(1)) > int(m.group(2)):
            raise SpecError(f"{value!r} is not a seed range (low-high, low <= high); {SEEDS_HELP}",
                            source=source, key=key)
        return tuple(range(int(m.group(1)), int(m.group(2)) + 1))
    if isinstance(value, (list, tuple)) and value:
        for s in value:
            if isinstance(s, bool) or not isinstance(s, int) or s < 0:
                raise SpecError(f"{s!r} in {value!r} is not a seed (a whole number >= 0); {SEEDS_HELP}",
                                source=source, key=key)
        if len(set(value)) != len(value):
            raise SpecError(f"{list(value)!r} repeats a seed; {SEEDS_HELP}", source=source, key=key)
        return tuple(value)
    raise SpecError(f"{value!r} is not seeds; {SEEDS_HELP}", source=source, key=key)


def count_seeds(value: Any) -> int | None:
    """How many seeds ``value`` names, without listing them (None: not seeds; parse_seeds says why)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text) or None
        if "," in text:
            return text.count(",") + 1
        m = RANGE_RE.match(text)
        return int(m.group(2)) - int(m.group(1)) + 1 if m and int(m.group(1)) <= int(m.group(2)) else None
    if isinstance(value, (list, tuple)):
        return len(value) or None
    return None


def parse_seed_range(text: str) -> list[int]:
    """``parse_seeds`` for a command-line string (benchmarks); raises SystemExit with the message."""
    try:
        return list(parse_seeds(text, "--seeds"))
    except SpecError as exc:
        raise SystemExit(str(exc)) from None


def describe_seeds(seeds: list[int] | tuple[int, ...]) -> str:
    """``0-4``, ``100-104`` or ``1, 5, 9``: how tables name a set of seeds."""
    seeds = sorted(seeds)
    if not seeds:
        return "none"
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ", ".join(str(s) for s in seeds)


def seeds_flag(seeds: list[int] | tuple[int, ...]) -> str:
    """The ``--seeds`` value that names exactly ``seeds``: a count from 0, a range, or a list (a lone seed S as
    the range S-S, since a bare number is a count)."""
    seeds = list(seeds)
    if seeds == list(range(len(seeds))):
        return str(len(seeds))
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


# Every seed a cell derives from its own, by purpose: SeedSequence([seed, PURPOSE, ...]). The numbers
# are part of every stored result: never change or reuse one.
CELL = ()  # the cell's own two streams: data order, then pruning draws
TWIN_DATA_ORDER = (1,)  # the second copy of a data-order-stability round (from the cell's seed)
REINIT = (2,)  # a round's fresh initialization for the reinit rewind (+ the round number)
AUGMENTATION = (3,)  # data augmentation draws (from the data-order seed)
INDEPENDENT_PARENT = (4,)  # the parent's twin trained from another seed


def derived_seeds(seed: int, purpose: tuple[int, ...], *more: int, count: int = 1) -> tuple[int, ...]:
    """``count`` seeds for ``purpose`` from ``seed``: independent of the seed itself and of every other purpose."""
    from numpy.random import SeedSequence

    return tuple(int(s) for s in SeedSequence([seed, *purpose, *more]).generate_state(count))


def derived_seed(seed: int, purpose: tuple[int, ...], *more: int) -> int:
    return derived_seeds(seed, purpose, *more)[0]
