"""SNIP, GraSP and SynFlow checked against independent computations on tiny float64 models:
SNIP against |w * g| with g from finite differences, SynFlow against the closed form of its
product of absolute weights, GraSP against an explicit Hessian."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from gstbench.builtin import scorers
from gstbench.builtin.models import cnn1d
from gstbench.components import PrunableLayer, PruningContext, TensorData
from gstbench.pruning import layer_states

L = 5  # signal length of the tiny linear network


class TinyLinear(nn.Module):
    """Two 1x1 convolutions and a linear layer, no biases: SynFlow's R has a closed form on it."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 3, 1, bias=False)
        self.conv2 = nn.Conv1d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4 * L, 2, bias=False)
        self.prunable_layers = {"conv1": PrunableLayer("conv1"), "conv2": PrunableLayer("conv2")}

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def _context(model: nn.Module, x: torch.Tensor, y: torch.Tensor, classes: int) -> PruningContext:
    return PruningContext(model, None, x[:2], torch.Generator().manual_seed(0), data=TensorData(x, y, x, y, classes),
                          batch_seed=3)


@pytest.mark.parametrize("granularity", ["filters", "weights"])
def test_snip_is_weight_times_the_finite_difference_gradient(granularity):
    torch.manual_seed(0)
    model = cnn1d((1, 40), 10).double()
    x, y = torch.randn(64, 1, 40, dtype=torch.float64), torch.randint(0, 10, (64,))
    ctx = _context(model, x, y, 10)
    layer = layer_states(model, ["conv2"], granularity)["conv2"]
    scores = scorers.snip(batch_size=32).score(layer, ctx)
    xb, yb = ctx.training_batch(32)
    model.eval()
    w = layer.conv.weight.data
    checked = 4  # filters checked by finite differences (each of their weights)
    grad = torch.zeros_like(w[:checked])
    h = 1e-6
    with torch.no_grad():
        for at in np.ndindex(*grad.shape):
            keep = w[at].item()
            w[at] = keep + h
            up = F.cross_entropy(model(xb), yb).item()
            w[at] = keep - h
            down = F.cross_entropy(model(xb), yb).item()
            w[at] = keep
            grad[at] = (up - down) / (2 * h)
    expected = (w[:checked] * grad).abs()
    expected = expected if granularity == "weights" else expected.flatten(1).sum(1)
    scores = scores[:checked]
    torch.testing.assert_close(scores.double(), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("granularity", ["filters", "weights"])
def test_synflow_is_the_product_of_absolute_weights_closed_form(granularity):
    torch.manual_seed(1)
    model = TinyLinear().double()
    ctx = _context(model, torch.randn(4, 2, L, dtype=torch.float64), torch.randint(0, 2, (4,)), 2)
    w1, w2, fc = (m.weight.detach().abs().numpy() for m in (model.conv1, model.conv2, model.fc))
    w1, w2 = w1[:, :, 0], w2[:, :, 0]
    # R = sum_o sum_{c,l} |F[o, c L + l]| a2[c], a2[c] = sum_j |W2[c, j]| a1[j], a1[j] = sum_i |W1[j, i]| * 1
    a1 = w1.sum(1)
    f_c = np.array([sum(fc[o, c * L + l] for o in range(2) for l in range(L)) for c in range(4)])
    d_w2 = np.array([[f_c[c] * a1[j] for j in range(3)] for c in range(4)])
    d_w1 = np.array([[sum(f_c[c] * w2[c, j] for c in range(4)) for i in range(2)] for j in range(3)])
    for name, weights, derivative in (("conv1", w1, d_w1), ("conv2", w2, d_w2)):
        layer = layer_states(model, [name], granularity)[name]
        expected = torch.from_numpy(weights * derivative).unsqueeze(-1)
        expected = expected if granularity == "weights" else expected.flatten(1).sum(1)
        torch.testing.assert_close(scorers.synflow().score(layer, ctx).double(), expected, rtol=1e-5, atol=0)


class TinyBatchNorm(nn.Module):
    """TinyLinear with a BatchNorm after conv1: SynFlow's linearisation must make its running mean positive too."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(2, 3, 1, bias=False)
        self.bn1 = nn.BatchNorm1d(3)
        self.conv2 = nn.Conv1d(3, 4, 1, bias=False)
        self.fc = nn.Linear(4 * L, 2, bias=False)
        self.prunable_layers = {"conv1": PrunableLayer("conv1", "bn1"), "conv2": PrunableLayer("conv2")}

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x))))).flatten(1))


def test_synflow_makes_batchnorm_running_statistics_positive_as_the_official_linearize_does():
    """The official code's linearize takes abs_ of every state_dict entry: eval-mode BatchNorm is then
    (x - |mean|) / sqrt(|var| + eps) * |gamma| + |beta|; the closed form below, on a negative running mean."""
    torch.manual_seed(4)
    model = TinyBatchNorm().double()
    with torch.no_grad():
        model.bn1.running_mean.copy_(torch.tensor([-0.2, -0.1, -0.05], dtype=torch.float64))
        model.bn1.running_var.copy_(torch.tensor([0.5, 2.0, 1.5], dtype=torch.float64))
        model.bn1.weight.copy_(torch.tensor([-1.5, 0.7, 1.1], dtype=torch.float64))
        model.bn1.bias.copy_(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    ctx = _context(model, torch.randn(4, 2, L, dtype=torch.float64), torch.randint(0, 2, (4,)), 2)
    w1, w2, fc = (m.weight.detach().abs().numpy() for m in (model.conv1, model.conv2, model.fc))
    w1, w2 = w1[:, :, 0], w2[:, :, 0]
    bn = model.bn1
    mean, var = bn.running_mean.abs().numpy(), bn.running_var.abs().numpy()
    gamma, beta = bn.weight.detach().abs().numpy(), bn.bias.detach().abs().numpy()
    a1 = w1.sum(1)
    h = (a1 - mean) / np.sqrt(var + bn.eps) * gamma + beta
    assert (h > 0).all()  # every unit active: R is linear in conv2's weights
    f_c = np.array([sum(fc[o, c * L + l] for o in range(2) for l in range(L)) for c in range(4)])
    expected = torch.from_numpy(w2 * np.outer(f_c, h)).unsqueeze(-1).flatten(1).sum(1)
    layer = layer_states(model, ["conv2"])["conv2"]
    torch.testing.assert_close(scorers.synflow().score(layer, ctx).double(), expected, rtol=1e-5, atol=0)
    assert model.bn1.running_mean.min() < 0  # the model itself is left as it was


@pytest.mark.parametrize("granularity", ["filters", "weights"])
def test_grasp_is_theta_times_the_explicit_hessian_times_the_gradient(granularity):
    torch.manual_seed(2)
    model = TinyLinear().double()
    x, y = torch.randn(16, 2, L, dtype=torch.float64), torch.randint(0, 2, (16,))
    ctx = _context(model, x, y, 2)
    temperature = 3.0
    layer = layer_states(model, ["conv2"], granularity)["conv2"]
    scores = scorers.grasp(batch_size=8, temperature=temperature).score(layer, ctx)
    xb, yb = ctx.training_batch(8)
    names = ["conv1.weight", "conv2.weight", "fc.weight"]
    shapes = [dict(model.named_parameters())[n].shape for n in names]
    theta = torch.cat([dict(model.named_parameters())[n].detach().flatten() for n in names])

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts, start = {}, 0
        for n, shape in zip(names, shapes):
            parts[n] = flat[start:start + shape.numel()].view(shape)
            start += shape.numel()
        return F.cross_entropy(torch.func.functional_call(model, parts, (xb,)) / temperature, yb)

    g = torch.func.grad(loss)(theta)
    hessian = torch.func.hessian(loss)(theta)
    hg = hessian @ g
    start = shapes[0].numel()
    conv2 = slice(start, start + shapes[1].numel())
    expected = (theta[conv2] * hg[conv2]).view(shapes[1])
    expected = expected if granularity == "weights" else expected.flatten(1).sum(1)
    torch.testing.assert_close(scores.double(), expected, rtol=1e-6, atol=1e-12)
