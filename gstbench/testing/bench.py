"""The contract checks' common ground: the tiny real model and data, ContractError, and the bench
that runs a component through the engine's calling protocol.

PYTEST_DONT_REWRITE (the kit raises its own errors)
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from gstbench.components import TensorData


# ---- tiny real model and data -------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def make_tiny_data(num_samples: int = 400, seed: int = 0) -> TensorData:
    """MNIST-1D with ``num_samples`` signals, half for training: (1, 40) inputs, 10 classes."""
    from gstbench.builtin.datasets import mnist1d

    return mnist1d(num_samples=num_samples, train_split=0.5, seed=seed)


@functools.lru_cache(maxsize=None)
def make_tiny_images(num_samples: int = 400, seed: int = 0) -> TensorData:
    """The same signals as 5 x 8 one-channel images: the bench of components that need 2-D feature maps."""
    data = make_tiny_data(num_samples, seed)
    return TensorData(data.x_train.reshape(-1, 1, 5, 8), data.y_train, data.x_test.reshape(-1, 1, 5, 8), data.y_test,
                      data.num_classes)


def make_tiny_model(data: TensorData | None = None, seed: int = 0) -> nn.Module:
    """The built-in ``cnn1d`` at 8-16 filters per layer (prunable conv1..conv4; 2-D convolutions for image data),
    seeded, in train mode."""
    from gstbench.builtin.models import cnn1d

    data = data or make_tiny_data()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cnn1d(data.input_shape, data.num_classes, channels=(8, 16, 16, 16)).train()


# ---- contract checks ----------------------------------------------------------------------
class ContractError(AssertionError):
    """A component breaks a rule the engine relies on; the message names the component, the rule and the fix."""


def _resolve(kind: str, component: Any, options: dict | None,
             capabilities: Iterable[str] | None) -> tuple[str, Callable[..., Any], tuple[str, ...]]:
    """(label, zero-argument builder, capabilities) of a registered Component or a bare factory."""
    from gstbench.components import Component

    options = dict(options or {})
    if isinstance(component, Component):
        if component.kind != kind:
            raise TypeError(f"{component.id} is one of the {component.kind}, not one of the {kind}")
        label, factory, caps = f"{kind[:-1]} {component.id}", component.factory, component.capabilities
        if capabilities is not None:
            caps = tuple(capabilities)
    elif callable(component):
        label = f"{kind[:-1]} {getattr(component, '__qualname__', repr(component))}"
        factory, caps = component, tuple(capabilities or ())
    else:
        raise TypeError(f"check a registered Component (registry.get({kind!r}, 'plugin:name')) or a factory, "
                        f"not {component!r}")
    return label, functools.partial(factory, **options), caps


def _fail(label: str, rule: str, fix: str = "") -> ContractError:
    return ContractError(f"{label}: {rule}" + (f"; {fix}" if fix else ""))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _differences(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    keys = sorted(set(before) | set(after))
    return [k for k in keys if k not in before or k not in after or before[k].shape != after[k].shape
            or not torch.equal(before[k], after[k])]


def _outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from gstbench.engine.evaluation import eval_mode

    with eval_mode(model), torch.no_grad():
        return model(x)


def _masked(model: nn.Module, name: str, chosen: torch.Tensor, example_input: torch.Tensor,
            granularity: str = "filters") -> nn.Module:
    """A copy of ``model`` with the built-in mask on the ``chosen`` units of layer ``name``: the reference."""
    from gstbench.builtin.impl.effectors import MaskEffector
    from gstbench.components import PruningContext
    from gstbench.engine.pruner import apply_effector
    from gstbench.pruning import layer_states

    masked = copy.deepcopy(model)
    layer = layer_states(masked, [name], granularity)[name]
    apply_effector(MaskEffector(), layer, chosen, PruningContext(masked, None, example_input, torch.Generator()))
    return masked


class _Bench:
    """One fresh copy of the model with an optimizer and a pruning context, driven as the engine drives it."""

    def __init__(self, model: nn.Module, data: TensorData, granularity: str = "filters", seed: int = 0):
        from gstbench.components import PruningContext
        from gstbench.pruning import layer_states

        self.model = copy.deepcopy(model).train()
        self.data = data
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        self.ctx = PruningContext(self.model, self.optimizer, data.x_train[:2].clone(),
                                  torch.Generator().manual_seed(seed), data=data, batch_seed=seed)
        names = list(getattr(self.model, "prunable_layers", {}))
        if not names:
            raise ContractError("the test model declares no prunable_layers; pass a model that does")
        self.layers = layer_states(self.model, names, granularity)
        self.granularity = granularity
        self.steps = 0

    def train(self, steps: int, before_batch: Callable | None = None, after_step: Callable | None = None) -> None:
        """Training steps on seeded batches of 32: the engine's order of calls around each step."""
        n = self.data.x_train.shape[0]
        for _ in range(steps):
            g = torch.Generator().manual_seed(1000 + self.steps)
            idx = torch.randperm(n, generator=g)[:32]
            if before_batch is not None:
                before_batch(self.steps)
            loss = F.cross_entropy(self.model(self.data.x_train[idx]), self.data.y_train[idx])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            self.ctx.step = self.steps
            if after_step is not None:
                after_step()

    def chosen(self, name: str, share: float = 0.25) -> torch.Tensor:
        """A fixed spread of about ``share`` of the layer's alive units (flat physical indices)."""
        alive = self.layers[name].alive_flat.nonzero().flatten()
        count = max(1, int(len(alive) * share))
        return alive[torch.linspace(0, len(alive) - 1, count).round().long().unique()]

    def mask(self, name: str, indices: torch.Tensor) -> None:
        """The built-in mask on ``indices`` of layer ``name``, applied as the engine applies an effector."""
        from gstbench.builtin.impl.effectors import MaskEffector
        from gstbench.engine.pruner import apply_effector

        apply_effector(MaskEffector(), self.layers[name], indices, self.ctx)

    def remove(self, name: str, indices: torch.Tensor, scorer: Any = None) -> None:
        """Physical removal as the engine applies it, ``units_removed`` on the scorer included."""
        from gstbench.builtin.impl.effectors import RemoveEffector
        from gstbench.engine.pruner import apply_effector

        apply_effector(RemoveEffector(), self.layers[name], indices, self.ctx, scorer)

    def removable(self) -> list[str]:
        """The prunable layers whose removal cuts no other layer's outputs (not a residual sum)."""
        from gstbench.builtin.impl.effectors import RemoveEffector

        return [name for name, layer in self.layers.items()
                if RemoveEffector().check_layer(self.model, name, layer.spec, self.ctx.example_input) is None]


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
