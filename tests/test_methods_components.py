"""HRank, soft filter pruning and the training-time regularizers, each checked against an independent computation:
HRank against torch.linalg.matrix_rank of each feature map taken one by one, the regularizers against their
closed-form gradients, soft pruning against its definition (units regrow between events, the last pick stays)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from gstbench import load_model
from gstbench.builtin import regularizers, scorers
from gstbench.builtin.impl.effectors import SoftEffector
from gstbench.builtin.models import cnn1d
from gstbench.components import PrunableLayer, PruningContext, TensorData
from gstbench.engine import run_cell
from gstbench.plan.parse import cell_from_config
from gstbench.plugins import Registry
from gstbench.pruning import layer_states
from gstbench.testing import check_effector, check_regularizer, check_scorer
from gstbench.testing.forkserver import run_gstbench

from conftest import train_steps


class Tiny2d(nn.Module):
    """conv-BN-ReLU on 6x6 images: HRank's 2-D maps, ranked per example."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(5)
        self.fc = nn.Linear(5 * 36, 3)
        self.prunable_layers = {"conv": PrunableLayer("conv", "bn")}

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().flatten(1))


def _ctx(model, x, y, classes):
    return PruningContext(model, None, x[:2], torch.Generator().manual_seed(0), data=TensorData(x, y, x, y, classes),
                          batch_seed=5, step=7)


def test_hrank_2d_is_the_mean_matrix_rank_of_each_examples_feature_map():
    torch.manual_seed(0)
    model = Tiny2d()
    with torch.no_grad():  # two filters that give low-rank maps: a zero filter and one reading a constant channel
        model.conv.weight[1] = 0
        model.conv.weight[3] = 0
        model.conv.weight[3, 0, 1, 1] = 1.0
    x = torch.randn(40, 2, 6, 6)
    x[:, 0] = torch.randn(40, 1, 1)  # channel 0 constant over each image: filter 3's map has rank 1 per example
    y = torch.randint(0, 3, (40,))
    ctx = _ctx(model, x, y, 3)
    layer = layer_states(model, ["conv"])["conv"]
    scores = scorers.hrank(examples=16).score(layer, ctx)
    xb, _ = ctx.training_batch(16)
    model.eval()
    with torch.no_grad():
        maps = model.bn(model.conv(xb)).relu()
    expected = torch.tensor([[float(torch.linalg.matrix_rank(maps[n, c])) for c in range(5)]
                             for n in range(16)]).mean(0)
    assert torch.allclose(scores, expected.float())
    assert scores[1] == 0 and scores[3] <= 1 and scores[[0, 2, 4]].min() > 3
    assert model.bn.running_mean.abs().sum() == 0  # eval mode: the statistics stayed put


def test_hrank_keeps_the_float32_rank_tolerance_of_the_papers_code():
    """A rank-2 map computed in float32 carries float32 rounding: at float64's tolerance it reads full rank."""
    from gstbench.builtin.impl.scorers import feature_map_ranks

    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(4, 3, 32, 2, generator=g), torch.randn(4, 3, 2, 32, generator=g)
    maps = (u @ v).float()  # (N, C, 32, 32), each of rank 2
    assert feature_map_ranks(maps).tolist() == [2.0, 2.0, 2.0]
    assert float(torch.linalg.matrix_rank(maps.double()).float().mean()) > 2  # the tolerance the paper did not use


def test_hrank_is_refused_on_1d_signals_in_one_line_naming_the_key(tmp_path):
    proc = run_gstbench("run", "--suite", "smoke", "--scorer", "hrank", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "prune.scorer" in lines[0] and "2-D feature maps" in lines[0]
    assert "Traceback" not in proc.stderr and not (tmp_path / "r" / "cells").exists()


def test_the_new_components_meet_the_kit_contracts():
    registry = Registry(installed=False)
    check_scorer(registry.get("scorers", "hrank"))
    check_effector(registry.get("effectors", "soft"))
    for name in ("l1-bn-gamma", "group-lasso"):
        check_regularizer(registry.get("regularizers", name))


def test_l1_bn_gamma_gradient_is_strength_times_sign_of_gamma():
    torch.manual_seed(0)
    model = cnn1d((1, 40), 10)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))
    with torch.no_grad():
        bn.weight.normal_()
        bn.weight[2] = 0.0  # the subgradient at 0 is 0
    penalty = regularizers.l1_bn_gamma(strength=0.03).penalty(model)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert float(penalty.detach()) == pytest.approx(0.03 * sum(float(m.weight.detach().abs().sum()) for m in bns))
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv1d))
    grads = torch.autograd.grad(penalty, [m.weight for m in bns] + [conv.weight], allow_unused=True)
    for m, g in zip(bns, grads):
        assert torch.allclose(g, 0.03 * torch.sign(m.weight.detach()))
    assert grads[-1] is None  # nothing but gamma is penalized


def test_group_lasso_gradient_is_strength_times_each_filter_over_its_norm():
    torch.manual_seed(0)
    model = cnn1d((1, 40), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    with torch.no_grad():
        convs[1].weight[4] = 0.0  # a zero filter: gradient 0, not NaN
    penalty = regularizers.group_lasso(strength=0.5).penalty(model)
    expected = 0.5 * sum(float(w.flatten(1).norm(dim=1).sum()) for w in (m.weight.detach() for m in convs))
    assert float(penalty.detach()) == pytest.approx(expected, rel=1e-6)
    grads = torch.autograd.grad(penalty, [m.weight for m in convs])
    for m, g in zip(convs, grads):
        w = m.weight.detach()
        norms = w.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *([1] * (w.dim() - 1)))
        assert torch.allclose(g, 0.5 * w / norms, atol=1e-7)
    assert torch.count_nonzero(grads[1][4]) == 0 and torch.isfinite(grads[1]).all()


