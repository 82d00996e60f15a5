"""Pruning schedules: event steps and the paper's per-event counts."""

from __future__ import annotations

import math

import pytest

from gstbench.plan.config import LayerSchedule, PruneConfig, ComponentRef, parse_steps, steps_to_int
from gstbench.errors import SpecError
from gstbench.plan.schedule import build_schedule, iterative_rate, kept_after


def prune(**layers) -> PruneConfig:
    ref = ComponentRef("gstbench:x")
    return PruneConfig(ref, ref, ref, tuple(sorted(layers.items())))


@pytest.mark.parametrize("n,fraction,n_events", [(512, 0.9, 68), (512, 0.3, 37), (64, 0.5, 12), (64, 0.5, 3),
                                                 (10, 0.7, 4), (7, 0.99, 30)])
def test_counts_reach_the_paper_target_and_differ_by_at_most_one(n, fraction, n_events):
    counts = [kept_after(n, fraction, i - 1, n_events) - kept_after(n, fraction, i, n_events)
              for i in range(1, n_events + 1)]
    final = math.ceil(round((1 - fraction) * n, 9))
    assert n - sum(counts) == final
    assert max(counts) - min(counts) <= 1


def test_paper_vgg11_example():
    # 512 filters, 90% total, events at epochs range(6, 276, 4): 68 events, 52 filters remain
    assert len(range(6, 276, 4)) == 68
    assert kept_after(512, 0.9, 68, 68) == 52
    assert kept_after(512, 0.3, 1, 1) == 359


def test_events_of_layers_at_the_same_step_form_one_event():
    p = prune(a=LayerSchedule(0.5, "2ep", "6ep", "2ep"), b=LayerSchedule(0.25, "4ep", "4ep", "1ep"))
    events = build_schedule(p, {"a": 8, "b": 8}, steps_per_epoch=10, total_steps=100)
    assert list(events) == [20, 40, 60]
    assert [(c.layer, c.count) for c in events[40]] == [("a", 1), ("b", 2)]
    assert sum(c.count for cuts in events.values() for c in cuts if c.layer == "a") == 4
    assert iterative_rate(p, 10, 1000) == pytest.approx(0.25)


def test_an_event_at_or_after_the_end_of_training_is_refused():
    p = prune(a=LayerSchedule(0.5, "1ep", "10ep", "1ep"))
    with pytest.raises(SpecError, match="not before the end of training"):
        build_schedule(p, {"a": 8}, steps_per_epoch=10, total_steps=100)


@pytest.mark.parametrize("value,canonical,steps", [("3ep", "3ep", 30), ("500it", "500it", 500), (7, "7it", 7),
                                                   (" 2 ep", "2ep", 20), ("0.5%", "0.5%", 5),
                                                   ("10%", "10%", 100), ("2.50%", "2.5%", 25)])
def test_step_strings(value, canonical, steps):
    assert parse_steps(value, "k") == canonical
    assert steps_to_int(canonical, 10, 1000) == steps


@pytest.mark.parametrize("bad", ["3 epochs", "-1it", 1.5, True, "ep", "101%", "-1%", "%"])
def test_bad_step_strings_are_refused(bad):
    with pytest.raises(SpecError, match="not a step count"):
        parse_steps(bad, "prune.period")
