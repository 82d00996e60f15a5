"""Built-in scorers: filter L2 and L1 norms, activation L1 (moving average), BatchNorm |gamma|, random.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/scorers.py.
"""

from __future__ import annotations

from gstbench.components import MAPS_2D, NEEDS_ACTIVATIONS, WEIGHTS
from gstbench.plugins import hookimpl


def l2():
    """L2 norm of each filter's weights (the paper's VGG11 scorer); |w| for single weights."""
    from gstbench.builtin.impl.scorers import NormScorer

    return NormScorer(2)


def l1():
    """L1 norm of each filter's weights; |w| for single weights (magnitude pruning)."""
    from gstbench.builtin.impl.scorers import NormScorer

    return NormScorer(1)


def activation_l1(momentum: float = 0.1, every: int = 10):
    """L1 norm of each channel's activations, moving average 0.1*new + 0.9*old every 10th batch."""
    from gstbench.builtin.impl.scorers import ActivationL1Scorer

    return ActivationL1Scorer(momentum, every)


def bn_gamma():
    """|gamma| of the BatchNorm after each filter (network slimming, Liu et al. 2017)."""
    from gstbench.builtin.impl.scorers import BatchNormScaleScorer

    return BatchNormScaleScorer()


def random():
    """Uniform random scores from the cell's seeded generator."""
    from gstbench.builtin.impl.scorers import RandomScorer

    return RandomScorer()


def snip(batch_size: int = 128):
    """SNIP connection sensitivity |w * dL/dw| on a training batch (Lee et al. 2019); per filter: summed."""
    from gstbench.builtin.impl.scorers import SnipScorer

    return SnipScorer(int(batch_size))


def grasp(batch_size: int = 128, temperature: float = 200.0):
    """GraSP gradient-flow preservation, importance theta * Hg (Wang et al. 2020); per filter: summed."""
    from gstbench.builtin.impl.scorers import GraspScorer

    return GraspScorer(int(batch_size), float(temperature))


def synflow():
    """SynFlow synaptic flow |theta * dR/dtheta| on an all-ones input, |parameters| (Tanaka et al. 2020)."""
    from gstbench.builtin.impl.scorers import SynFlowScorer

    return SynFlowScorer()


def hrank(examples: int = 500):
    """HRank (Lin et al. 2020): mean rank of each filter's 2-D feature maps over training examples (images only)."""
    from gstbench.builtin.impl.scorers import HRankScorer

    return HRankScorer(int(examples))


@hookimpl
def register_scorers(register):
    register("l2", l2, capabilities=[WEIGHTS])
    register("l1", l1, capabilities=[WEIGHTS])
    register("activation-l1", activation_l1, capabilities=[NEEDS_ACTIVATIONS])
    register("bn-gamma", bn_gamma)
    register("random", random, capabilities=[WEIGHTS])
    register("snip", snip, capabilities=[WEIGHTS])
    register("grasp", grasp, capabilities=[WEIGHTS])
    register("synflow", synflow, capabilities=[WEIGHTS])
    register("hrank", hrank, capabilities=[MAPS_2D])
