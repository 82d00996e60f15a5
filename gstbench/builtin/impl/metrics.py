"""What the built-in metrics build: flatness, distribution shift, distance to the parent, cost and latency.

Registered, with their options, in gstbench/builtin/metrics.py; imported only when a cell builds one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from gstbench.builtin import flatness
from gstbench.engine.evaluation import eval_mode
from gstbench.components import Evaluated, MetricContext, TensorData
from gstbench.builtin.corruptions import CorruptionShifts


class _OnSample:
    """A metric measured on the fixed sample of the test set (eval mode, parameters untouched)."""

    def __init__(self, samples: int, sample_seed: int, chunk: int):
        if samples < 2 or chunk < 1:
            raise ValueError("samples must be >= 2 and chunk >= 1")
        self.samples, self.sample_seed, self.chunk = samples, sample_seed, chunk

    def _sample(self, ev: Evaluated, data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
        key = f"sample:{self.samples}:{self.sample_seed}"
        if key not in ev.memo:
            ev.memo[key] = flatness.fixed_sample(data.x_test, data.y_test, self.samples, self.sample_seed)
        return ev.memo[key]

    def _hessian(self, ev: Evaluated, data: TensorData) -> flatness.LossHessian:
        key = f"hessian:{self.samples}:{self.sample_seed}:{self.chunk}"
        if key not in ev.memo:
            ev.memo[key] = flatness.LossHessian(ev.model, *self._sample(ev, data), self.chunk)
        return ev.memo[key]

    def _lanczos(self, ev: Evaluated, data: TensorData, iterations: int) -> flatness.Lanczos:
        key = f"lanczos:{self.samples}:{self.sample_seed}:{self.chunk}:{iterations}"
        if key not in ev.memo:
            ev.memo[key] = flatness.lanczos(self._hessian(ev, data), iterations, self.sample_seed)
        return ev.memo[key]

    def _moments(self, ev: Evaluated, data: TensorData) -> tuple[float, float]:
        key = f"moments:{self.samples}:{self.sample_seed}"
        if key not in ev.memo:
            ev.memo[key] = flatness.gradient_moments(ev.model, *self._sample(ev, data), min(self.chunk, 64))
        return ev.memo[key]

    def _trace(self, ev: Evaluated, data: TensorData, probes: int, deflation: int) -> tuple[float, float]:
        key = f"trace:{self.samples}:{self.sample_seed}:{self.chunk}:{probes}:{deflation}"
        if key not in ev.memo:
            h = self._hessian(ev, data)
            if deflation:
                lz = self._lanczos(ev, data, deflation)
                ev.memo[key] = flatness.hutchinson_trace(h, probes, self.sample_seed + 1, lz.basis, sum(lz.alphas))
            else:
                ev.memo[key] = flatness.hutchinson_trace(h, probes, self.sample_seed + 1)
        return ev.memo[key]

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {"samples": self.samples, "sample_seed": self.sample_seed, "split": "test", "mode": "eval",
                "loss": "mean cross-entropy", **extra}

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        with eval_mode(ctx.model):
            return self.measure(ctx.subject, ctx.data)

    def measure(self, ev: Evaluated, data: TensorData) -> dict[str, Any]:
        raise NotImplementedError


class HessianTrace(_OnSample):
    def __init__(self, samples: int, probes: int, deflation: int, sample_seed: int, chunk: int):
        super().__init__(samples, sample_seed, chunk)
        if probes < 2:
            raise ValueError("probes must be >= 2 (the standard error needs two)")
        self.probes, self.deflation = probes, deflation

    def measure(self, ev: Evaluated, data: TensorData) -> dict[str, Any]:
        trace, se = self._trace(ev, data, self.probes, self.deflation)
        estimator = ("Hutchinson (Rademacher) on the complement of a Lanczos subspace, plus the trace on it"
                     if self.deflation else "Hutchinson (Rademacher)")
        return {"hessian_trace": trace, "hessian_trace_se": se,
                "hessian_trace_settings": self.settings(probes=self.probes, deflation=self.deflation,
                                                        estimator=estimator)}


class HessianTopK(_OnSample):
    def __init__(self, k: int, iterations: int, samples: int, sample_seed: int, chunk: int):
        super().__init__(samples, sample_seed, chunk)
        if not 1 <= k <= iterations:
            raise ValueError(f"k = {k} needs 1 <= k <= iterations ({iterations})")
        self.k, self.iterations = k, iterations

    def measure(self, ev: Evaluated, data: TensorData) -> dict[str, Any]:
        lz = self._lanczos(ev, data, self.iterations)
        top = lz.eigenvalues[:self.k]
        return {"hessian_topk": top, "hessian_topk_sum": sum(top), "hessian_top_eigenvalue": top[0],
                "hessian_topk_max_residual": max(lz.residuals[:self.k]),
                "hessian_topk_settings": self.settings(k=self.k, iterations=self.iterations,
                                                       method="Lanczos, full reorthogonalization")}


class GradientMoment(_OnSample):
    def __init__(self, centered: bool, samples: int, sample_seed: int, chunk: int):
        super().__init__(samples, sample_seed, chunk)
        self.centered = centered

    def measure(self, ev: Evaluated, data: TensorData) -> dict[str, Any]:
        second, centered = self._moments(ev, data)
        name = "grad_covariance_trace" if self.centered else "grad_second_moment"
        what = ("mean_i ||g_i - mean g||^2" if self.centered else "mean_i ||g_i||^2 (the paper's Tr(C))")
        return {name: centered if self.centered else second,
                f"{name}_settings": self.settings(definition=what, gradients="per example, torch.func")}


class TicProxy(_OnSample):
    def __init__(self, samples: int, probes: int, deflation: int, sample_seed: int, chunk: int):
        super().__init__(samples, sample_seed, chunk)
        self.probes, self.deflation = probes, deflation

    def measure(self, ev: Evaluated, data: TensorData) -> dict[str, Any]:
        trace, _ = self._trace(ev, data, self.probes, self.deflation)
        second, _ = self._moments(ev, data)
        return {"tic_proxy": second / trace if trace else None,
                "tic_proxy_settings": self.settings(definition="grad_second_moment / hessian_trace",
                                                    probes=self.probes, deflation=self.deflation)}


class EpsSharpness(_OnSample):
    def __init__(self, k: int, eps_min: float, eps_max: float, points: int, threshold: float, iterations: int,
                 samples: int, sample_seed: int, chunk: int):
        super().__init__(samples, sample_seed, chunk)
        if not 1 <= k <= iterations or points < 2 or not 0 < eps_min < eps_max or threshold <= 0:
            raise ValueError("eps-sharpness needs 1 <= k <= iterations, points >= 2, 0 < eps_min < eps_max and "
                             "threshold > 0")
        self.k, self.iterations, self.threshold = k, iterations, threshold
        self.radii = flatness.eps_grid(eps_min, eps_max, points)

    def measure(self, ev: Evaluated, data: TensorData) -> dict[str, Any]:
        lz = self._lanczos(ev, data, self.iterations)
        found = flatness.eps_sharpness(ev.model, *self._sample(ev, data), lz.eigenvectors[:self.k], self.radii,
                                       self.threshold)
        return {"eps_sharpness": found["eps"],
                "eps_sharpness_settings": self.settings(
                    k=self.k, threshold=self.threshold, iterations=self.iterations,
                    grid=f"{len(self.radii)} radii, log-spaced from {self.radii[0]:g} to {self.radii[-1]:g}, "
                         f"both signs", direction=found["direction"], sign=found["sign"],
                    base_loss=found["base_loss"], losses_evaluated=found["losses_evaluated"],
                    none_means="no grid point raised the loss by the threshold")}


# ---- distribution shift ----------------------------------------------------------------
def _shifts(data: TensorData, seed: int):
    if data.shifts is not None:
        return data.shifts
    if data.normalization is not None and data.x_test.dim() == 4:
        return CorruptionShifts(data.x_test, data.y_test, *data.normalization, seed=seed)
    return None


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    from gstbench.engine.evaluation import evaluate

    return evaluate(model, x.to(device), y.to(device))[0]


class OodAccuracy:
    def __init__(self, shifts: tuple[str, ...] | None, severities: tuple[int, ...], seed: int):
        if not severities or any(s not in (1, 2, 3, 4, 5) for s in severities):
            raise ValueError(f"severities {severities!r} must be a non-empty list of 1-5")
        self.names, self.severities, self.seed = shifts, tuple(severities), seed

    def check(self, data: TensorData, model: nn.Module) -> str | None:
        offered = _shifts(data, self.seed)
        if offered is None:
            return ("the dataset offers no shifted test sets, and its inputs are not normalized images "
                    "(image corruptions need (C, H, W) inputs and the dataset's normalization)")
        unknown = [n for n in (self.names or ()) if n not in offered.names]
        if unknown:
            return f"the dataset has no shift {', '.join(unknown)}; its shifts: {', '.join(offered.names)}"
        return None

    def accuracies(self, ev: Evaluated, data: TensorData, device: torch.device) -> dict[str, Any]:
        key = f"ood:{self.names}:{self.severities}:{self.seed}"
        if key not in ev.memo:
            offered = _shifts(data, self.seed)
            names = self.names or offered.names
            by_shift = {n: [_accuracy(ev.model, *offered.test_set(n, s), device) for s in self.severities]
                        for n in names}
            ev.memo[key] = {"nominal": _accuracy(ev.model, data.x_test, data.y_test, device), "shifted": by_shift}
        return ev.memo[key]

    def settings(self, data: TensorData) -> dict[str, Any]:
        offered = _shifts(data, self.seed)
        kind = "image corruptions (CIFAR-10-C style)" if isinstance(offered, CorruptionShifts) else \
            f"{type(offered).__name__}"
        return {"shifts": list(self.names or offered.names), "severities": list(self.severities), "seed": self.seed,
                "kind": kind}

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        acc = self.accuracies(ctx.subject, ctx.data, ctx.device)
        values = [a for accs in acc["shifted"].values() for a in accs]
        return {"ood_acc": acc["shifted"], "ood_acc_mean": sum(values) / len(values),
                "ood_nominal_acc": acc["nominal"], "ood_acc_settings": self.settings(ctx.data)}


class ExcessError(OodAccuracy):
    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        mine = self.accuracies(ctx.subject, ctx.data, ctx.device)
        parent = self.accuracies(ctx.parent, ctx.data, ctx.device)
        excess = {n: [((1 - a) - (1 - mine["nominal"])) - ((1 - pa) - (1 - parent["nominal"]))
                      for a, pa in zip(mine["shifted"][n], parent["shifted"][n])] for n in mine["shifted"]}
        values = [e for es in excess.values() for e in es]
        return {"excess_error": excess, "excess_error_mean": sum(values) / len(values),
                "parent_ood_acc": parent["shifted"], "parent_nominal_acc": parent["nominal"],
                "excess_error_settings": {**self.settings(ctx.data), "definition":
                                          "(err(D') - err(D)) - (err_parent(D') - err_parent(D))"}}


# ---- functional distance to the parent ----------------------------------------------------
def _agreement(models: tuple[nn.Module, nn.Module], x: torch.Tensor, eps: tuple[float, ...], seed: int) -> dict:
    """Top-1 agreement and softmax L2 / Linf distances of two models on ``x`` plus uniform noise in [-eps, eps]."""
    gen = torch.Generator().manual_seed(seed + 1)
    agree, l2, linf = {}, {}, {}
    with eval_mode(models[0]), eval_mode(models[1]):
        for e in eps:
            noisy = x + ((torch.rand(x.shape, generator=gen) * 2 - 1) * e).to(x.device)
            p, q = (F.softmax(m(noisy), dim=1) for m in models)
            key = f"{e:g}"
            agree[key] = float((p.argmax(1) == q.argmax(1)).float().mean())
            l2[key] = float((p - q).norm(dim=1).mean())
            linf[key] = float((p - q).abs().amax(dim=1).mean())
    n = len(eps)
    return {"agreement": agree, "agreement_mean": sum(agree.values()) / n, "softmax_l2": l2,
            "softmax_l2_mean": sum(l2.values()) / n, "softmax_linf": linf, "softmax_linf_mean": sum(linf.values()) / n}


class FunctionalDistance:
    def __init__(self, eps: tuple[float, ...], samples: int, seed: int, against: str = "unpruned parent"):
        if not eps or any(e < 0 for e in eps):
            raise ValueError(f"eps {eps!r} must be a non-empty list of values >= 0")
        self.eps, self.samples, self.seed, self.against = tuple(float(e) for e in eps), samples, seed, against

    def settings(self) -> dict[str, Any]:
        return {"eps": list(self.eps), "samples": self.samples, "seed": self.seed,
                "noise": "uniform in [-eps, eps] on normalized inputs", "against": self.against}

    @torch.no_grad()
    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        x, _ = flatness.fixed_sample(ctx.data.x_test, ctx.data.y_test, self.samples, self.seed)
        v = _agreement((ctx.model, ctx.parent.model), x, self.eps, self.seed)
        return {"functional_agreement": v["agreement"], "functional_agreement_mean": v["agreement_mean"],
                **{k: v[k] for k in ("softmax_l2", "softmax_l2_mean", "softmax_linf", "softmax_linf_mean")},
                "functional_distance_settings": self.settings()}


class IndependentAgreement(FunctionalDistance):
    @torch.no_grad()
    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        x, _ = flatness.fixed_sample(ctx.data.x_test, ctx.data.y_test, self.samples, self.seed)
        v = _agreement((ctx.parent.model, ctx.independent.model), x, self.eps, self.seed)
        return {"independent_agreement": v["agreement"], "independent_agreement_mean": v["agreement_mean"],
                "independent_softmax_l2_mean": v["softmax_l2_mean"],
                "independent_softmax_linf_mean": v["softmax_linf_mean"],
                "independent_agreement_settings": self.settings()}


# ---- cost ---------------------------------------------------------------------------------
def slim_network(ctx: MetricContext) -> tuple[nn.Module, int]:
    """The measured model with its dead filters physically removed, and how many: built once per model
    (``cost`` and ``latency`` share it through the memo)."""
    from gstbench.pruning import without_dead_filters

    if "slim" not in ctx.subject.memo:
        ctx.subject.memo["slim"] = without_dead_filters(ctx.model, ctx.data.x_test[:1])
    return ctx.subject.memo["slim"]


class Cost:
    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        import torch_pruning as tp

        from gstbench.builtin.speed import counted_ops

        model, example = ctx.model, ctx.data.x_test[:1]
        with eval_mode(model):
            macs, params = counted_ops(model, example)
        # A masked filter still costs compute in the dense model; the deployed model drops it.
        slim, removed = slim_network(ctx)
        with eval_mode(slim):
            macs_slim, params_slim = counted_ops(slim, example)
        return {"macs": int(macs), "params_counted": int(params), "macs_without_dead_filters": int(macs_slim),
                "params_without_dead_filters": int(params_slim), "dead_filters_removed": removed,
                "cost_settings": {"counter": f"torch-pruning {tp.__version__} count_ops_and_params",
                                  "input": list(example.shape),
                                  "dead filter": "conv filter all zero and its BatchNorm gamma and beta zero"}}


# ---- latency --------------------------------------------------------------------------------
class Latency:
    def __init__(self, large_batch: int, warmup: int, repeats: int):
        if large_batch < 2 or warmup < 0 or repeats < 3:
            raise ValueError("latency needs large_batch >= 2, warmup >= 0 and repeats >= 3")
        self.large_batch, self.warmup, self.repeats = large_batch, warmup, repeats

    def compute(self, ctx: MetricContext) -> dict[str, Any]:
        from gstbench.builtin import latency

        slim, removed = slim_network(ctx)
        timed = latency.compare(slim, ctx.parent.model, ctx.data.x_test, {"batch1": 1, "large": self.large_batch},
                                self.warmup, self.repeats)
        out: dict[str, Any] = {}
        for label, t in timed.items():
            out[f"latency_{label}_ms"] = t["pruned_ms"]["median"]
            out[f"latency_{label}_parent_ms"] = t["parent_ms"]["median"]
            out[f"latency_{label}_speedup"] = t["speedup"]
        out["latency_spread_ms"] = {label: {"pruned_iqr": t["pruned_ms"]["iqr"], "parent_iqr": t["parent_ms"]["iqr"],
                                            "pruned_min": t["pruned_ms"]["min"], "parent_min": t["parent_ms"]["min"]}
                                    for label, t in timed.items()}
        out["latency_settings"] = {
            "batches": {"batch1": 1, "large": self.large_batch}, "warmup": self.warmup, "repeats": self.repeats,
            "device": str(ctx.device), "device_name": device_name(ctx.device), "threads": torch.get_num_threads(),
            "precision": "fp32, no autocast", "dead_filters_removed": removed,
            "statistic": "median of repeats (spread: interquartile range); speedup = parent median / pruned median",
            "order": "pruned and parent take turns, warm-up passes first",
            "pruned": "dead filters physically removed (torch-pruning)", "parent": "the unpruned parent"}
        return out


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name (Linux), so a latency says what it ran on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        import platform

        return platform.processor() or platform.machine()
