"""Plugin manager: loads built-in, installed and local plugins and collects their components.

Built-ins are ordinary plugins listed in ``BUILTIN_PLUGINS``. Third-party plugins come
from the ``gstbench`` entry-point group; local plugins are the ``*.py`` files of
``--plugins-dir`` (``$GSTBENCH_PLUGINS_DIR``), each named after its file. A plugin that
fails to import, names a hook that does not exist, or raises inside a hook is reported by
name, with the fix, as a warning and left out; everything else keeps working.
``GSTBENCH_STRICT_PLUGINS=1`` makes that an error. ``GSTBENCH_LOAD_PLUGINS=a,b`` loads
only those installed plugins (empty: none); ``GSTBENCH_DISABLE_PLUGINS=a,b`` skips those.
``GSTBENCH_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import inspect
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pluggy

from gstbench import hookspecs
from gstbench.components import KINDS, Component, TensorData
from gstbench.errors import GstbenchWarning, PluginError, UnknownComponent, closest
from gstbench.names import name_problem

if TYPE_CHECKING:  # annotations only: the plan's types, and torch, load when a command needs them
    from torch import nn

    from gstbench.plan.config import ComponentRef
    from gstbench.shapes import DataShape, ModelShape

hookimpl = pluggy.HookimplMarker("gstbench")

ENTRY_POINT_GROUP = "gstbench"
PLUGINS_DIR_ENV = "GSTBENCH_PLUGINS_DIR"
TRACE_ENV = "GSTBENCH_TRACE_PLUGINS"
BUILTIN_NAME = "gstbench"
BUILTIN_PLUGINS = (
    "gstbench.builtin.scorers",
    "gstbench.builtin.targets",
    "gstbench.builtin.effectors",
    "gstbench.builtin.rewinds",
    "gstbench.builtin.regularizers",
    "gstbench.builtin.metrics",
    "gstbench.builtin.models",
    "gstbench.builtin.datasets",
    "gstbench.builtin.cifar",
    "gstbench.builtin.executors",
    "gstbench.builtin.runtimes",
    "gstbench.builtin.suites",
)


class DuplicateName(PluginError):
    """A plugin registered one name twice for the same kind."""


class PluginWarning(GstbenchWarning):
    """A third-party plugin was left out; the message names it and says why."""


@dataclass
class PluginInfo:
    name: str
    version: str
    status: str  # loaded | failed | disabled
    error: str | None = None
    source: str = ""  # where it came from: the built-in modules, an entry point, or a file
    hooks: list[str] = field(default_factory=list)
    provides: dict[str, list[str]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "error": self.error,
            "source": self.source,
            "hooks": self.hooks,
            "provides": self.provides,
        }


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def _where(exc: BaseException) -> str:
    """' (at file.py:LINE)': the innermost frame of a plugin's exception outside gstbench itself."""
    core = str(Path(__file__).parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((core, "<"))]
    return f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""


