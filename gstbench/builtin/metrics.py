"""Built-in metrics: flatness, distribution shift, functional distance to the parent, cost and latency.

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/metrics.py.
"""

from __future__ import annotations

from gstbench.components import NEEDS_INDEPENDENT, NEEDS_PARENT
from gstbench.plugins import hookimpl

SAMPLES = 128  # quick-scale default; REFERENCE.md's paper setting is 512
LANCZOS_ITERATIONS = 16
PROBES = 8


def hessian_trace(samples: int = SAMPLES, probes: int = PROBES, deflation: int = LANCZOS_ITERATIONS,
                  sample_seed: int = 0, chunk: int = 512):
    """Tr(H) of the loss Hessian: Hutchinson with standard error (variance cut by Lanczos deflation)."""
    from gstbench.builtin.impl.metrics import HessianTrace

    return HessianTrace(samples, probes, deflation, sample_seed, chunk)


def hessian_topk(k: int = 10, iterations: int = LANCZOS_ITERATIONS, samples: int = SAMPLES, sample_seed: int = 0,
                 chunk: int = 512):
    """The top-k eigenvalues of the loss Hessian (Lanczos) and their sum, with Ritz residuals."""
    from gstbench.builtin.impl.metrics import HessianTopK

    return HessianTopK(k, iterations, samples, sample_seed, chunk)


def grad_second_moment(samples: int = SAMPLES, sample_seed: int = 0, chunk: int = 64):
    """Tr(C) as the paper defines it: the mean squared norm of per-example loss gradients (uncentered)."""
    from gstbench.builtin.impl.metrics import GradientMoment

    return GradientMoment(False, samples, sample_seed, chunk)


def grad_covariance_trace(samples: int = SAMPLES, sample_seed: int = 0, chunk: int = 64):
    """Trace of the covariance of per-example loss gradients (centered)."""
    from gstbench.builtin.impl.metrics import GradientMoment

    return GradientMoment(True, samples, sample_seed, chunk)


def tic_proxy(samples: int = SAMPLES, probes: int = PROBES, deflation: int = LANCZOS_ITERATIONS, sample_seed: int = 0,
              chunk: int = 512):
    """TIC proxy Tr(C)/Tr(H) (Takeuchi information criterion, as in the paper)."""
    from gstbench.builtin.impl.metrics import TicProxy

    return TicProxy(samples, probes, deflation, sample_seed, chunk)


def eps_sharpness(k: int = 10, eps_min: float = 0.001, eps_max: float = 0.4, points: int = 40,
                  threshold: float = 0.1, iterations: int = LANCZOS_ITERATIONS, samples: int = SAMPLES,
                  sample_seed: int = 0, chunk: int = 512):
    """Smallest |eps| along the top-k unit Hessian eigenvectors at which the loss rises by the threshold."""
    from gstbench.builtin.impl.metrics import EpsSharpness

    return EpsSharpness(k, eps_min, eps_max, points, threshold, iterations, samples, sample_seed, chunk)


# List defaults, as suite files write them: an explicitly written default is then the same cell.
def ood_accuracy(shifts: list[str] | None = None, severities: list[int] = [1, 2, 3, 4, 5], seed: int = 0):
    """Accuracy on each shifted test set (per shift and severity) and their mean."""
    from gstbench.builtin.impl.metrics import OodAccuracy

    return OodAccuracy(tuple(shifts) if shifts else None, tuple(severities), seed)


def excess_error(shifts: list[str] | None = None, severities: list[int] = [1, 2, 3, 4, 5], seed: int = 0):
    """Excess error on each shifted set against the unpruned parent (Liebenwein et al. 2021)."""
    from gstbench.builtin.impl.metrics import ExcessError

    return ExcessError(tuple(shifts) if shifts else None, tuple(severities), seed)


def functional_distance(eps: list[float] = [0.0, 0.1, 0.3, 0.5, 0.7], samples: int = 512, seed: int = 0):
    """Pruned vs parent on inputs with uniform noise: top-1 agreement, softmax L2 and Linf distances."""
    from gstbench.builtin.impl.metrics import FunctionalDistance

    return FunctionalDistance(tuple(eps), samples, seed)


def independent_agreement(eps: list[float] = [0.0, 0.1, 0.3, 0.5, 0.7], samples: int = 512, seed: int = 0):
    """The reference for functional-distance: the parent vs a parent trained from another seed, same noisy inputs."""
    from gstbench.builtin.impl.metrics import IndependentAgreement

    return IndependentAgreement(tuple(eps), samples, seed, against="independently trained parent (another seed)")


def cost():
    """MACs and parameters (torch-pruning's counter), also with masked filters physically removed."""
    from gstbench.builtin.impl.metrics import Cost

    return Cost()


def latency(large_batch: int = 256, warmup: int = 5, repeats: int = 25):
    """Inference time of the pruned network (dead filters removed) against its unpruned parent: batch 1 and
    large_batch, median of repeats and spread, on the cell's device and threads; speed-up = parent / pruned."""
    from gstbench.builtin.impl.metrics import Latency

    return Latency(int(large_batch), int(warmup), int(repeats))


def speed(runtimes: tuple = ("eager", "compile", "onnxruntime", "sparse-csr", "semi-structured"), batch: int = 64,
          warmup: int = 3, repeats: int = 15):
    """Realized against predicted speed-up in each runtime at batch 1 and ``batch``: the pruned network (dead units
    removed, zero weights kept in place) against its parent; runtimes that cannot run here are named, not timed."""
    from gstbench.builtin.speed import SpeedMetric

    return SpeedMetric([str(r) for r in runtimes], int(batch), int(warmup), int(repeats))


@hookimpl
def register_metrics(register):
    register("hessian-trace", hessian_trace)
    register("hessian-topk", hessian_topk)
    register("grad-second-moment", grad_second_moment)
    register("grad-covariance-trace", grad_covariance_trace)
    register("tic-proxy", tic_proxy)
    register("eps-sharpness", eps_sharpness)
    register("ood-accuracy", ood_accuracy, better={"ood_acc_mean": "higher", "ood_nominal_acc": "higher"})
    register("excess-error", excess_error, capabilities=(NEEDS_PARENT,), better={"excess_error_mean": "lower"})
    register("functional-distance", functional_distance, capabilities=(NEEDS_PARENT,),
             better={"functional_agreement_mean": "higher", "softmax_l2_mean": "lower", "softmax_linf_mean": "lower"})
    register("independent-agreement", independent_agreement, capabilities=(NEEDS_PARENT, NEEDS_INDEPENDENT))
    register("cost", cost)
    register("latency", latency, capabilities=(NEEDS_PARENT,),
             better={"latency_batch1_speedup": "higher", "latency_large_speedup": "higher"})
    register("speed", speed, capabilities=(NEEDS_PARENT,),
             better={f"speed_{r}_{b}_{q}": "higher" for r in ("eager", "compile", "onnxruntime", "sparse_csr",
                                                                "semi_structured")
                     for b in ("batch1", "batch") for q in ("realized", "delivered")})
