"""Built-in executors: run cells one after another in this process."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from gstbench.plugins import hookimpl


class SequentialExecutor:
    def map(self, cells: Iterable, run_cell: Callable) -> Iterator[tuple]:
        for cell in cells:
            yield cell, run_cell(cell)


def sequential():
    """In-process, one cell after another (results stream to the store as each cell ends)."""
    return SequentialExecutor()


@hookimpl
def register_executors(register):
    register("sequential", sequential)