def _directions(kind: str, name: str, better: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """A metric's ``better = {result key: "higher" | "lower"}``: what compare calls improved or regressed."""
    if not better:
        return ()
    if kind != "metrics":
        raise PluginError(f"'{name}' declares better directions, which only metrics have; leave better out")
    wrong = {k: v for k, v in better.items() if v not in ("higher", "lower") or not isinstance(k, str)}
    if wrong:
        raise PluginError(f"metric '{name}': better = {wrong!r} must map result keys to \"higher\" or \"lower\"")
    return tuple(sorted(better.items()))


def describe(factory: Any, description: str | None) -> str:
    """A component's one-line description: the one registered, else its factory's docstring's first line."""
    if description:
        return description
    doc = inspect.getdoc(factory) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


class Registry:
    """All loaded components, by kind, addressable as ``plugin:name`` or a unique bare name.

    ``installed`` False leaves out entry-point plugins (a test's fresh registry);
    ``plugins_dir`` defaults to ``$GSTBENCH_PLUGINS_DIR``; ``extra_plugins`` are
    ``(name, module or object)`` pairs registered last.
    """

    def __init__(self, extra_plugins: Iterable[tuple[str, Any]] = (), *, installed: bool = True,
                 plugins_dir: str | Path | None = None):
        self.strict = os.environ.get("GSTBENCH_STRICT_PLUGINS", "") not in ("", "0")
        self.trace = os.environ.get(TRACE_ENV, "") not in ("", "0")
        self.pm = pluggy.PluginManager("gstbench")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Component]] = {k: {} for k in KINDS}
        self._display: dict[str, str] = {}  # pluggy name -> plugin name in ids

        from gstbench import __version__

        for module_name in BUILTIN_PLUGINS:
            self._add(BUILTIN_NAME, importlib.import_module(module_name), __version__, module_name,
                      "built-in")
        if installed:
            self._load_entry_points()
        directory = plugins_dir if plugins_dir is not None else os.environ.get(PLUGINS_DIR_ENV)
        if directory:
            self._load_directory(Path(directory))
        for name, plugin in extra_plugins:
            self._add(name, plugin, getattr(plugin, "__version__", "local"), name,
                      getattr(plugin, "__file__", None) or repr(plugin))
        self._collect()

    # ---- loading -------------------------------------------------------------------
    def _say(self, message: str) -> None:
        if self.trace:
            print(f"gstbench trace: {message}", file=sys.stderr, flush=True)

    def _fail(self, name: str, version: str, message: str, fix: str = "", source: str | None = None) -> None:
        """Record the plugin as failed and warn; ``source`` given: a second plugin of an already used name."""
        clash = source is not None
        key = f"{name} ({source})" if clash else name
        if not clash:
            source = self.plugins[name].source if name in self.plugins else ""
        self.plugins[key] = PluginInfo(name, version, "failed", error=message + (f"; {fix}" if fix else ""),
                                       source=source)
        self._say(f'plugin "{name}" failed: {message}')
        text = f'gstbench plugin "{name}" was left out: {message}'
        if fix:
            text += f"; {fix}"
        if self.strict:
            raise PluginError(text + " (GSTBENCH_STRICT_PLUGINS is set)")
        if source.startswith("entry point") and not clash:  # the variable names installed plugins only
            text += f" (or leave it out: GSTBENCH_DISABLE_PLUGINS={name})"
        warnings.warn(text, PluginWarning, stacklevel=3)

    def _claim(self, name: str, version: str, source: str, fix: str) -> bool:
        """Record a plugin about to load under ``name``; False, and a failure, when another plugin has it."""
        taken = self.plugins.get(name)
        if taken is not None and taken.source != source and taken.status != "disabled":
            self._fail(name, version, f"its name clashes with the plugin from {taken.source}", fix, source=source)
            return False
        if taken is None or taken.source != source:
            self.plugins[name] = PluginInfo(name, version, "loaded", source=source)
        return True

    def _add(self, name: str, plugin: Any, version: str, pluggy_name: str, source: str) -> None:
        if not self._claim(name, version, source, "rename one of them"):
            return
        info = self.plugins[name]
        try:
            self.pm.register(plugin, name=pluggy_name)
        except Exception as exc:  # a hook with parameters its spec lacks, or the same module twice
            self._fail(name, version, f"cannot register: {exc}",
                       "a hook takes only the parameters named in gstbench/hookspecs.py (e.g. `register`)")
            return
        marked = [attr for attr in dir(plugin) if self.pm.parse_hookimpl_opts(plugin, attr) is not None]
        unknown = [attr for attr in marked if getattr(getattr(self.pm.hook, attr, None), "spec", None) is None]
        if unknown:
            self.pm.unregister(plugin)
            hooks = [h for h in dir(hookspecs) if h.startswith("register_")]
            self._fail(name, version, f"implements unknown hook(s) {', '.join(unknown)}"
                       f"{closest(unknown[0], hooks)}",
                       "rename it to one of the hooks in docs/plugins.md, or drop its @hookimpl")
            return
        self._display[pluggy_name] = name
        info.hooks = sorted(set(info.hooks) | set(marked))
        self._say(f'loaded plugin "{name}" {version} from {source} (hooks: {", ".join(marked) or "none"})')

    def _load_entry_points(self) -> None:
        only = _env_list("GSTBENCH_LOAD_PLUGINS")
        disabled = _env_list("GSTBENCH_DISABLE_PLUGINS") or set()
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            version = ep.dist.version if ep.dist is not None else "?"
            source = f"entry point {ep.name} = {ep.value}"
            if ep.name in disabled or (only is not None and ep.name not in only):
                self.plugins[ep.name] = PluginInfo(ep.name, version, "disabled", source=source)
                continue
            if not self._claim(ep.name, version, source, "rename one of the entry points"):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, version, f"import of {ep.value} failed: {type(exc).__name__}: {exc}{_where(exc)}",
                           "install what it needs, or fix the import")
                continue
            self._add(ep.name, plugin, version, ep.name, source)

    def _load_directory(self, directory: Path) -> None:
        """Every ``*.py`` file of ``directory`` as a plugin named after the file (``snip.py``: ``snip:...``)."""
        if not directory.is_dir():
            raise PluginError(f"plugins directory {directory} does not exist (--plugins-dir / ${PLUGINS_DIR_ENV})")
        for path in sorted(directory.glob("*.py")):
            name = path.stem
            if not self._claim(name, "local", str(path), "rename the file"):
                continue
            module_name = f"gstbench_plugins_dir.{name}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module  # classes defined there pickle by this name
                spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(module_name, None)
                self._fail(name, "local", f"import of {path} failed: {type(exc).__name__}: {exc}{_where(exc)}",
                           "fix the file")
                continue
            self._add(name, module, "local", module_name, str(path))

    def _collect(self) -> None:
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"register_{kind}")
            for impl in reversed(hook.get_hookimpls()):  # registration order
                plugin_name = self._display.get(impl.plugin_name, impl.plugin_name)
                if self.plugins[plugin_name].status == "failed":
                    continue
                added: list[Component] = []

                def register(name: str, factory: Any, *, description: str | None = None,
                             capabilities: Iterable[str] = (), revision: int = 1, better: dict[str, str] | None = None,
                             _kind: str = kind, _plugin: str = plugin_name) -> None:
                    problem = None if name == "*" else name_problem(name)
                    if problem:  # names reach result labels and trackers' directories: never a path
                        raise PluginError(f"invalid {_kind[:-1]} name: {problem}, or '*' for a family")
                    comp = Component(_kind, name, _plugin, factory, describe(factory, description),
                                     tuple(capabilities), int(revision), _directions(_kind, name, better))
                    if comp.id in self._components[_kind] or any(c.id == comp.id for c in added):
                        raise DuplicateName(f"registers the {_kind[:-1]} '{name}' twice")
                    added.append(comp)

                t0 = time.perf_counter()
                try:
                    impl.function(register=register)
                except Exception as exc:
                    self._drop(plugin_name)
                    fix = ("give each component of a kind its own name" if isinstance(exc, DuplicateName)
                           else "fix the hook")
                    self._fail(plugin_name, self.plugins[plugin_name].version,
                               f"register_{kind} raised {type(exc).__name__}: {exc}{_where(exc)}", fix)
                    continue
                self._say(f"{plugin_name}.register_{kind}(register) registered "
                          f"{', '.join(c.name for c in added) or 'nothing'} "
                          f"({(time.perf_counter() - t0) * 1000:.1f} ms)")
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

    def better_directions(self) -> dict[str, str]:
        """Result key -> "higher" or "lower", as the registered metrics declare them (compare asks)."""
        return {key: way for comp in self._components["metrics"].values() for key, way in comp.better}

    def _member(self, kind: str, family: Component, name: str) -> Component:
        """``plugin:name`` of a family (registered as ``*``): its resolver gives the factory, or raises."""
        try:
            factory = family.factory(name)
        except UnknownComponent:
            raise
        except Exception as exc:
            raise UnknownComponent(f"{kind[:-1]} '{family.plugin}:{name}': {type(exc).__name__}: {exc}") from None
        comp = Component(kind, name, family.plugin, factory, describe(factory, None) or family.description,
                         family.capabilities, family.revision, family.better)
        self._components[kind][comp.id] = comp
        return comp

    # ---- what a cell chose ------------------------------------------------------------
    def component(self, kind: str, ref: ComponentRef) -> Component:
        """The registered component a cell's ref names (its id without the hash's ``@revision``)."""
        return self.get(kind, ref.registered_id)

    def build(self, kind: str, ref: ComponentRef, *args: Any) -> Any:
        """The object a cell's ref asks for: its factory called with ``args`` and the ref's options."""
        return self.component(kind, ref).factory(*args, **ref.kwargs)

    def load_data(self, ref: ComponentRef, placeholder: bool = False) -> TensorData:
        """A dataset; ``placeholder`` takes the dataset's stand-in, if it offers one, instead of its files."""
        factory = self.component("datasets", ref).factory
        if placeholder and hasattr(factory, "placeholder"):
            return factory.placeholder()
        return self.build("datasets", ref)

    def data_shape(self, ref: ComponentRef) -> DataShape | None:
        """A dataset's sizes from its factory's ``shape`` (gstbench/shapes.py), without loading it; None if it
        declares none."""
        shape = getattr(self.component("datasets", ref).factory, "shape", None)
        return None if shape is None else shape(**ref.kwargs)

    def model_shape(self, ref: ComponentRef, data: DataShape) -> ModelShape | None:
        """A model's prunable layers and MACs from its factory's ``shapes``, without building it; None if it
        declares none."""
        shapes = getattr(self.component("models", ref).factory, "shapes", None)
        return None if shapes is None else shapes(data.input_shape, data.num_classes, **ref.kwargs)

    def build_model(self, ref: ComponentRef, data: TensorData) -> nn.Module:
        """A model for ``data``'s input shape and classes."""
        from torch import nn

        model = self.build("models", ref, data.input_shape, data.num_classes)
        if not isinstance(model, nn.Module):
            raise TypeError(f"model {ref.id} returned {type(model).__name__}, not an nn.Module")
        return model

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise UnknownComponent(f"unknown kind '{kind}'{closest(kind, KINDS)}; kinds are {', '.join(KINDS)}")

    def add_commands(self, cli: Any) -> None:
        for impl in reversed(self.pm.hook.register_commands.get_hookimpls()):
            name = self._display.get(impl.plugin_name, impl.plugin_name)
            if self.plugins[name].status == "failed":
                continue
            try:
                impl.function(cli=cli)
            except Exception as exc:
                self._fail(name, self.plugins[name].version,
                           f"register_commands raised {type(exc).__name__}: {exc}{_where(exc)}", "fix the hook")
                continue
            self._say(f"{name}.register_commands(cli)")


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
