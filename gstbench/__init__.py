"""gstbench: benchmark pruning methods on stability, generalization and what else test accuracy hides."""

from gstbench.plugins import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "load_model", "results", "__version__"]


def results(directory):
    """A run directory as pandas DataFrames (``.cells``, ``.events``, ``.curves``); needs gstbench[analysis]."""
    from gstbench.reports.analysis import results as load

    return load(directory)


def load_model(cell, structured: bool = False, device: str = "cpu"):
    """A cell's stored final model (``cells/<hash16>`` of a run directory, or a model file),
    rebuilt through the installed plugins in eval mode; ``structured=True`` removes dead filters physically."""
    from gstbench.engine.artifacts import load_model as load

    return load(cell, structured=structured, device=device)
