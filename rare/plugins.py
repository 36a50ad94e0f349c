"""Plugin discovery (entry-point group ``rare``) and the name registries built from it.

Besides the entry points, the core's own built-in plugins (:data:`BUILTIN_PLUGINS`, modules
of rare-synth) are registered under their module names.

Environment variables:
  RARE_PLUGINS          comma-separated allow-list of plugin (entry point, module or
                        distribution) names; when set, only those load.
  RARE_DISABLE_PLUGINS  comma-separated block-list; those never load.
  RARE_TRACE_HOOKS      when set, every hook call is traced to stderr.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pluggy

from rare import hookspecs
from rare.errors import PluginError, UnknownNameError

GROUP = "rare"
KINDS = ("operators", "retrievers", "servings", "exporters")
# Modules of the core that implement hooks, registered after the entry points' plugins.
BUILTIN_PLUGINS = ("rare.bench.references",)

# Where a well-known name comes from, for the "unknown name" message.
INSTALL_HINTS = {
    ("retrievers", "tantivy"): "rare-bm25-rs",
    ("retrievers", "pyserini"): "rare-pyserini",
    ("retrievers", "gensim"): "rare-gensim",
    ("servings", "embedded"): "rare-embedded",
    ("servings", "openai"): "rare-openai",
    ("operators", "Doc2Query"): "rare-stages",
    **{("exporters", name): "rare-export"
       for name in ("sharegpt", "alpaca", "chat", "triplets", "ntuple", "beir", "hf")},
}

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False
_distributions: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)


def _env_names(var: str) -> set[str]:
    return {part.strip() for part in os.environ.get(var, "").split(",") if part.strip()}


def load_plugins() -> None:
    """Load every plugin advertised under the ``rare`` entry-point group, once."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        if os.environ.get("RARE_TRACE_HOOKS"):
            pm.trace.root.setwriter(sys.stderr.write)
            pm.enable_tracing()
        allow = _env_names("RARE_PLUGINS")
        block = _env_names("RARE_DISABLE_PLUGINS")
        for ep in importlib.metadata.entry_points(group=GROUP):
            dist_name = ep.dist.name if ep.dist is not None else ""
            names = {ep.name, dist_name}
            if (allow and not names & allow) or names & block:
                continue
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must say who it is
                raise PluginError(
                    f"plugin {ep.name!r} (from {dist_name or 'unknown distribution'}, "
                    f"entry point {ep.value!r}) failed to load: {exc!r}. "
                    f"Set RARE_DISABLE_PLUGINS={ep.name} to skip it."
                ) from exc
            pm.register(plugin, name=ep.name)
            version = ep.dist.version if ep.dist is not None else ""
            _distributions[ep.name] = (dist_name, version)
        _load_builtins(allow, block)
        pm.check_pending()


def _load_builtins(allow: set[str], block: set[str]) -> None:
    dist_name = "rare-synth"
    try:
        version = importlib.metadata.version(dist_name)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        version = ""
    for module in BUILTIN_PLUGINS:
        names = {module, dist_name}
        if (allow and not names & allow) or names & block:
            continue
        if pm.get_plugin(module) is not None or pm.is_blocked(module):
            continue
        try:
            plugin = importlib.import_module(module)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin {module!r} of {dist_name} failed to load: {exc!r}. "
                f"Set RARE_DISABLE_PLUGINS={module} to skip it."
            ) from exc
        pm.register(plugin, name=module)
        _distributions[module] = (dist_name, version)


@dataclass
class Entry:
    name: str
    obj: Any
    plugin: str
    aliases: tuple[str, ...] = ()


@dataclass
class Registry:
    """Names of one kind (operators, retrievers, servings, exporters) mapped to what
    registered them."""

    kind: str
    entries: dict[str, Entry] = field(default_factory=dict)
    lookup: dict[str, Entry] = field(default_factory=dict)

    def add(self, obj: Any, name: str | None, plugin: str, aliases: Iterable[str] = ()) -> None:
        name = name or getattr(obj, "__name__", None)
        if not name:
            raise PluginError(f"plugin {plugin!r} registered an unnamed {self.kind[:-1]}: {obj!r}")
        entry = Entry(name, obj, plugin, tuple(aliases))
        for key in (name, *entry.aliases):
            other = self.lookup.get(key)
            if other is not None and other.obj is not obj:
                raise PluginError(
                    f"{self.kind[:-1]} name {key!r} is registered twice: by plugin "
                    f"{other.plugin!r} and by plugin {plugin!r}. Disable one of them "
                    f"with RARE_DISABLE_PLUGINS."
                )
            self.lookup[key] = entry
        # The class name finds it too (rare.retrievers.TantivyRetriever), unless taken.
        self.lookup.setdefault(getattr(obj, "__name__", name), entry)
        self.entries[name] = entry

    def get(self, name: str) -> Any:
        entry = self.lookup.get(name)
        if entry is None:
            known = ", ".join(sorted(self.lookup)) or "none"
            hint = INSTALL_HINTS.get((self.kind, name))
            install = f" Install it with: pip install {hint}" if hint else ""
            raise UnknownNameError(
                f"unknown {self.kind[:-1]} {name!r}; known {self.kind}: {known}.{install}"
            )
        return entry.obj

    def names(self) -> list[str]:
        return sorted(self.entries)


