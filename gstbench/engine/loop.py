"""The training loop: one model over a range of schedule steps, with the schedule's learning rate and data order.

Per step: the epoch's permutation, a pruning event if one is due (``Hooks``), the learning
rate, the batch, forward, backward, optimizer step; at each epoch's end the running train
loss and a test evaluation go into the curves.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from gstbench.store.cell_result import Curves, MetricValues, PruningEvent, Round
from gstbench.plan.config import steps_to_int
from gstbench.plan.seeds import AUGMENTATION, derived_seed
from gstbench.engine.evaluation import evaluate
from gstbench.engine.setup import autocast, make_optimizer
from gstbench import stopping
from gstbench.errors import CellFailed
from gstbench.engine.state import Cell

Progress = Callable[[int, int], None]

@dataclass
class Hooks:
    """What a training run calls besides the step itself; every part is optional."""

    events: dict[int, list] = field(default_factory=dict)  # the steps that start with a pruning event
    on_event: Callable[[int, int], None] | None = None  # (step, epoch), before that step's batch
    before_batch: Callable[[int], None] | None = None  # a scorer that watches training
    after_step: Callable[[], None] | None = None  # an effector that re-applies its masks
    after_epoch: Callable[[int, Curves], None] | None = None  # (next step, curves so far): a checkpoint


@dataclass
class Trained:
    """What a cell's training gave (one run with its pruning schedule, or every round), before the final metrics."""

    curves: Curves  # of the last training run
    events: list[PruningEvent]
    best_test_acc: float  # the generalization measure (REFERENCE.md section 2)
    parent: str | None = None  # "trained" or "cached" when the cell began with an unpruned run
    rounds: list[Round] = field(default_factory=list)
    metrics: MetricValues = field(default_factory=dict)  # what training measured itself (per-round sweeps, LMC)


def clone_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items()}


