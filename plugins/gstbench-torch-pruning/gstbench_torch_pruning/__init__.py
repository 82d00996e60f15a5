"""gstbench-torch-pruning: Torch-Pruning's importance criteria as gstbench scorers, ``torch-pruning:<name>``.

Each scorer asks Torch-Pruning for the importance of every filter of a layer over the
filter's whole dependency group (the conv's output channels, its BatchNorm channel, the
input channels of the layers that read it), reduced over the group by
``group_reduction``. Two of Torch-Pruning's defaults are changed on purpose:

- no normalization (``normalizer = "none"``): Torch-Pruning divides each group's scores
  by their mean, which leaves a ranking within one layer unchanged but makes scores of
  different layers incomparable under ``scope = "global"``;
- the Hessian (OBD) scorer averages the squared per-example gradients itself:
  Torch-Pruning 1.6's ``HessianImportance.accumulate_grad`` keys its running sum by
  parameter but checks it by name, so it keeps only the last example's gradient.

Gradient-based scorers (``taylor``, ``hessian``) compute the loss on the pruning step's
training batch (``ctx.training_batch``: seeded per cell and step) in the model's current
mode, then restore the BatchNorm running statistics, the parameters' ``.grad`` and
torch's global RNG, so scoring changes nothing else in the cell.
"""

from __future__ import annotations

from typing import Any, Callable

from gstbench import hookimpl
from gstbench.components import ACROSS_LAYERS

__version__ = "0.1.0"


def taylor(batch_size: int = 128, group_reduction: str = "mean", normalizer: str = "none"):
    """First-order Taylor |w * dL/dw| over each filter's group, on a training batch (Molchanov et al. 2019)."""
    from gstbench_torch_pruning.scorers import GradientScorer, _options, _tp

    return GradientScorer(_tp().importance.GroupTaylorImportance(**_options(group_reduction, normalizer)),
                          batch_size, per_example=False)


def hessian(batch_size: int = 32, group_reduction: str = "mean", normalizer: str = "none"):
    """Optimal Brain Damage w^2 * diag(H), H as the mean squared per-example gradient (LeCun et al. 1989)."""
    from gstbench_torch_pruning.scorers import GradientScorer, _options, _tp

    return GradientScorer(_tp().importance.GroupHessianImportance(**_options(group_reduction, normalizer)),
                          batch_size, per_example=True)


def bn_scale(group_reduction: str = "mean", normalizer: str = "none"):
    """|gamma| of the filter's BatchNorm channels in its group (network slimming, Liu et al. 2017)."""
    from gstbench_torch_pruning.scorers import GroupScorer, _options, _tp

    return GroupScorer(_tp().importance.BNScaleImportance(**_options(group_reduction, normalizer)), "BatchNorm")


def lamp(group_reduction: str = "mean"):
    """LAMP: squared group norm over the sum of the layer's norms not below it (Lee et al. 2021); for global scope."""
    from gstbench_torch_pruning.scorers import GroupScorer, _tp

    return GroupScorer(_tp().importance.LAMPImportance(p=2, group_reduction=group_reduction))


def group_norm(group_reduction: str = "mean", normalizer: str = "none"):
    """Squared L2 norm of each filter's whole group: its weights, BatchNorm channel and consumers' inputs."""
    from gstbench_torch_pruning.scorers import GroupScorer, _options, _tp

    return GroupScorer(_tp().importance.GroupMagnitudeImportance(p=2, **_options(group_reduction, normalizer)))


def fpgm(group_reduction: str = "mean", normalizer: str = "none"):
    """FPGM: a filter's summed distance to the layer's other filters, low near the geometric median (He et al. 2019)."""
    from gstbench_torch_pruning.scorers import GroupScorer, _options, _tp

    return GroupScorer(_tp().importance.FPGMImportance(p=2, **_options(group_reduction, normalizer)))


SCORERS: dict[str, Callable[..., Any]] = {
    "taylor": taylor,
    "hessian": hessian,
    "bn-scale": bn_scale,
    "lamp": lamp,
    "group-norm": group_norm,
    "fpgm": fpgm,
}


@hookimpl
def register_scorers(register):
    for name, factory in SCORERS.items():  # LAMP's scores are made to compare across layers
        register(name, factory, capabilities=[ACROSS_LAYERS] if name == "lamp" else [])
