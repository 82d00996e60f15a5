"""Flatness of the loss at the trained weights: Hessian trace and top eigenvalues, gradient moments, sharpness.

Every quantity is of the mean cross-entropy over a fixed sample (REFERENCE.md section 1),
with the model in eval mode: BatchNorm normalizes with its running statistics, which stay
untouched, and the model's parameters are never written (perturbed losses go through
``torch.func.functional_call``). Built on ``torch.autograd.grad`` and ``torch.func``; no
pyhessian (unmaintained, breaks on current torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F


def fixed_sample(x: torch.Tensor, y: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``size`` examples for every cell: a seeded permutation's first ``size`` (all if fewer)."""
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:size].to(x.device)
    return x[order], y[order]


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


class LossHessian:
    """Hessian-vector products of the mean loss over (x, y), on flat float32 vectors.

    With one chunk the gradient graph is built once and reused by every product; with
    several (``chunk`` < samples, to bound memory on big models) each product rebuilds it
    chunk by chunk. Parameters the loss does not reach get zero rows (no failure).
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int):
        self.model = model
        self.params = [p for _, p in trainable(model)]
        self.size = sum(p.numel() for p in self.params)
        self.n = x.shape[0]
        self.chunks = [(x[i:i + chunk], y[i:i + chunk]) for i in range(0, self.n, chunk)]
        self.products = 0
        self._graph = self._gradient(*self.chunks[0]) if len(self.chunks) == 1 else None

    def _gradient(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        loss = F.cross_entropy(self.model(x), y)
        return torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True, materialize_grads=True)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        parts = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in self.params]), self.params)]
        out = torch.zeros_like(v)
        for x, y in self.chunks:
            g = self._graph if self._graph is not None else self._gradient(x, y)
            hv = torch.autograd.grad(g, self.params, grad_outputs=parts, retain_graph=self._graph is not None,
                                     allow_unused=True, materialize_grads=True)
            out += torch.cat([h.reshape(-1) for h in hv]).detach() * (x.shape[0] / self.n)
        self.products += 1
        return out


@dataclass
class Lanczos:
    """``iterations`` Lanczos steps (full reorthogonalization) from a seeded start vector.

    ``basis`` holds the orthonormal Krylov vectors (rows), ``alphas`` their Rayleigh
    quotients v_i^T H v_i (exact, so their sum is the trace of H on the subspace), and the
    Ritz pairs come from the tridiagonal matrix, largest first, with their residual norms
    ||H u - theta u|| as the convergence check.
    """

    basis: torch.Tensor
    alphas: list[float]
    betas: list[float]
    eigenvalues: list[float]
    eigenvectors: torch.Tensor  # rows, unit norm, same order as eigenvalues
    residuals: list[float]


def lanczos(hessian: LossHessian, iterations: int, seed: int) -> Lanczos:
    n = hessian.size
    m = min(iterations, n)
    device = hessian.params[0].device
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(n, generator=gen).to(device)
    v /= v.norm()
    basis = torch.zeros(m, n, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    beta = 0.0
    for j in range(m):
        basis[j] = v
        w = hessian.matvec(v)
        alphas.append(float(w @ v))
        done = basis[:j + 1]
        for _ in range(2):  # twice is enough for orthogonality to working precision
            w -= done.T @ (done @ w)
        beta = float(w.norm())
        if j + 1 == m or beta <= 1e-7 * max(1.0, abs(alphas[-1])):  # invariant subspace: exact from here
            break
        betas.append(beta)
        v = w / beta
    k = len(alphas)
    basis = basis[:k]
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if k > 1:
        off = torch.tensor(betas[:k - 1], dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    theta, s = torch.linalg.eigh(t)
    order = torch.argsort(theta, descending=True)
    theta, s = theta[order], s[:, order]
    vectors = (s.T.to(basis.dtype).to(device) @ basis)
    vectors /= vectors.norm(dim=1, keepdim=True)
    residuals = (abs(beta) * s[-1].abs()).tolist()
    return Lanczos(basis, alphas, betas[:k - 1], theta.tolist(), vectors, residuals)


def hutchinson_trace(hessian: LossHessian, probes: int, seed: int,
                     deflate: torch.Tensor | None = None, deflated_trace: float = 0.0) -> tuple[float, float]:
    """Tr(H) with its standard error: Rademacher probes z, E[z^T H z] = Tr(H).

    With ``deflate`` (orthonormal rows Q, e.g. a Lanczos basis, and ``deflated_trace`` =
    Tr(Q H Q^T)), the probes run on the complement: Tr(H) = Tr(Q H Q^T) + E[w^T H w] with
    w = (I - Q^T Q) z. Still unbiased; the variance drops by the top of the spectrum, which
    dominates it for trained networks (the idea of Hutch++, Meyer et al. 2021).
    """
    gen = torch.Generator().manual_seed(seed)
    device = hessian.params[0].device
    samples = []
    for _ in range(probes):
        z = (torch.randint(0, 2, (hessian.size,), generator=gen) * 2 - 1).to(device, torch.float32)
        if deflate is not None and deflate.shape[0]:
            z = z - deflate.T @ (deflate @ z)
        samples.append(float(z @ hessian.matvec(z)))
    mean = sum(samples) / probes
    se = math.sqrt(sum((s - mean) ** 2 for s in samples) / (probes - 1) / probes) if probes > 1 else float("nan")
    return deflated_trace + mean, se


def gradient_moments(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int) -> tuple[float, float]:
    """(mean_i ||g_i||^2, mean_i ||g_i - g_mean||^2) of the per-example loss gradients (torch.func)."""
    names = [n for n, _ in trainable(model)]
    params = {n: p.detach() for n, p in trainable(model)}
    fixed = {n: t for n, t in model.state_dict(keep_vars=True).items() if n not in params}

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, {**fixed, **p}, (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0))
    squares = torch.zeros((), dtype=torch.float64, device=x.device)
    total = {n: torch.zeros_like(params[n], dtype=torch.float64) for n in names}
    for i in range(0, x.shape[0], chunk):
        g = per_example(params, x[i:i + chunk], y[i:i + chunk])
        for n in names:
            gn = g[n].double()
            squares += gn.pow(2).sum()
            total[n] += gn.sum(0)
    count = x.shape[0]
    second = float(squares) / count
    mean_norm = float(sum((t / count).pow(2).sum() for t in total.values()))
    return second, second - mean_norm


def loss_at(model: nn.Module, x: torch.Tensor, y: torch.Tensor, shift: torch.Tensor | None = None) -> float:
    """The mean loss at the parameters plus ``shift`` (a flat vector); the model itself is not written."""
    named = trainable(model)
    params = {n: p.detach() for n, p in named}
    if shift is not None:
        parts = shift.split([p.numel() for _, p in named])
        params = {n: p + d.view_as(p) for (n, p), d in zip(params.items(), parts)}
    fixed = {n: t for n, t in model.state_dict(keep_vars=True).items() if n not in params}
    with torch.no_grad():
        return float(F.cross_entropy(functional_call(model, {**fixed, **params}, (x,)), y))


def eps_grid(eps_min: float, eps_max: float, points: int) -> list[float]:
    """``points`` radii from ``eps_min`` to ``eps_max``, evenly spaced in log: resolves sharp and flat minima alike."""
    ratio = (eps_max / eps_min) ** (1 / (points - 1))
    return [eps_min * ratio ** i for i in range(points - 1)] + [eps_max]


def eps_sharpness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, directions: torch.Tensor,
                  radii: list[float], threshold: float) -> dict[str, object]:
    """The smallest radius on the grid at which the loss along +-direction rises by ``threshold``.

    Each ray (direction, sign) is searched by bisection over the grid, so the answer is the
    ray's first crossing when the loss rises monotonically along it up to there. A ray is
    only searched below the best radius found so far: one evaluation rules most rays out.
    None when no ray gets there within the grid.
    """
    base = loss_at(model, x, y)
    best: int | None = None  # index into radii
    where: tuple[int, int] | None = None
    evaluated = 0

    def crosses(d: torch.Tensor, i: int) -> bool:
        nonlocal evaluated
        evaluated += 1
        return loss_at(model, x, y, radii[i] * d) - base >= threshold

    for j, direction in enumerate(directions):
        for sign in (1, -1):
            d = sign * direction
            hi = len(radii) - 1 if best is None else best - 1  # only a smaller radius would change the answer
            if hi < 0 or not crosses(d, hi):
                continue
            lo = -1  # invariant: radii[hi] crosses, radii[lo] (if any) does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if crosses(d, mid):
                    hi = mid
                else:
                    lo = mid
            best, where = hi, (j, sign)
    return {"eps": None if best is None else radii[best], "direction": where and where[0],
            "sign": where and where[1], "base_loss": base, "losses_evaluated": evaluated}