def test_soft_pruned_filters_regrow_and_harden_keeps_the_last_pick_pruned():
    torch.manual_seed(0)
    model = cnn1d((1, 40), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 1, 40), torch.randint(0, 10, (64,))
    layer = layer_states(model, ["conv3"])["conv3"]
    ctx = PruningContext(model, opt, x[:2], torch.Generator().manual_seed(0))
    soft = SoftEffector()
    picked = torch.tensor([1, 4, 9])
    with torch.no_grad():  # a zeroed filter regrows through a ReLU that passes its BatchNorm's beta > 0
        layer.bn.bias[picked] = 0.1
    layer.alive[picked] = False
    soft.apply(layer, picked, ctx)
    assert torch.count_nonzero(layer.conv.weight[picked]) == 0
    train_steps(model, opt, x, y, 2, soft.after_step)
    assert torch.count_nonzero(layer.conv.weight[picked]) > 0  # they train on: soft, not masked
    soft.harden(layer, ctx)
    train_steps(model, opt, x, y, 3, soft.after_step)
    assert torch.count_nonzero(layer.conv.weight[picked]) == 0
    assert torch.count_nonzero(layer.bn.weight[picked]) == torch.count_nonzero(layer.bn.bias[picked]) == 0


def test_a_soft_cell_re_picks_its_whole_share_at_each_event_and_ends_pruned():
    registry = Registry(installed=False)
    cfg = {"model": {"name": "cnn1d", "channels": [8, 16, 16, 16]},
           "dataset": {"name": "mnist1d", "num_samples": 600, "train_split": 0.5},
           "train": {"epochs": 4, "batch_size": 64},
           "prune": {"scorer": "l2", "target": "smallest", "effector": "soft", "start": "1ep", "end": "3ep",
                     "period": "1ep", "layers": {"conv3": {"fraction": 0.5}}}}
    result = run_cell(cell_from_config(cfg, 0, registry), registry)
    assert result.status == "ok", result.traceback
    picks = [e.layers["conv3"] for e in result.events]
    # 16 filters, 50% in 3 events (14, 11 and 8 left, plan/schedule.py), each event picking the whole share so far
    assert [p.count for p in picks] == [2, 5, 8]
    assert result.metrics["remaining_filters"] == {"conv3": 8}


def test_a_penalized_run_ends_with_sparser_gammas_and_is_another_cell(tmp_path):
    suite = tmp_path / "slim.toml"
    suite.write_text('''
name = "slim"
seeds = 1
[base]
model = { name = "cnn1d", channels = [8, 16, 16, 16] }
dataset = { name = "mnist1d", num_samples = 600, train_split = 0.5 }
prune = false
[base.train]
epochs = 4
batch_size = 32
lr = 0.02
[axes]
"train.regularizer" = ["none", { name = "l1-bn-gamma", strength = 0.05 }]
[scales.quick]
''')
    out = tmp_path / "run"
    done = run_gstbench("run", "--suite", str(suite), "--out", str(out))
    assert done.returncode == 0, done.stderr
    cells = sorted((out / "cells").iterdir())
    assert len(cells) == 2
    by_reg = {}
    for cell in cells:
        spec = json.loads((cell / "spec.json").read_text())["spec"]
        model = load_model(cell)
        gammas = torch.cat([m.weight.detach().abs() for m in model.modules() if isinstance(m, nn.BatchNorm1d)])
        by_reg[spec["train"].get("regularizer", {}).get("id")] = gammas
    plain, slim = by_reg[None], by_reg["gstbench:l1-bn-gamma"]
    assert slim.sum() < 0.7 * plain.sum()
    assert (slim < plain.min()).float().mean() > 0.25  # a quarter below the unpenalized run's smallest gamma


def test_a_regularizer_is_part_of_the_cell_hash_and_none_is_no_regularizer():
    registry = Registry(installed=False)
    base = {"model": "cnn1d", "dataset": "mnist1d", "prune": False}

    def spec(train):
        return cell_from_config({**base, "train": train}, 0, registry)

    plain = spec({})
    assert spec({"regularizer": "none"}).hash == plain.hash  # and a spec without the key keeps its old hash
    slim = spec({"regularizer": {"name": "l1-bn-gamma", "strength": 1e-4}})
    assert slim.hash != plain.hash and slim.training_hash != plain.training_hash
    assert spec({"regularizer": "l1-bn-gamma"}).hash == slim.hash  # the default strength, written or not
    assert spec({"regularizer": {"name": "l1-bn-gamma", "strength": 1e-3}}).hash != slim.hash
    assert spec({"regularizer": "group-lasso"}).hash not in (slim.hash, plain.hash)


def test_a_bad_regularizer_is_refused_before_training_naming_its_key(tmp_path):
    suite = tmp_path / "bad.toml"
    body = '''
name = "bad"
[base]
model = { name = "cnn1d", channels = [8, 8, 8, 8] }
dataset = { name = "mnist1d", num_samples = 200 }
prune = false
[base.train]
epochs = 1
regularizer = %s
[scales.quick]
'''
    suite.write_text(body % '"l1-bn-gama"')
    typo = run_gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "out"))
    assert typo.returncode == 2 and "train.regularizer" in typo.stderr and "l1-bn-gamma" in typo.stderr
    assert "Traceback" not in typo.stderr
    suite.write_text(body % '{ name = "l1-bn-gamma", strength = -1.0 }')
    negative = run_gstbench("run", "--suite", str(suite), "--out", str(tmp_path / "out"))
    assert negative.returncode == 2 and "train.regularizer" in negative.stderr and "strength >= 0" in negative.stderr
    assert len(negative.stderr.strip().splitlines()) == 1 and not (tmp_path / "out" / "cells").exists()
