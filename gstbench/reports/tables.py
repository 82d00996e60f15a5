"""Text tables that fit a width: the columns named as wrapped share what the others leave, their text wrapped."""

from __future__ import annotations

import textwrap
from typing import Any

from tabulate import tabulate


def fitted_table(rows: list[list[Any]], headers: list[str], wrapped: list[int], width: int,
                 tablefmt: str = "simple") -> str:
    """A table at most ``width`` columns wide: the columns at ``wrapped`` share what the others leave, their text
    wrapped to it, line by line (a column narrower than its share keeps its width)."""
    def natural(i: int) -> int:  # tabulate pads a header by 2
        return max([len(headers[i]) + 2, *(len(line) for r in rows for line in str(r[i]).splitlines())])

    left = width - 2 * (len(headers) - 1) - sum(natural(i) for i in range(len(headers)) if i not in wrapped)
    narrow = sorted(wrapped, key=natural)  # the narrow keep their width; the rest share what is left
    limits: list[int | None] = [None] * len(headers)
    for k, i in enumerate(narrow):
        share = max(12, left // (len(narrow) - k))
        if natural(i) > share:
            limits[i] = share
        left -= min(natural(i), share)

    def fill(text: Any, limit: int | None) -> str:
        lines = str(text).splitlines() or [""]
        return "\n".join(textwrap.fill(line, limit, break_on_hyphens=False) if limit else line for line in lines)

    fitted = [[fill(cell, limits[i]) for i, cell in enumerate(row)] for row in rows]
    return tabulate(fitted, headers=headers, tablefmt=tablefmt, disable_numparse=True)
