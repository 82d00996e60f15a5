"""Analysis: do a scorer's lowest-scored units cost least to remove? (criterion (a) of docs/quick-scale.md)

Trains a suite's unpruned network with the engine's own trainer (the suite's model, data
and recipe at the quick scale), and at the first and at the last pruning event of the
suite's schedules masks one quarter of each pruned layer's units at once, picked as the
smallest, random or largest by each scorer: for filters l2, l1, activation-l1 and bn-gamma
(written out here), for heads and neurons gstbench's head-importance, taylor, l2 and l1
(docs/transformer-scale.md). It prints the relative test-accuracy drop,
averaged over seeds (random: over 5 draws per seed). A scorer ranks removal cost when
smallest < random < largest. No training follows the cut, so this isolates the scorer
from the schedule.

    python benchmarks/scorer_removal_cost.py [--suite tradeoff] [--seeds 1000-1002]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from tabulate import tabulate

from gstbench.builtin.impl.effectors import MaskEffector
from gstbench.components import PruningContext
from gstbench.engine.evaluation import evaluate
from gstbench.engine.loop import Trainer
from gstbench.engine.setup import seed_everything
from gstbench.engine.state import Cell
from gstbench.plugins import get_registry
from gstbench.pruning import layer_states
from gstbench.plan.schedule import build_schedule
from gstbench.plan.seeds import parse_seed_range
from gstbench.plan.suite import load_suite

import tiny

TARGETS = ("smallest", "random", "largest")
SCORERS = ("l2", "l1", "activation-l1", "bn-gamma")  # the paper's L2 first, then the closest to it
# heads and neurons (docs/transformer-scale.md): the head-pruning literature's score first, then the closest to it
GROUP_SCORERS = ("head-importance", "taylor", "l2", "l1")
RANDOM_DRAWS = 5


def channel_scores(model, layer, x) -> dict[str, torch.Tensor]:
    """Each scorer's filter scores; activation-l1 from one training-mode pass (BN stats restored by the caller)."""
    seen = {}
    handle = layer.bn.register_forward_hook(lambda m, i, o: seen.setdefault("bn", o.detach().clone()))
    model.train()
    with torch.no_grad():
        model(x)
    handle.remove()
    return {
        "l2": layer.conv.weight.detach().flatten(1).norm(dim=1),
        "l1": layer.conv.weight.detach().flatten(1).abs().sum(dim=1),
        "activation-l1": seen["bn"].abs().mean(dim=(0, 2)),
        "bn-gamma": layer.bn.weight.detach().abs(),
    }


def group_scores(registry, model, layer, data, seed: int) -> dict[str, torch.Tensor]:
    """Each group scorer's unit scores, from gstbench's own scorers on the cell's training examples."""
    from gstbench.plan.config import ComponentRef

    ctx = PruningContext(model, None, data.x_train[:2], torch.Generator().manual_seed(seed), data=data,
                         batch_seed=seed)
    return {name: registry.build("scorers", ComponentRef(f"gstbench:{name}")).score(layer, ctx)
            for name in GROUP_SCORERS}


