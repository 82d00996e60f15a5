"""gstbench: benchmark pruning methods on stability, generalization and what else test accuracy hides."""

from gstbench.plugins import hookimpl

__version__ = "0.1.0"

__all__ = ["hookimpl", "__version__"]
