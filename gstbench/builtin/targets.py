"""Built-in targets: which alive units are hit (Prune_S, Prune_L, Prune_R of the paper).

Only the factories and their registration live here, so that listing components loads no torch;
what they build is in impl/targets.py.
"""

from __future__ import annotations

from gstbench.plugins import hookimpl


def smallest():
    """The lowest-scored alive units (Prune_S)."""
    from gstbench.builtin.impl.targets import RankTarget

    return RankTarget(largest=False)


def largest():
    """The highest-scored alive units (Prune_L)."""
    from gstbench.builtin.impl.targets import RankTarget

    return RankTarget(largest=True)


def random():
    """Random alive units, ignoring scores (Prune_R), from the cell's seeded generator."""
    from gstbench.builtin.impl.targets import RandomTarget

    return RandomTarget()


@hookimpl
def register_targets(register):
    register("smallest", smallest)
    register("largest", largest)
    register("random", random)