def pruning_window(suite) -> tuple[int, int, list[str]]:
    """The first and the last pruning step over the suite's pruned configurations, and their layers."""
    registry = get_registry()
    steps, layers = [], []
    for spec in suite.cells:
        if spec.prune is None or spec.prune.rounds:
            continue
        data = registry.load_data(spec.dataset)
        model = registry.build_model(spec.model, data)
        spe = -(-data.x_train.shape[0] // spec.train.batch_size)
        n = {name: s.n_original for name, s in layer_states(model, [n for n, _ in spec.prune.layers]).items()}
        steps += list(build_schedule(spec.prune, n, spe, spe * spec.train.epochs))
        layers += [name for name, _ in spec.prune.layers if name not in layers]
    return min(steps), max(steps), layers


def seed_drops(suite_name: str, seed: int, overrides: dict | None = None) -> dict[str, Any]:
    """One seed's relative test-accuracy drops per (point, layer, scorer, target), and the two event steps."""
    registry = get_registry()
    suite = load_suite(registry, suite_name, seeds=[seed], overrides=overrides)
    first, last, layers = pruning_window(suite)
    spec = next((s for s in suite.cells if s.prune is None), None) or suite.cells[0]
    drops: dict[tuple[str, str, str, str], list[float]] = {}
    data_seed, _ = seed_everything(seed)
    data = registry.load_data(spec.dataset)
    torch.manual_seed(seed)
    model = registry.build_model(spec.model, data)
    model.train()
    trainer = Trainer(Cell(spec, registry, data, torch.device("cpu")), model)
    _, kept = trainer.train(0, data_seed, keep={first, last})
    for point, step in (("first event", first), ("last event", last)):
        model.load_state_dict(kept[step]["model"])
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        base = evaluate(model, data.x_test, data.y_test)[0]
        for name in layers:
            layer = layer_states(model, [name])[name]
            scores = (group_scores(registry, model, layer, data, seed) if layer.is_group
                      else channel_scores(model, layer, data.x_train[:128]))
            model.load_state_dict(saved)
            k = layer.n_original // 4
            for scorer, s in scores.items():
                for target in TARGETS:
                    picks = ([torch.randperm(layer.n_original, generator=torch.Generator().manual_seed(
                        1000 * seed + d))[:k] for d in range(RANDOM_DRAWS)] if target == "random" else
                             [torch.argsort(s, descending=target == "largest")[:k]])
                    for idx in picks:
                        cut = layer_states(model, [name])[name]
                        cut.alive[idx] = False
                        MaskEffector().apply(cut, idx, PruningContext(model, trainer.optimizer, data.x_train[:2],
                                                                      torch.Generator()))
                        drops.setdefault((point, name, scorer, target), []).append(
                            (base - evaluate(model, data.x_test, data.y_test)[0]) / base)
                        model.load_state_dict(saved)
    return {"drops": drops, "first": first, "last": last, "layers": layers, "scorers": list(scores)}


def summarize(suite_name: str, seeds: list[int], per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean drops over seeds, whether each scorer orders S < R < L everywhere, and the scorer criterion (a) picks."""
    first, last, layers = per_seed[0]["first"], per_seed[0]["last"], per_seed[0]["layers"]
    scorers = per_seed[0]["scorers"]
    drops: dict[tuple[str, str, str, str], list[float]] = {}
    for one in per_seed:
        for key, values in one["drops"].items():
            drops.setdefault(key, []).extend(values)
    means = {key: 100 * sum(v) / len(v) for key, v in drops.items()}
    rows = []
    for point in ("first event", "last event"):
        for name in layers:
            for scorer in scorers:
                s, r, la = (means[(point, name, scorer, t)] for t in TARGETS)
                rows.append({"point": point, "step": first if point == "first event" else last, "layer": name,
                             "scorer": scorer, "smallest": s, "random": r, "largest": la, "ordered": s < r < la})
    ordered = {sc: all(r["ordered"] for r in rows if r["scorer"] == sc) for sc in scorers}
    return {"suite": suite_name, "seeds": seeds, "rows": rows, "ordered": ordered,
            "chosen": next((sc for sc in scorers if ordered[sc]), None)}


def removal_costs(suite_name: str, seeds: list[int], overrides: dict | None = None) -> dict[str, Any]:
    """Relative test-accuracy drop per (point, layer, scorer, target), each the mean over ``seeds``."""
    return summarize(suite_name, seeds, [seed_drops(suite_name, seed, overrides) for seed in seeds])


def render(result: dict[str, Any]) -> str:
    table = [[r["point"], r["step"], r["layer"], r["scorer"], f"{r['smallest']:.1f}", f"{r['random']:.1f}",
              f"{r['largest']:.1f}", "yes" if r["ordered"] else "no"] for r in result["rows"]]
    lines = [f"relative test-accuracy drop (%) after masking 25% of a layer's units at once, "
             f"mean of seeds {result['seeds']} (random: {RANDOM_DRAWS} draws per seed)",
             tabulate(table, headers=["point", "step", "layer", "scorer", "smallest", "random", "largest",
                                      "S < R < L"], disable_numparse=True), "",
             "S < R < L in every pruned layer at both points: "
             + ", ".join(f"{sc} {'yes' if ok else 'no'}" for sc, ok in result["ordered"].items()),
             f"the first scorer in that order that orders: {result['chosen'] or 'none'}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="tradeoff", help="built-in suite name or .toml path (quick scale)")
    parser.add_argument("--seeds", default="1000-1002", help="seeds, e.g. 1000-1002 or 3")
    tiny.add_flag(parser)
    args = parser.parse_args()
    if args.tiny:
        args.seeds = "1000-1000"
    print(render(removal_costs(args.suite, parse_seed_range(args.seeds), tiny.overrides(args.tiny))))


if __name__ == "__main__":
    main()
