"""The run's progress: a live bar on a terminal, a few plain lines in a log file, with an ETA counted in epochs.

Progress counts epochs, not cells, so it moves while the cells train (a paper-scale cell
takes hours) and the ETA comes from the measured epoch rate of all workers together.
Epochs a cell did not train here (its parent from the cache, a checkpoint it resumed) are
taken off the total instead of counted, so they do not inflate the rate.

On a terminal tqdm redraws at most every ``REDRAW_S`` seconds. Anywhere else (CI, Slurm,
``nohup``, a pipe) every redraw would stay in the file, so a line is written only once
``LINE_EVERY_S`` seconds have passed since the last one and either ``LINE_STEP`` of the
epochs are done since then or ``LINE_IDLE_S`` seconds have passed; then a last line at the end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

REDRAW_S = 0.5
SHOWN_CELLS = 3  # cells named in the bar; the rest are counted
LINE_EVERY_S = 30.0
LINE_STEP = 0.05
LINE_IDLE_S = 600.0


class RunProgress:
    def __init__(self, pending: list[Any], label: Callable[[Any], str], disable: bool,
                 stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        from tqdm import tqdm

        self.label, self.stream, self.clock = label, stream or sys.stderr, clock
        self.planned = {spec.hash: spec.planned_epochs for spec in pending}
        self.seen: dict[str, int] = {}  # epochs each cell reported so far
        self.running: dict[str, str] = {}  # cell hash -> "label seed N epoch E/P"
        self.cells, self.finished = len(pending), 0
        self.total, self.done = sum(self.planned.values()), 0  # epochs to train here, and trained
        self.quiet = disable or not pending
        self.live = not self.quiet and self.stream.isatty()
        self.started = self.last_line = clock()
        self.done_at_last_line = 0
        self.bar = tqdm(total=self.total, unit="epoch", disable=not self.live, file=self.stream,
                        dynamic_ncols=True, mininterval=REDRAW_S, smoothing=0.05, desc=self._description())

    def _description(self) -> str:
        return f"{self.finished}/{self.cells} cells"

    def epoch(self, spec: Any, done: int, planned: int) -> None:
        """A cell reported ``done`` of its ``planned`` epochs (from this process or a worker)."""
        key = spec.hash
        if planned != self.planned.get(key, planned):  # a cell that plans otherwise than its spec says
            self._retotal(planned - self.planned[key])
            self.planned[key] = planned
        step = done - self.seen.get(key, 0)
        self.seen[key] = done
        self.running[key] = f"{self.label(spec)} seed {spec.seed} epoch {done}/{planned}"
        self._postfix()
        if step > 1:  # skipped, not trained here (the parent cache, a checkpoint): off the total
            self._retotal(-step)
            self.bar.refresh()
        elif step > 0:
            self.done += step
            self.bar.update(step)
        self._maybe_line()

    def cell_done(self, spec: Any, result: Any) -> None:
        key = spec.hash
        self.running.pop(key, None)
        left = self.planned.get(key, 0) - self.seen.get(key, 0)
        self.finished += 1
        self.bar.set_description_str(self._description(), refresh=False)
        self._postfix()
        if left > 0:  # a failed cell's epochs it never trained
            self._retotal(-left)
        self.bar.refresh()
        if not result.ok:
            self.bar.write(f"cell {spec.short_hash} failed: {result.error}", file=self.stream)
        self._maybe_line()

    def _retotal(self, change: int) -> None:
        self.total += change
        self.bar.total = self.total

    def _running_text(self) -> str:
        shown = list(self.running.values())
        return ", ".join(shown[:SHOWN_CELLS]) + (f" +{len(shown) - SHOWN_CELLS} more" if len(shown) > SHOWN_CELLS
                                                 else "")

    def _postfix(self) -> None:
        if self.live:
            self.bar.set_postfix_str(self._running_text(), refresh=False)

    def _maybe_line(self) -> None:
        if self.live or self.quiet:
            return
        now = self.clock()
        since = now - self.last_line
        moved = self.done - self.done_at_last_line >= LINE_STEP * max(self.total, 1)
        if since >= LINE_EVERY_S and (moved or since >= LINE_IDLE_S):
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = f", ETA {_clock(max(self.total - self.done, 0) / rate)}" if rate > 0 and self.done < self.total else ""
        share = 100 * self.done / self.total if self.total else 100.0
        running = self._running_text()
        print(f"{self._description()}, {self.done}/{self.total} epochs ({share:.0f}%), {_clock(elapsed)} "
              f"elapsed{eta}" + (f"; {running}" if running else ""), file=self.stream, flush=True)
        self.last_line, self.done_at_last_line = now, self.done

    def close(self) -> None:
        if not self.live and not self.quiet:
            self._line(self.clock())  # the last line: where the run ended
        self.quiet = True  # close may be called twice (an interrupt, then the finally)
        self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
