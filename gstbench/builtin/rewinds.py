"""Built-in rewinds: what happens to weights and learning rate after a pruning round."""

from __future__ import annotations

from gstbench.plugins import hookimpl


class NoRewind:
    def after_round(self, ctx) -> None:
        return None


def none():
    """Keep training from where pruning left the weights and the learning rate."""
    return NoRewind()


@hookimpl
def register_rewinds(register):
    register("none", none)