@dataclass
class TrainingProgress:
    """Where a training run is, as its checkpoint keeps it (a registered part, checkpoint.py): the step reached,
    the curves so far and the pruning events so far."""

    step: int = 0
    curves: Curves | None = None
    events: list[PruningEvent] = field(default_factory=list)

    def state_dict(self) -> dict:
        return {"step": self.step, "curves": None if self.curves is None else self.curves.to_json(),
                "events": [e.to_json() for e in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.curves = None if state["curves"] is None else Curves.from_json(state["curves"])
        self.events[:] = [PruningEvent.from_json(e) for e in state["events"]]


class Trainer:
    """Trains one model over a range of schedule steps; the learning rate and data order are the schedule's."""

    def __init__(self, cell: Cell, model: nn.Module, progress: Progress | None = None,
                 planned_epochs: int | None = None):
        spec = cell.spec
        self.spec, self.data, self.model, self.timing = spec, cell.data, model, cell.timing
        self.tracker = cell.tracker  # experiment trackers (tracking.py)
        self.n_train = cell.data.x_train.shape[0]
        self.batch_size = spec.train.batch_size
        self.steps_per_epoch = spec.train.steps_per_epoch(self.n_train)
        self.total_steps = spec.train.epochs * self.steps_per_epoch
        self.milestones = sorted(steps_to_int(m, self.steps_per_epoch, self.total_steps)
                                 for m in spec.train.milestones)
        self.progress, self.epochs_done = progress, 0
        self.planned_epochs = planned_epochs if planned_epochs is not None else spec.train.epochs
        self.optimizer = make_optimizer(spec, model)
        regularizer = spec.train.regularizer
        self.regularizer = cell.registry.build("regularizers", regularizer) if regularizer is not None else None
        self.steps_run = 0  # optimizer steps taken by any copy: invalidates a kept evaluation
        self._last_eval: tuple[int, tuple[float, float]] | None = None
        # The global RNG as training from step 0 finds it (dropout draws from it), so that a
        # parent trained in any cell, or loaded from the cache, is the same parent.
        self.start_rng = torch.random.get_rng_state()

    def state_dict(self) -> dict:
        """What training from a checkpoint needs of this trainer (checkpoint.py saves it with the RNGs)."""
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "steps_run": self.steps_run, "epochs_done": self.epochs_done, "start_rng": self.start_rng,
                "last_eval": list(self._last_eval) if self._last_eval is not None else None,
                "timing": self.timing.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps_run, self.start_rng = state["steps_run"], state["start_rng"]
        self._count_epochs(state["epochs_done"] - self.epochs_done)
        last = state["last_eval"]
        self._last_eval = (last[0], tuple(last[1])) if last is not None else None
        self.timing.load_state_dict(state["timing"])

    def skip(self, epochs: int) -> None:
        """Count epochs that came from the parent cache (for the progress bar)."""
        self._count_epochs(epochs)

    def _count_epochs(self, epochs: int) -> None:
        self.epochs_done += epochs
        if self.progress is not None:
            self.progress(self.epochs_done, self.planned_epochs)

    def new_optimizer(self, load: dict | None = None) -> torch.optim.Optimizer:
        self.optimizer = make_optimizer(self.spec, self.model)
        if load is not None:
            self.optimizer.load_state_dict(load)
        return self.optimizer

    def lr_at(self, step: int, replay: bool = True) -> float:
        drops = sum(m <= step for m in self.milestones) if replay else len(self.milestones)
        return self.spec.train.lr * self.spec.train.gamma ** drops

    def forget_evaluation(self) -> None:
        self._last_eval = None

    def evaluate_test(self, reuse: bool = False) -> tuple[float, float]:
        """Test accuracy and loss; ``reuse`` returns the last result when no training step ran since it.

        An event at an epoch boundary takes its t_pre from the end-of-epoch evaluation just
        made on the same weights (evaluation is deterministic), which saves one pass per event.
        """
        if reuse and self._last_eval is not None and self._last_eval[0] == self.steps_run:
            return self._last_eval[1]
        with self.timing.measure("eval_s"), autocast(self.spec, self.data.x_test.device):
            acc_loss = evaluate(self.model, self.data.x_test, self.data.y_test)
        self._last_eval = (self.steps_run, acc_loss)
        return acc_loss

    def train(self, start: int, data_seed: int, replay_lr: bool = True, hooks: Hooks | None = None,
              keep: set[int] = frozenset(), every_epoch: bool = True,
              curves: Curves | None = None) -> tuple[Curves, dict[int, dict]]:
        """Steps ``start`` to the end of the schedule; returns per-epoch curves and the states kept at ``keep``.

        ``replay_lr`` False holds the learning rate at its final value (learning-rate rewinding
        replays it). ``every_epoch`` False evaluates the test set only after the last epoch.
        The data order of epoch e is the e-th permutation drawn from ``data_seed``, so a run
        resumed at step k sees the same batches as an uninterrupted one from k on; ``curves``
        continues a run resumed from a checkpoint.
        """
        hooks = hooks or Hooks()
        data, spe = self.data, self.steps_per_epoch
        device = data.x_train.device
        curves = curves if curves is not None else Curves()
        kept: dict[int, dict] = {}
        order_gen = torch.Generator().manual_seed(data_seed)
        aug_gen = torch.Generator(device) if data.augmentation is not None else None
        aug_seed = derived_seed(data_seed, AUGMENTATION)
        for _ in range(start // spe):  # the permutations of the epochs before ``start``
            torch.randperm(self.n_train, generator=order_gen)
        order = None
        running = _Running(device)
        t0 = time.perf_counter()
        for step in range(start, self.total_steps):
            stopping.check()  # a Ctrl-C that a finalizer swallowed stops here
            epoch, b = divmod(step, spe)
            if order is None or b == 0:
                order = torch.randperm(self.n_train, generator=order_gen).to(device)
            if step in hooks.events:  # pruning time is not training time
                self.timing.add("train_s", time.perf_counter() - t0)
                hooks.on_event(step, epoch)
                t0 = time.perf_counter()
            if step in keep:
                kept[step] = {"model": clone_state(self.model.state_dict()),
                              "optimizer": copy.deepcopy(self.optimizer.state_dict())}
            lr = self.lr_at(step, replay_lr)
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            running.add(*self._step(step, lr, idx, hooks, aug_gen, aug_seed))
            if (step + 1) % spe == 0 or step + 1 == self.total_steps:  # the epoch ends
                self.timing.add("train_s", time.perf_counter() - t0)
                last = step + 1 == self.total_steps
                self._end_epoch(curves, running, epoch, step, lr, evaluate_test=every_epoch or last)
                if hooks.after_epoch is not None and not last:
                    hooks.after_epoch(step + 1, curves)
                t0 = time.perf_counter()
        if self.total_steps == 0 and not curves.step:  # no schedule (train.epochs = 0): the initialized network
            curves = self.evaluated_point(0)
        return curves, kept

    def evaluated_point(self, step: int, test: tuple[float, float] | None = None) -> Curves:
        """A one-point curve at ``step`` where no epoch ran: the training set's accuracy and loss evaluated once
        (nothing was averaged over an epoch), and the test set's (or ``test``'s accuracy and loss)."""
        with self.timing.measure("eval_s"):
            train_acc, train_loss = evaluate(self.model, self.data.x_train, self.data.y_train)
        test_acc, test_loss = test if test is not None else self.evaluate_test()
        return Curves(epoch=[step // self.steps_per_epoch], step=[step], lr=[0.0], train_loss=[train_loss],
                      train_acc_running=[train_acc], test_acc=[test_acc], test_loss=[test_loss])

    def _step(self, step: int, lr: float, idx: torch.Tensor, hooks: Hooks, aug_gen: torch.Generator | None,
              aug_seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step on the batch ``idx`` (cross-entropy plus the regularizer's penalty); returns the
        cross-entropy, logits and labels for the running statistics (curves show the data loss alone)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x, y = self.data.x_train[idx], self.data.y_train[idx]
        if self.data.augmentation is not None:  # seeded per step: a run resumed at any step draws the same crops
            x = self.data.augmentation(x, aug_gen.manual_seed(aug_seed + step))
        if hooks.before_batch is not None:
            hooks.before_batch(step)
        with autocast(self.spec, x.device):
            out = self.model(x)
            loss = F.cross_entropy(out, y)
        objective = loss if self.regularizer is None else loss + self.regularizer.penalty(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        self.optimizer.step()
        self.steps_run += 1
        if hooks.after_step is not None:
            hooks.after_step()
        return loss, out, y

    def _end_epoch(self, curves: Curves, running: "_Running", epoch: int, step: int, lr: float,
                   evaluate_test: bool) -> None:
        """The epoch's curve points: running train loss and accuracy, and the test set when asked."""
        train_loss, train_acc = running.take()
        if not math.isfinite(train_loss):
            raise CellFailed(f"non-finite training loss ({train_loss}) in epoch {epoch + 1}; "
                             f"lower the learning rate or check the model")
        test_acc, test_loss = self.evaluate_test() if evaluate_test else (None, None)
        curves.add(epoch=epoch + 1, step=step + 1, lr=lr, train_loss=train_loss, train_acc_running=train_acc,
                   test_acc=test_acc, test_loss=test_loss)
        self.tracker.log(self.steps_run, {"epoch": epoch + 1, "lr": lr, "train/loss": train_loss,
                                          "train/acc_running": train_acc, "test/acc": test_acc, "test/loss": test_loss})
        self._count_epochs(1)


class _Running:
    """The epoch's running train loss and accuracy, summed on the device (one sync per epoch)."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device)
        self.seen = 0

    def add(self, loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss.detach() * y.shape[0]
        self.correct += (out.detach().argmax(1) == y).sum()
        self.seen += y.shape[0]

    def take(self) -> tuple[float, float]:
        """(mean loss, accuracy) so far, and start again."""
        values = float(self.loss_sum) / self.seen, float(self.correct) / self.seen
        self.loss_sum.zero_()
        self.correct.zero_()
        self.seen = 0
        return values