# Keyed by the plugin objects themselves, not their ids: the cache holds them, so a plugin
# registered after another was unregistered cannot reuse its id and be given a stale registry.
_cache: dict[str, tuple[frozenset[object], Registry]] = {}
# What each register() call added, on the tracer RARE_TRACE_HOOKS turns on (silent otherwise).
_registry_trace = pm.trace.root.get("registry")


def _plugin_name(plugin: object) -> str:
    return pm.get_name(plugin) or repr(plugin)


class _Register:
    """The ``register`` callback one plugin's hook gets: what it registers is that plugin's.

    Its ``str`` names the plugin and the kind, which is what hook tracing prints for the
    ``register`` argument of each call.
    """

    def __init__(self, registry: Registry, plugin: str) -> None:
        self.registry = registry
        self.plugin = plugin

    def __call__(self, obj: Any, name: str | None = None, aliases: Iterable[str] = ()) -> None:
        aliases = tuple(aliases)
        self.registry.add(obj, name, self.plugin, aliases)
        also = f"(aliases: {', '.join(aliases)})" if aliases else ""
        _registry_trace(self.registry.kind, name or getattr(obj, "__name__", repr(obj)),
                        *([also] if also else []), "from plugin", repr(self.plugin))

    def __repr__(self) -> str:
        return f"<register {self.registry.kind} for plugin {self.plugin!r}>"


def get_registry(kind: str) -> Registry:
    """The registry of ``kind``, rebuilt whenever the set of registered plugins changed.

    The hook ``register_<kind>`` is called through pluggy once per plugin that implements it
    (a subset hook caller holding that plugin alone), in registration order, so every call
    shows in hook tracing and every name is attributed to the plugin that registered it.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    load_plugins()
    with _lock:
        key = frozenset(pm.get_plugins())
        cached = _cache.get(kind)
        if cached is not None and cached[0] == key:
            return cached[1]
        registry = Registry(kind)
        hook_name = f"register_{kind}"
        impls = getattr(pm.hook, hook_name).get_hookimpls()
        for impl in impls:  # registration order (pluggy itself calls the last one first)
            others = [other.plugin for other in impls if other.plugin is not impl.plugin]
            call_one = pm.subset_hook_caller(hook_name, others)
            try:
                call_one(register=_Register(registry, impl.plugin_name))
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"plugin {impl.plugin_name!r} failed in {hook_name}: {exc!r}"
                ) from exc
        _cache[kind] = (key, registry)
        return registry


def get(kind: str, name: str) -> Any:
    """Look ``name`` up in the registry of ``kind``."""
    return get_registry(kind).get(name)


def plugin_info() -> list[dict[str, Any]]:
    """One record per loaded plugin: name, distribution, version and what it registered."""
    registries = {kind: get_registry(kind) for kind in KINDS}
    out = []
    for plugin in pm.get_plugins():
        name = _plugin_name(plugin)
        dist, version = _distributions.get(name, ("", ""))
        registered = {
            kind: sorted(e.name for e in registries[kind].entries.values() if e.plugin == name)
            for kind in KINDS
        }
        out.append({"name": name, "distribution": dist or None, "version": version or None,
                    "registered": registered})
    return sorted(out, key=lambda info: info["name"])


def namespace(kind: str) -> tuple[Any, Any]:
    """``names()`` and a module ``__getattr__`` that resolve attributes through a registry.

    ``rare.operators``, ``rare.retrievers`` and ``rare.serving`` are such namespaces, so a
    plugin's class is importable like a built-in one: ``from rare.operators import X``.
    """

    def names() -> list[str]:
        return get_registry(kind).names()

    def __getattr__(attr: str) -> Any:  # noqa: N807 - a module's __getattr__
        if attr.startswith("__"):
            raise AttributeError(attr)
        return get(kind, attr)

    return names, __getattr__
