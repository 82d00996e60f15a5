"""Built-in scorers: filter L2 and L1 norms, activation L1 (moving average), BatchNorm |gamma|, random.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/scorers.py.
"""

from __future__ import annotations

from gstbench.components import ACROSS_LAYERS, GROUPS, MAPS_2D, NEEDS_ACTIVATIONS, WEIGHTS
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


def head_importance(examples: int = 128):
    """Michel et al. 2019's head importance E|dL/d xi| of each unit's output gate, per layer L2-normalised."""
    from gstbench.builtin.impl.gradient_scorers import HeadImportanceScorer

    return HeadImportanceScorer(int(examples))


def taylor(examples: int = 128):
    """First-order Taylor |w * dL/dw| summed over each unit's weights (LLM-Pruner's element-wise first order)."""
    from gstbench.builtin.impl.gradient_scorers import TaylorScorer

    return TaylorScorer(int(examples))


def magnitude(compare: str = "layer"):
    """|w| of each single weight, compared within the layer (default) or within each output row; of a filter,
    head or neuron, the mean |w| of its weights: comparable across layers (scope = "global")."""
    from gstbench.builtin.impl.calibrated_scorers import MagnitudeScorer

    return MagnitudeScorer(str(compare))


def wanda(examples: int = 128, compare: str = "output"):
    """Wanda |W_ij| * ||X_j|| on calibration inputs (Sun et al. 2024), per output row; on heads/neurons: summed."""
    from gstbench.builtin.impl.calibrated_scorers import WandaScorer

    return WandaScorer(int(examples), str(compare))


def obs(examples: int = 128, damp: float = 0.01):
    """SparseGPT's OBS saliency w^2 / [H^-1]_jj^2 of each weight of a linear layer, from calibration inputs."""
    from gstbench.builtin.impl.sparsegpt import OBSScorer

    return OBSScorer(int(examples), float(damp))


@hookimpl
def register_scorers(register):
    register("l2", l2, capabilities=[WEIGHTS, GROUPS])
    register("l1", l1, capabilities=[WEIGHTS, GROUPS])
    register("activation-l1", activation_l1, capabilities=[NEEDS_ACTIVATIONS])
    register("bn-gamma", bn_gamma)
    register("random", random, capabilities=[WEIGHTS, GROUPS])
    register("snip", snip, capabilities=[WEIGHTS])
    register("grasp", grasp, capabilities=[WEIGHTS])
    register("synflow", synflow, capabilities=[WEIGHTS])
    register("hrank", hrank, capabilities=[MAPS_2D])
    register("head-importance", head_importance, capabilities=[GROUPS])
    register("taylor", taylor, capabilities=[GROUPS])
    register("magnitude", magnitude, capabilities=[WEIGHTS, GROUPS, ACROSS_LAYERS])
    register("wanda", wanda, capabilities=[WEIGHTS, GROUPS])
    register("obs", obs, capabilities=[WEIGHTS])
