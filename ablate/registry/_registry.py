from __future__ import annotations

import functools
import importlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any, Generic, TypeVar

from ablate.errors import RegistryError, SpecError, did_you_mean

from . import _plugin_cache, _scan

T = TypeVar("T")

_BUILTIN_SOURCE = "ablate"
# The packages that hold the built-in components of each axis, imported on first lookup so that
# `import ablate.registry` stays cheap. Each declares its modules' components on import
# (Registry.declare_package) and imports no torch: the CLI lists and validates components without it.
_BUILTIN_PACKAGES: dict[str, tuple[str, ...]] = {
    "norms": ("ablate.norms",),
    "backbones": ("ablate.backbones",),
    "tasks": ("ablate.tasks",),
    "datasets": ("ablate.data",),
    "regularizers": ("ablate.regularizers",),
}


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered component and where it came from.

    A built-in declared by its import path (:meth:`Registry.declare`) is listed, described and
    validated without being imported: ``target`` names it, ``info`` is what it states about itself
    (each axis decides what; a norm its σ and parameters), and ``obj`` imports it on first access.
    """

    kind: str
    key: str
    source: str  # distribution name ("ablate" for built-ins) or the defining module
    version: str
    description: str
    target: str = ""  # "module:QualName" of a declared built-in; "" for one registered in code
    info: Any = None
    _obj: Any = field(default=None, repr=False, compare=False)
    _load: Callable[[], T] | None = field(default=None, repr=False, compare=False)

    @property
    def obj(self) -> T:
        """The component itself (a declared built-in's module is imported here, once)."""
        return self._load() if self._load is not None else self._obj  # type: ignore[no-any-return]


@dataclass
class _Pending:
    """An entry point not imported yet, or one that failed to import."""

    name: str
    value: str
    dist: str
    version: str
    error: str | None = None


def _first_line(obj: object) -> str:
    """The docstring's first paragraph on one line (a summary wrapped over two lines stays whole)."""
    return _scan.summary(inspect.getdoc(obj) or "")


def _ablate_version() -> str:
    from ablate import __version__

    return __version__


class Registry(Generic[T]):
    """A name → component mapping for one axis (norms, backbones, tasks, datasets, regularizers)."""

    def __init__(self, kind: str, group: str | None = None) -> None:
        self.kind = kind
        self.group = group or f"ablate.{kind}"
        self._entries: dict[str, Entry[T]] = {}
        self._pending: dict[str, _Pending] = {}
        # entry points whose key was taken already (by a built-in or another plugin): reported, not loaded
        self._conflicts: list[_Pending] = []
        self._plugin_keys: set[str] = set()  # keys registered while importing a plugin
        self._builtins_loaded = False
        self._plugins_scanned = False
        # set while a plugin module is imported, so its decorators record the distribution
        self._loading: _Pending | None = None

    # registration -------------------------------------------------------------------------
    def register(self, key: str, *, description: str | None = None) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``key``."""
        if not isinstance(key, str) or not key:
            raise RegistryError(f"{self.kind}: a registry key must be a non-empty string, got {key!r}")

        def deco(obj: T) -> T:
            self.add(key, obj, description=description)
            return obj

        return deco

    def add(self, key: str, obj: T, *, description: str | None = None, source: str | None = None,
            version: str | None = None) -> None:
        if source is None:
            if self._loading is not None:
                source, version = self._loading.dist, self._loading.version
            else:
                module = getattr(obj, "__module__", "") or ""
                if module == "ablate" or module.startswith("ablate."):
                    source, version = _BUILTIN_SOURCE, _ablate_version()
                else:
                    source, version = _dist_of_module(module)
        old = self._entries.get(key)
        if old is not None and not (old._load is not None and old.target == _target_of(obj)):
            raise RegistryError(
                f"duplicate {self.kind} key {key!r}: already registered by {old.source} "
                f"({_name_of(old)}), registered again by {source} ({_qualname(obj)})"
            )
        if old is not None:  # the declared built-in, imported: what it declared stays with it
            self._entries[key] = replace(old, _obj=obj, _load=None)
            return
        own = getattr(obj, "description", None)  # presets (NormPreset, TaskPreset) carry their own
        if not description and isinstance(own, str) and own and not isinstance(obj, type):
            description = own
        self._entries[key] = Entry(self.kind, key, source, version or "", description or _first_line(obj), _obj=obj)
        if self._loading is not None:  # only once accepted: reload_plugins must never drop a built-in
            self._plugin_keys.add(key)

    def declare(self, key: str, target: str, *, description: str, info: Any = None) -> None:
        """Register a built-in by its import path, so that listing and validating it imports nothing.

        ``target`` is ``"module:QualName"``; importing that module must register the same object under
        ``key`` itself (its ``@register`` decorator), so a declaration cannot silently point elsewhere.
        ``description`` is its docstring's first paragraph and ``info`` what the axis needs to validate
        a spec without importing it (a norm's :class:`~ablate.norms.NormInfo`). Built-ins are declared
        by :meth:`declare_package`, from their decorators; tests/registry/test_declared.py compares
        each declaration with the imported object.
        """
        old = self._entries.get(key)
        if old is not None and old._load is None and _target_of(old._obj) == target:
            # its module was imported first and registered it: the object stays, the declaration joins it
            self._entries[key] = replace(old, target=target, info=info)
            return
        if old is not None:
            raise RegistryError(f"duplicate {self.kind} key {key!r}: already registered by {old.source} "
                                f"({_name_of(old)})")
        self._entries[key] = Entry(self.kind, key, _BUILTIN_SOURCE, _ablate_version(), description, target, info,
                                   _load=lambda: self._import_declared(key))

    def declare_package(self, package: str, *, info: Callable[[_scan.Registration], Any] | None = None) -> None:
        """Declare every built-in that a module of ``package`` registers with ``@REG.register("key")``,
        read from the source without importing it; import the modules that register otherwise.

        Called by each built-in package's ``__init__`` (``NORMS.declare_package(__name__)``), so a
        built-in is added in one place, its decorator, and known to ``ablate validate`` whatever was
        imported before. ``info(registration)`` gives what the axis validates a spec with (a norm's
        ``NormInfo``); None leaves it to the imported object. See ``_scan`` for what is read.
        """
        module = importlib.import_module(package)
        name = self.kind.upper()  # NORMS, BACKBONES, ...: the name ablate.registry exports it under
        for dotted, path in _scan.package_modules(package, list(getattr(module, "__path__", []))):
            found, other = _scan.read_module(dotted, path.read_text(encoding="utf-8"), name)
            if other:  # presets, aliases, keys computed at import: only running the module tells
                importlib.import_module(dotted)
            for reg in found:
                self.declare(reg.key, reg.target, description=reg.description,
                             info=info(reg) if info is not None else None)

    # lookup -------------------------------------------------------------------------------
    def get(self, key: str) -> T:
        return self.entry(key).obj

    def entry(self, key: str) -> Entry[T]:
        """The entry of ``key`` (a plugin's module is imported here; a declared built-in's on ``.obj``)."""
        self._load_builtins()
        if key in self._entries:
            return self._entries[key]
        self._scan_plugins()
        pending = self._pending.get(key)
        if pending is not None:
            self._import_pending(pending)
            if key in self._entries:
                return self._entries[key]
            raise RegistryError(
                f"{self.kind} {key!r} comes from plugin {pending.dist} {pending.version}, which failed to "
                f"load: {pending.error}"
            )
        raise RegistryError(f"unknown {self.noun} {key!r} ({self._choices(key)})")

    def lookup(self, key: str, where: str) -> Entry[T]:
        """The entry of ``key`` as a spec names it at key path ``where``: :meth:`entry`, with a key that
        is not there a :class:`SpecError` (``norm.name: expected a registered norm, got 'tok_ln'
        (did you mean 'token_ln'?; valid: …)``), or the plugin's import error when it failed to load."""
        try:
            return self.entry(key)
        except RegistryError as err:
            pending = self._pending.get(key)
            hint = str(err) if pending is not None and pending.error else self._choices(key)
            raise SpecError(where, f"a registered {self.noun}", key, hint=hint) from None

    @property
    def noun(self) -> str:
        """One of this registry's components: "norm", "backbone", "dataset"."""
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def _choices(self, key: str) -> str:
        """"did you mean 'x'?; valid: a, b, c" for a key that is not there."""
        valid = self.keys()
        suggestion = did_you_mean(key, valid).strip(" ()")
        return (f"{suggestion}; " if suggestion else "") + f"valid: {', '.join(valid)}"

    def __contains__(self, key: object) -> bool:
        self._load_builtins()
        self._scan_plugins()
        if key in self._entries:
            return True
        pending = self._pending.get(key)  # type: ignore[call-overload]
        return pending is not None and pending.error is None

    def keys(self) -> list[str]:
        """All known keys, including plugins not imported yet."""
        self._load_builtins()
        self._scan_plugins()
        return sorted(set(self._entries) | {k for k, p in self._pending.items() if p.error is None})

    def entries(self) -> list[Entry[T]]:
        """Every entry, importing all plugins (a broken plugin warns and is skipped) but not the
        declared built-ins: their entries carry their description."""
        self._load_builtins()
        self._scan_plugins()
        for pending in list(self._pending.values()):
            self._import_pending(pending)
        return [self._entries[k] for k in sorted(self._entries)]

    def listing(self) -> tuple[list[Entry[T]], list[tuple[str, str, str]]]:
        """:meth:`entries` and :meth:`broken` as ``ablate plugins`` shows them, with each plugin whose
        listing is cached (see ``_plugin_cache``) described from the cache instead of imported.

        A cached entry imports its plugin on ``.obj``; nothing else reads the cache, so using a plugin
        (:meth:`entry`, :meth:`get`) always imports it.
        """
        self._load_builtins()
        self._scan_plugins()
        cached: dict[str, Entry[T]] = {}
        failed: list[tuple[str, str, str]] = []
        for pending in list(self._pending.values()):
            if pending.error is not None or pending.name in self._entries:
                continue
            key = _plugin_cache.fingerprint(self.group, pending.name, pending.value, pending.dist, pending.version)
            listing = _plugin_cache.lookup(key)
            if listing is None:  # imported as entries() does; its entries and error are now the registry's
                _plugin_cache.save(key, self._import_listed(pending))
                continue
            if listing.error:
                failed.append((pending.name, f"{pending.dist} {pending.version}".strip(), listing.error))
            for name, source, version, description in listing.rows:
                cached.setdefault(name, Entry(self.kind, name, source, version, description,
                                              _load=functools.partial(self._load_listed, pending, name)))
        entries = {**cached, **self._entries}  # anything imported meanwhile is described by itself
        return [entries[k] for k in sorted(entries)], self.broken() + failed

    def broken(self) -> list[tuple[str, str, str]]:
        """(key, distribution, error) of plugins that failed to import or clash with a taken key."""
        failed = [p for p in self._pending.values() if p.error] + self._conflicts
        return [(p.name, f"{p.dist} {p.version}".strip(), p.error or "") for p in failed]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def unregister(self, key: str) -> None:
        """Remove a key (for tests and interactive use)."""
        self._entries.pop(key, None)

    def reload_plugins(self) -> None:
        """Forget every entry-point plugin and scan again on next use (after installing one, or in tests).

        Built-ins and keys registered in code stay; a plugin module already imported is not re-imported.
        """
        for key in self._plugin_keys:
            self._entries.pop(key, None)
        self._plugin_keys.clear()
        self._pending.clear()
        self._conflicts.clear()
        self._plugins_scanned = False

    # loading ------------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in _BUILTIN_PACKAGES.get(self.kind, ()):
            importlib.import_module(module)

    def _import_declared(self, key: str) -> T:
        entry = self._entries[key]
        if entry._load is None:
            return entry.obj
        importlib.import_module(entry.target.split(":")[0])  # its @register decorators fill in the entries
        loaded = self._entries.get(key)
        if loaded is None or loaded._load is not None:
            raise RegistryError(f"built-in {self.kind} {key!r} is declared as {entry.target}, but importing it did "
                                f"not register {key!r}")
        return loaded.obj

    def _import_listed(self, pending: _Pending) -> _plugin_cache.Listing:
        """Import ``pending`` and return what listing it shows: the entries it added, its error."""
        before = set(self._entries)
        self._import_pending(pending)
        added = [self._entries[k] for k in sorted(set(self._entries) - before)]
        return _plugin_cache.Listing(tuple((e.key, e.source, e.version, e.description) for e in added),
                                     pending.error or "")

    def _load_listed(self, pending: _Pending, key: str) -> T:
        """The object behind an entry listed from the cache: its plugin imported for real."""
        self._import_pending(pending)
        if key not in self._entries:  # the cache was stale after all: say so as entry() would
            raise RegistryError(f"{self.kind} {key!r} was listed from plugin {pending.dist} {pending.version}, "
                                f"but importing it did not register it: {pending.error or 'no such key'}")
        return self._entries[key].obj

    def _scan_plugins(self) -> None:
        if self._plugins_scanned:
            return
        self._plugins_scanned = True
        if os.environ.get("ABLATE_DISABLE_PLUGIN_AUTOLOAD", "").lower() in {"1", "true", "yes"}:
            return
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            name = dist.metadata["Name"] if dist is not None else ep.value.split(":")[0]
            version = dist.version if dist is not None else ""
            # A key offered twice is never resolved silently: a clash with a built-in keeps the
            # built-in and reports the plugin; two plugins with one key make the key an error.
            if ep.name in self._entries:
                old = self._entries[ep.name]
                error = (f"duplicate {self.kind} key {ep.name!r}: already registered by {old.source} "
                         f"({_name_of(old)}), registered again by {name} {version} ({ep.value}); "
                         "the plugin's entry is ignored")
                self._conflicts.append(_Pending(ep.name, ep.value, name, version, error))
                warnings.warn(f"ablate plugin {name}: {error}", stacklevel=3)
            elif ep.name in self._pending:
                first = self._pending[ep.name]
                first.error = (f"duplicate {self.kind} key {ep.name!r}: registered by {first.dist} "
                               f"{first.version} ({first.value}) and by {name} {version} ({ep.value}); "
                               "uninstall one of them")
                warnings.warn(f"ablate plugins: {first.error}", stacklevel=3)
            else:
                self._pending[ep.name] = _Pending(ep.name, ep.value, name, version)

    def _import_pending(self, pending: _Pending) -> None:
        if pending.error is not None or pending.name in self._entries:
            return
        self._loading = pending
        try:
            obj = metadata.EntryPoint(pending.name, pending.value, self.group).load()
            if pending.name not in self._entries:
                self.add(pending.name, obj, source=pending.dist, version=pending.version)
        except RegistryError as err:
            pending.error = str(err)
            warnings.warn(f"ablate plugin {pending.dist}: {err}", stacklevel=3)
        except Exception as err:  # a broken plugin must not break the host
            pending.error = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"ablate plugin {pending.dist} {pending.version} ({self.group} {pending.name!r} = "
                f"{pending.value}) failed to import and is skipped: {pending.error}",
                stacklevel=3,
            )
        finally:
            self._loading = None


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _target_of(obj: Any) -> str:
    """``"module:QualName"``, the form :meth:`Registry.declare` names a built-in by."""
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


def _name_of(entry: Entry[Any]) -> str:
    """What registered ``entry``, without importing a declared built-in."""
    return entry.target.replace(":", ".") if entry._load is not None else _qualname(entry.obj)


def _dist_of_module(module: str) -> tuple[str, str]:
    top = module.split(".")[0]
    try:
        dists = metadata.packages_distributions().get(top, [])
        if dists:
            return dists[0], metadata.version(dists[0])
    except Exception:  # metadata can be odd in editable or zipped installs
        pass
    return module or "?", ""


NORMS: Registry[Any] = Registry("norms")
BACKBONES: Registry[Any] = Registry("backbones")
TASKS: Registry[Any] = Registry("tasks")
DATASETS: Registry[Any] = Registry("datasets")
REGULARIZERS: Registry[Any] = Registry("regularizers")
REGISTRIES: dict[str, Registry[Any]] = {r.kind: r for r in (NORMS, BACKBONES, TASKS, DATASETS, REGULARIZERS)}
