"""Scorers and targets: the paper's definitions, seeded randomness, alive units only."""

from __future__ import annotations

import pytest
import torch

from gstbench.builtin import scorers, targets
from gstbench.builtin.models import cnn1d
from gstbench.components import PruningContext
from gstbench.pruning import layer_states


def ctx_for(model, seed=0):
    return PruningContext(model, None, torch.randn(2, 1, 40), torch.Generator().manual_seed(seed))


def test_norm_scorers_are_plain_filter_norms():
    model = cnn1d((1, 40), 10)
    layer = layer_states(model, ["conv2"])["conv2"]
    w = layer.conv.weight.detach()
    torch.testing.assert_close(scorers.l2().score(layer, ctx_for(model)), w.flatten(1).norm(dim=1))
    torch.testing.assert_close(scorers.l1().score(layer, ctx_for(model)), w.abs().flatten(1).sum(dim=1))


def test_magnitude_of_a_filter_or_a_head_is_the_mean_magnitude_of_its_weights():
    from gstbench.builtin.models import transformer
    from gstbench.pruning import unit_weights

    model = cnn1d((1, 40), 10)
    layer = layer_states(model, ["conv2"])["conv2"]
    torch.testing.assert_close(scorers.magnitude().score(layer, ctx_for(model)),
                               layer.conv.weight.detach().abs().flatten(1).mean(dim=1))
    vit = transformer((1, 40), 10, dim=16, depth=1, heads=4, head_dim=4, hidden=24, patch=4)
    heads = layer_states(vit, ["block1.heads"])["block1.heads"]
    torch.testing.assert_close(scorers.magnitude().score(heads, ctx_for(vit)),
                               unit_weights(vit, heads.spec).abs().mean(dim=1))
    with pytest.raises(ValueError, match="compare = 'output' ranks single weights, and layer"):
        scorers.magnitude(compare="output").score(layer, ctx_for(model))


def test_random_scores_follow_the_cell_generator_not_the_global_rng():
    model = cnn1d((1, 40), 10)
    layer = layer_states(model, ["conv2"])["conv2"]
    a = scorers.random().score(layer, ctx_for(model, seed=3))
    torch.manual_seed(123)
    b = scorers.random().score(layer, ctx_for(model, seed=3))
    assert torch.equal(a, b)
    assert not torch.equal(a, scorers.random().score(layer, ctx_for(model, seed=4)))


def test_activation_l1_is_a_moving_average_updated_every_tenth_training_batch():
    torch.manual_seed(0)
    model = cnn1d((1, 40), 10)
    layers = layer_states(model, ["conv3"])
    scorer = scorers.activation_l1()
    scorer.attach(ctx_for(model), layers)
    seen = []
    layers["conv3"].bn.register_forward_hook(lambda m, i, o: seen.append(o.detach().abs().mean(dim=(0, 2))))
    expected = torch.zeros(64)
    for batch in range(1, 31):
        scorer.before_train_batch(batch - 1)
        model(torch.randn(16, 1, 40))
        if batch % 10 == 0:
            expected = 0.1 * seen[-1] + 0.9 * expected
        model.eval()
        model(torch.randn(16, 1, 40))  # evaluation passes never update the average
        model.train()
    torch.testing.assert_close(scorer.score(layers["conv3"], None), expected)
    scorer.units_removed(layers["conv3"], torch.tensor([0, 5, 9]))
    torch.testing.assert_close(scorer.score(layers["conv3"], None), expected[[0, 5, 9]])
    scorer.detach()


def test_targets_pick_only_alive_units():
    scores = torch.tensor([5.0, 1.0, 3.0, 0.5, 4.0, 2.0])
    alive = torch.tensor([True, True, True, False, True, True])
    g = torch.Generator().manual_seed(0)
    assert targets.smallest().select(scores, alive, 2, g).tolist() == [1, 5]
    assert targets.largest().select(scores, alive, 2, g).tolist() == [0, 4]
    picks = targets.random().select(scores, alive, 5, g)
    assert sorted(picks.tolist()) == [0, 1, 2, 4, 5]
    a = targets.random().select(scores, alive, 2, torch.Generator().manual_seed(7))
    b = targets.random().select(scores, alive, 2, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
