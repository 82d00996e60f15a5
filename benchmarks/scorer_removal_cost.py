"""Analysis: do a scorer's lowest-scored filters cost least to remove? (why the quick scale uses bn-gamma)

Trains the quick scale's model on its data, then for each prunable layer removes (masks)
one quarter of the filters at once, picked as the smallest, random or largest by each
scorer, and prints the relative test-accuracy drop averaged over seeds. A scorer is
useful for the tradeoff suite when smallest < random < largest. No training follows the
cut, so this isolates the scorer from the schedule.

    python benchmarks/scorer_removal_cost.py [--seeds 3] [--epochs 15] [--layers conv2,conv3,conv4]
"""

from __future__ import annotations

import argparse

import torch
from tabulate import tabulate
from torch.nn import functional as F

from gstbench.builtin.effectors import MaskEffector
from gstbench.builtin.models import cnn1d
from gstbench.components import PruningContext
from gstbench.engine import evaluate
from gstbench.plugins import get_registry
from gstbench.pruning import layer_states

TARGETS = ("smallest", "random", "largest")


def channel_scores(model, layer, x) -> dict[str, torch.Tensor]:
    seen = {}
    handle = layer.bn.register_forward_hook(lambda m, i, o: seen.setdefault("bn", o.detach().clone()))
    model.train()
    with torch.no_grad():
        model(x)  # a training-mode pass, as the activation scorer sees it (BN stats restored by caller)
    handle.remove()
    return {
        "l2": layer.conv.weight.detach().flatten(1).norm(dim=1),
        "l1": layer.conv.weight.detach().flatten(1).abs().sum(dim=1),
        "activation-l1": seen["bn"].abs().mean(dim=(0, 2)),
        "bn-gamma": layer.bn.weight.detach().abs(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--layers", default="conv2,conv3,conv4")
    args = parser.parse_args()
    data = get_registry().get("datasets", "mnist1d").factory(num_samples=3000, train_split=0.25)
    drops: dict[tuple[str, str, str], list[float]] = {}
    for seed in range(args.seeds):
        torch.manual_seed(seed)
        model = cnn1d(data.input_shape, 10)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(seed)
        n = data.x_train.shape[0]
        for _ in range(args.epochs):
            order = torch.randperm(n, generator=gen)
            for i in range(0, n, 128):
                idx = order[i:i + 128]
                loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        base = evaluate(model, data.x_test, data.y_test)[0]
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        for name in args.layers.split(","):
            layer = layer_states(model, [name])[name]
            scores = channel_scores(model, layer, data.x_train[:128])
            model.load_state_dict(saved)
            k = layer.n_original // 4
            for scorer, s in scores.items():
                for target in TARGETS:
                    if target == "random":
                        idx = torch.randperm(layer.n_original, generator=torch.Generator().manual_seed(seed))[:k]
                    else:
                        idx = torch.argsort(s, descending=target == "largest")[:k]
                    cut = layer_states(model, [name])[name]
                    cut.alive[idx] = False
                    MaskEffector().apply(cut, idx, PruningContext(model, opt, data.x_train[:2], gen))
                    drops.setdefault((name, scorer, target), []).append(
                        (base - evaluate(model, data.x_test, data.y_test)[0]) / base)
                    model.load_state_dict(saved)
    rows = []
    for (name, scorer, target), values in drops.items():
        if target == "smallest":
            cells = [100 * sum(drops[(name, scorer, t)]) / len(values) for t in TARGETS]
            ordered = "yes" if cells[0] < cells[1] < cells[2] else "no"
            rows.append([name, scorer] + [f"{c:.1f}" for c in cells] + [ordered])
    print(f"relative test-accuracy drop (%) after masking 25% of a layer's filters at once, "
          f"mean of {args.seeds} seeds, {args.epochs} epochs of training")
    print(tabulate(rows, headers=["layer", "scorer", "smallest", "random", "largest", "S < R < L"]))


if __name__ == "__main__":
    main()
