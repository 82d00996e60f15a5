"""Built-in regularizers: network slimming's L1 penalty on BatchNorm gamma, and group lasso over filters.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/regularizers.py.
"""

from __future__ import annotations

from gstbench.plugins import hookimpl


def l1_bn_gamma(strength: float = 1e-4):
    """strength * sum |gamma| over every BatchNorm (network slimming, Liu et al. 2017; their CIFAR lambda 1e-4)."""
    from gstbench.builtin.impl.regularizers import BatchNormL1

    return BatchNormL1(strength)


def group_lasso(strength: float = 1e-4):
    """strength * sum over every conv filter of its weights' L2 norm (filter-wise group lasso, Wen et al. 2016)."""
    from gstbench.builtin.impl.regularizers import FilterGroupLasso

    return FilterGroupLasso(strength)


@hookimpl
def register_regularizers(register):
    register("l1-bn-gamma", l1_bn_gamma)
    register("group-lasso", group_lasso)
