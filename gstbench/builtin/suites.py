"""Built-in suites: the TOML files shipped in gstbench/suites/."""

from __future__ import annotations

from importlib import resources

from gstbench.plugins import hookimpl


@hookimpl
def register_suites(register):
    for entry in sorted(resources.files("gstbench.suites").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            register(entry.name[:-5], str(entry))
