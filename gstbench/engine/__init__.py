"""The engine: trains one cell with its pruning schedule and returns its ``CellResult`` (store/cell_result.py).

One module per job, in the order a cell meets them:

    state.py       Cell: the one owner of a cell's state (spec, registry, data, device, parent
                   cache, checkpoints, trackers) and its Timing
    setup.py       device placement, precision, the cell's seeds, the optimizer
    evaluation.py  accuracy and loss in eval mode; the cell's metrics
    loop.py        Trainer: the step loop, its Hooks, the per-epoch curves
    pruner.py      Pruner: what a pruning event does (t_pre -> score -> select -> effector -> t_post)
    parent.py      the unpruned parent (trained, or from the cache) and its independent twin
    rounds.py      prune-retrain rounds: rewinding, lottery tickets, data-order stability
    lmc.py         linear mode connectivity between two trained copies
    checkpoint.py  mid-cell checkpoints: save every N epochs (or round), resume bitwise (one resume)
    tracking.py    the experiment trackers a cell logs to, each guarded
    artifacts.py   a cell's final model in safetensors, rebuilt through the registry, exported
    cell.py        run_cell: one cell from start to result (its docstring has the call nesting)

``run_cell`` is importable from here; it loads on first use, so that an executor module
that names it does not import the trainer. Executors build a failed cell's result with
``CellResult.failed``, without the engine.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_cell"]


def __getattr__(name: str) -> Any:
    if name == "run_cell":
        from gstbench.engine.cell import run_cell

        return run_cell
    raise AttributeError(f"module 'gstbench.engine' has no attribute '{name}'")
