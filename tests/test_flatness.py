"""Flatness metrics against exact answers on a tiny model: the full Hessian, a slow per-example loop, a full grid."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian
from torch.nn import functional as F

from gstbench.builtin import flatness
from gstbench.engine.evaluation import eval_mode
from gstbench.components import Evaluated, MetricContext, TensorData

FLATNESS = ["hessian-trace", "hessian-topk", "grad-second-moment", "grad-covariance-trace", "tic-proxy",
            "eps-sharpness"]


@pytest.fixture(scope="module")
def tiny():
    """A trained conv + BatchNorm + linear model (123 parameters) and 64 examples."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(32, 3))
    x, y = torch.randn(64, 1, 8), torch.randint(0, 3, (64,))
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(200):  # train mode: BN running statistics move away from their init
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    data = TensorData(x, y, x, y, num_classes=3)
    return model, data


def exact_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The full Hessian of the mean loss in float64, eval mode, by torch.func.hessian."""
    twin = copy.deepcopy(model).double().eval()
    named = [(n, p) for n, p in twin.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in named])
    buffers = dict(twin.named_buffers())

    def loss(v):
        parts = v.split([p.numel() for _, p in named])
        params = {n: t.view_as(p) for (n, p), t in zip(named, parts)}
        return F.cross_entropy(functional_call(twin, {**params, **buffers}, (x.double(),)), y)

    return hessian(loss)(flat)


def compute(registry, name: str, model, data, **options) -> dict:
    metric = registry.get("metrics", name).factory(**options)
    return metric.compute(MetricContext(Evaluated(model), data, torch.device("cpu")))


def test_hutchinson_within_5_percent_of_exact_trace_at_defaults(registry, tiny):
    model, data = tiny
    exact = float(exact_hessian(model, data.x_test, data.y_test).trace())
    out = compute(registry, "hessian-trace", model, data)
    assert abs(out["hessian_trace"] - exact) / abs(exact) < 0.05
    assert out["hessian_trace_se"] > 0
    assert out["hessian_trace_settings"]["probes"] == 8 and out["hessian_trace_settings"]["mode"] == "eval"


def test_plain_hutchinson_is_unbiased_within_its_standard_error(registry, tiny):
    model, data = tiny
    exact = float(exact_hessian(model, data.x_test, data.y_test).trace())
    out = compute(registry, "hessian-trace", model, data, deflation=0, probes=300)
    assert abs(out["hessian_trace"] - exact) < 4 * out["hessian_trace_se"]
    assert out["hessian_trace_se"] / exact < 0.1  # a real estimate, not a lucky wide one


def test_topk_eigenvalues_match_eigvalsh_of_the_exact_hessian(registry, tiny):
    model, data = tiny
    exact = torch.linalg.eigvalsh(exact_hessian(model, data.x_test, data.y_test)).flip(0)[:5].tolist()
    out = compute(registry, "hessian-topk", model, data, k=5, iterations=40)
    assert out["hessian_topk"] == pytest.approx(exact, rel=1e-3)
    assert out["hessian_topk_sum"] == pytest.approx(sum(exact), rel=1e-3)
    assert out["hessian_topk_max_residual"] < 1e-2 * exact[0]
    # Defaults (16 steps) already get the top eigenvalue.
    assert compute(registry, "hessian-topk", model, data)["hessian_top_eigenvalue"] == pytest.approx(exact[0], rel=1e-3)


def test_gradient_moments_match_a_slow_per_example_loop(registry, tiny):
    model, data = tiny
    twin = copy.deepcopy(model).eval()
    grads = []
    for i in range(data.x_test.shape[0]):
        twin.zero_grad()
        F.cross_entropy(twin(data.x_test[i:i + 1]), data.y_test[i:i + 1]).backward()
        grads.append(torch.cat([p.grad.flatten() for p in twin.parameters()]).double())
    g = torch.stack(grads)
    second = float(g.pow(2).sum(1).mean())
    centered = float((g - g.mean(0)).pow(2).sum(1).mean())
    assert compute(registry, "grad-second-moment", model, data, chunk=7)["grad_second_moment"] == \
        pytest.approx(second, rel=1e-5)
    assert compute(registry, "grad-covariance-trace", model, data)["grad_covariance_trace"] == \
        pytest.approx(centered, rel=1e-5)
    tic = compute(registry, "tic-proxy", model, data)
    trace = compute(registry, "hessian-trace", model, data)["hessian_trace"]
    assert tic["tic_proxy"] == pytest.approx(second / trace, rel=1e-5)


def test_eps_sharpness_finds_the_first_crossing_of_a_full_grid_scan(registry, tiny):
    model, data = tiny
    out = compute(registry, "eps-sharpness", model, data, k=3, threshold=0.05)
    with eval_mode(model):
        lz = flatness.lanczos(flatness.LossHessian(model, data.x_test, data.y_test, 512), 16, 0)
        radii = flatness.eps_grid(0.001, 0.4, 40)
        base = flatness.loss_at(model, data.x_test, data.y_test)
        crossing = [r for r in radii for d in lz.eigenvectors[:3] for sign in (1, -1)
                    if flatness.loss_at(model, data.x_test, data.y_test, sign * r * d) - base >= 0.05]
    assert out["eps_sharpness"] == pytest.approx(min(crossing))
    assert out["eps_sharpness_settings"]["losses_evaluated"] < 3 * 2 * 40  # bisection, not a full scan
    # A threshold out of reach reports None, not a number.
    assert compute(registry, "eps-sharpness", model, data, threshold=1e6)["eps_sharpness"] is None


def test_flatness_metrics_leave_the_model_as_they_found_it(registry, tiny):
    model, data = tiny
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    values = {}
    subject = Evaluated(model)  # one memo: the metrics share the sample, the Hessian and the Lanczos run
    for name in FLATNESS:
        metric = registry.get("metrics", name).factory()
        values.update(metric.compute(MetricContext(subject, data, torch.device("cpu"))))
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # BN running statistics and weights untouched
    for name in ("hessian_trace", "hessian_topk", "grad_second_moment", "grad_covariance_trace", "tic_proxy",
                 "eps_sharpness"):
        assert f"{name}_settings" in values and values[f"{name}_settings"]["samples"] == 128
    assert all(math.isfinite(values[k]) for k in ("hessian_trace", "grad_second_moment", "tic_proxy"))


def test_unused_parameters_get_zero_curvature_instead_of_a_failure(registry, tiny):
    model, data = tiny

    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = copy.deepcopy(model)
            self.unused = nn.Linear(3, 3)  # pyhessian fails on this

        def forward(self, x):
            return self.body(x)

    wrapped = WithUnused()
    a = compute(registry, "hessian-trace", wrapped, data)["hessian_trace"]
    b = compute(registry, "hessian-trace", model, data)["hessian_trace"]
    assert a == pytest.approx(b, rel=0.05)
