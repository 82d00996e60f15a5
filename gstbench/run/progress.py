"""The run's progress bar: the epochs of every cell in flight, whichever executor runs them, with an ETA.

The bar counts epochs, not cells, so it moves while the cells train (a paper-scale cell
takes hours) and tqdm's ETA comes from the measured epoch rate of all workers together.
Epochs a cell did not train here (its parent from the cache, a checkpoint it resumed) are
taken off the total instead of counted, so they do not inflate the rate. tqdm redraws at
most every ``REDRAW_S`` seconds however fast epochs arrive.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

REDRAW_S = 0.5
SHOWN_CELLS = 3  # cells named in the bar; the rest are counted


class RunProgress:
    def __init__(self, pending: list[Any], label: Callable[[Any], str], disable: bool):
        from tqdm import tqdm

        self.label = label
        self.planned = {spec.hash: spec.planned_epochs for spec in pending}
        self.seen: dict[str, int] = {}  # epochs each cell reported so far
        self.running: dict[str, str] = {}  # cell hash -> "label seed N epoch E/P"
        self.cells, self.finished = len(pending), 0
        self.bar = tqdm(total=sum(self.planned.values()), unit="epoch", disable=disable or not pending,
                        file=sys.stderr, dynamic_ncols=True, mininterval=REDRAW_S, smoothing=0.05,
                        desc=self._description())

    def _description(self) -> str:
        return f"{self.finished}/{self.cells} cells"

    def epoch(self, spec: Any, done: int, planned: int) -> None:
        """A cell reported ``done`` of its ``planned`` epochs (from this process or a worker)."""
        key = spec.hash
        if planned != self.planned.get(key, planned):  # a cell that plans otherwise than its spec says
            self.bar.total += planned - self.planned[key]
            self.planned[key] = planned
        step = done - self.seen.get(key, 0)
        self.seen[key] = done
        self.running[key] = f"{self.label(spec)} seed {spec.seed} epoch {done}/{planned}"
        self._postfix()
        if step > 1:  # skipped, not trained here (the parent cache, a checkpoint): off the total
            self.bar.total -= step
            self.bar.refresh()
        elif step > 0:
            self.bar.update(step)

    def cell_done(self, spec: Any, result: Any) -> None:
        key = spec.hash
        self.running.pop(key, None)
        left = self.planned.get(key, 0) - self.seen.get(key, 0)
        self.finished += 1
        self.bar.set_description_str(self._description(), refresh=False)
        self._postfix()
        if left > 0:  # a failed cell's epochs it never trained
            self.bar.total -= left
        self.bar.refresh()
        if not result.ok:
            self.bar.write(f"cell {spec.short_hash} failed: {result.error}", file=sys.stderr)

    def _postfix(self) -> None:
        shown = list(self.running.values())
        text = ", ".join(shown[:SHOWN_CELLS]) + (f" +{len(shown) - SHOWN_CELLS} more" if len(shown) > SHOWN_CELLS
                                                 else "")
        self.bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self.bar.close()
