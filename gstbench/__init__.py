"""gstbench: benchmark pruning methods on stability, generalization and what else test accuracy hides."""

from gstbench.plugins import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "results", "__version__"]


def results(directory):
    """A run directory as pandas DataFrames (``.cells``, ``.events``, ``.curves``); needs gstbench[analysis]."""
    from gstbench.analysis import results as load

    return load(directory)
