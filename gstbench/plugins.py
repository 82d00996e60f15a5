"""Plugin manager: loads built-in and installed plugins and collects their components.

Built-ins are ordinary plugins listed in ``BUILTIN_PLUGINS``. Third-party plugins come
from the ``gstbench`` entry-point group. A plugin that fails to import, names a hook
that does not exist, or raises inside a hook is reported by name as a warning and left
out; everything else keeps working. ``GSTBENCH_STRICT_PLUGINS=1`` makes that an error.
``GSTBENCH_LOAD_PLUGINS=a,b`` loads only those installed plugins (empty: none);
``GSTBENCH_DISABLE_PLUGINS=a,b`` skips those.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import pluggy

from gstbench import hookspecs
from gstbench.components import KINDS, Component, describe
from gstbench.errors import PluginError, UnknownComponent, closest

hookimpl = pluggy.HookimplMarker("gstbench")

ENTRY_POINT_GROUP = "gstbench"
BUILTIN_NAME = "gstbench"
BUILTIN_PLUGINS = (
    "gstbench.builtin.scorers",
    "gstbench.builtin.targets",
    "gstbench.builtin.effectors",
    "gstbench.builtin.rewinds",
    "gstbench.builtin.metrics",
    "gstbench.builtin.models",
    "gstbench.builtin.datasets",
    "gstbench.builtin.cifar",
    "gstbench.builtin.executors",
    "gstbench.builtin.suites",
)


class PluginWarning(UserWarning):
    """A third-party plugin was left out; the message names it and says why."""


@dataclass
class PluginInfo:
    name: str
    version: str
    status: str  # loaded | failed | disabled
    error: str | None = None
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "hooks": self.hooks,
            "provides": self.provides,
        }


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class Registry:
    """All loaded components, by kind, addressable as ``plugin:name`` or a unique bare name."""

    def __init__(self, extra_plugins: Iterable[tuple[str, Any]] = ()):
        self.strict = os.environ.get("GSTBENCH_STRICT_PLUGINS", "") not in ("", "0")
        self.pm = pluggy.PluginManager("gstbench")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self._display: dict[str, str] = {}  # pluggy name -> plugin name in ids

        from gstbench import __version__

        for module_name in BUILTIN_PLUGINS:
            self._add(BUILTIN_NAME, importlib.import_module(module_name), __version__, module_name)
        self._load_entry_points()
        for name, plugin in extra_plugins:
            self._add(name, plugin, getattr(plugin, "__version__", "local"), name)
        self._collect()

    # ---- loading -------------------------------------------------------------------
    def _fail(self, name: str, version: str, message: str) -> None:
        self.plugins[name] = PluginInfo(name, version, "failed", error=message)
        text = f'gstbench plugin "{name}" was left out: {message}'
        if self.strict:
            raise PluginError(text + " (GSTBENCH_STRICT_PLUGINS is set)")
        warnings.warn(text + " (set GSTBENCH_DISABLE_PLUGINS=" + name + " to silence)", PluginWarning,
                      stacklevel=3)

    def _add(self, name: str, plugin: Any, version: str, pluggy_name: str) -> None:
        info = self.plugins.setdefault(name, PluginInfo(name, version, "loaded"))
        try:
            self.pm.register(plugin, name=pluggy_name)
        except Exception as exc:  # duplicate name, bad hookimpl signature
            self._fail(name, version, f"cannot register: {exc}")
            return
        unknown = [
            attr for attr in dir(plugin)
            if attr.startswith("register_") and self.pm.parse_hookimpl_opts(plugin, attr) is not None
            and getattr(getattr(self.pm.hook, attr, None), "spec", None) is None
        ]
        if unknown:
            self.pm.unregister(plugin)
            self._fail(name, version, f"implements unknown hook(s) {', '.join(unknown)}"
                       f"{closest(unknown[0], [h for h in dir(hookspecs) if h.startswith('register_')])}")
            return
        self._display[pluggy_name] = name
        info.hooks = sorted(set(info.hooks) | {
            impl_name for impl_name in dir(self.pm.hook)
            if not impl_name.startswith("_")
            and any(i.plugin_name == pluggy_name for i in getattr(self.pm.hook, impl_name).get_hookimpls())
        })

    def _load_entry_points(self) -> None:
        only = _env_list("GSTBENCH_LOAD_PLUGINS")
        disabled = _env_list("GSTBENCH_DISABLE_PLUGINS") or set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            version = ep.dist.version if ep.dist is not None else "?"
            if ep.name in disabled or (only is not None and ep.name not in only):
                self.plugins[ep.name] = PluginInfo(ep.name, version, "disabled")
                continue
            if ep.name in self.plugins:
                self._fail(ep.name, version, f"its name clashes with an already loaded plugin ({ep.value})")
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, version, f"import of {ep.value} failed: {type(exc).__name__}: {exc}")
                continue
            self._add(ep.name, plugin, version, ep.name)

    def _collect(self) -> None:
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in reversed(hook.get_hookimpls()):  # registration order
                plugin_name = self._display.get(impl.plugin_name, impl.plugin_name)
                if self.plugins[plugin_name].status == "failed":
                    continue
                added: list[Component] = []

                def register(name: str, factory: Any, *, description: str | None = None,
                             capabilities: Iterable[str] = (), revision: int = 1,
                             _kind: str = kind, _plugin: str = plugin_name) -> None:
                    if not isinstance(name, str) or not name or ":" in name or ("*" in name and name != "*"):
                        raise PluginError(f"invalid {_kind[:-1]} name {name!r} (a non-empty name without ':', "
                                          f"or '*' for a family)")
                    comp = Component(_kind, name, _plugin, factory, describe(factory, description),
                                     tuple(capabilities), int(revision))
                    if comp.id in self._components[_kind] or any(c.id == comp.id for c in added):
                        raise PluginError(f"registers the {_kind[:-1]} '{name}' twice; give each a unique name")
                    added.append(comp)

                try:
                    impl.function(register=register)
                except Exception as exc:
                    self._drop(plugin_name)
                    self._fail(plugin_name, self.plugins[plugin_name].version,
                               f"register_{kind} raised {type(exc).__name__}: {exc}")
                    continue
                for comp in added:
                    self._components[kind][comp.id] = comp
                    self.plugins[plugin_name].provides.setdefault(kind, []).append(comp.name)

    def _drop(self, plugin_name: str) -> None:
        for kind in KINDS:
            for cid in [c for c, comp in self._components[kind].items() if comp.plugin == plugin_name]:
                del self._components[kind][cid]
        self.plugins[plugin_name].provides = {}

    # ---- lookup --------------------------------------------------------------------
    def components(self, kind: str) -> list[Component]:
        self._check_kind(kind)
        return list(self._components[kind].values())

    def get(self, kind: str, name: str) -> Component:
        """Resolve ``plugin:name`` or a bare name that exactly one plugin provides."""
        self._check_kind(kind)
        table = self._components[kind]
        noun = kind[:-1]
        if ":" in name:
            if name in table:
                return table[name]
            plugin, bare = name.split(":", 1)
            if f"{plugin}:*" in table:
                return self._member(kind, table[f"{plugin}:*"], bare)
            raise UnknownComponent(f"unknown {noun} '{name}'{closest(name, table)}"
                                   f"; `gstbench list {kind}` shows them all")
        matches = [c for c in table.values() if c.name == name]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            ids = " and ".join(sorted(c.id for c in matches))
            raise UnknownComponent(f"{noun} name '{name}' is ambiguous: both {ids} provide it; write the full id")
        known = sorted({c.name for c in table.values()} | set(table))
        raise UnknownComponent(f"unknown {noun} '{name}'{closest(name, known)}; `gstbench list {kind}` shows them all")

    def _member(self, kind: str, family: Component, name: str) -> Component:
        """``plugin:name`` of a family (registered as ``*``): its resolver gives the factory, or raises."""
        try:
            factory = family.factory(name)
        except UnknownComponent:
            raise
        except Exception as exc:
            raise UnknownComponent(f"{kind[:-1]} '{family.plugin}:{name}': {type(exc).__name__}: {exc}") from None
        comp = Component(kind, name, family.plugin, factory, describe(factory, None) or family.description,
                         family.capabilities, family.revision)
        self._components[kind][comp.id] = comp
        return comp

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise UnknownComponent(f"unknown kind '{kind}'{closest(kind, KINDS)}; kinds are {', '.join(KINDS)}")

    def add_commands(self, cli: Any) -> None:
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            name = self._display.get(impl.plugin_name, impl.plugin_name)
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self._fail(name, self.plugins[name].version, f"register_commands raised {type(exc).__name__}: {exc}")


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded once on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry(registry: Registry | None = None) -> None:
    """Replace (or drop, to reload lazily) the process-wide registry; for tests and tools."""
    global _REGISTRY
    _REGISTRY = registry
