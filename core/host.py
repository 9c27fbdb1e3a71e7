"""The plugin host: built-in plugins first, then the ``promptopt`` entry-point group.

Each registration hook is called plugin by plugin, so every registered name remembers its
plugin and one broken plugin is reported and skipped without stopping the others
(``PROMPTOPT_STRICT_PLUGINS=1`` makes any plugin failure fatal).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, UsageError
from .registry import Entry, Registry

log = logging.getLogger("promptopt")

GROUP = "promptopt"
KINDS = ("models", "instruments", "scorers", "optimizers", "targets")
DEFAULT_PLUGINS = (
    "promptopt.plugins.models",
    "promptopt.plugins.instruments",
    "promptopt.plugins.optimizers",
    "promptopt.plugins.targets",
    "promptopt.plugins.eventlog",
)
DEFAULT_TARGET_TABLE = "hofstede"


@dataclass
class PluginFailure:
    plugin: str
    distribution: str
    reason: str

    def message(self) -> str:
        return f'Error importing plugin "{self.plugin}" (distribution {self.distribution}): {self.reason}'


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    return None if value is None else {v.strip() for v in value.split(",") if v.strip()}


def _validate_optimizer(name: str, cls: Any) -> None:
    from promptopt.optimizers import Optimizer

    if name.endswith(":*"):
        return  # a family factory; its members are validated when resolved
    if not (inspect.isclass(cls) and issubclass(cls, Optimizer)):
        raise PluginError(f'optimizer "{name}" must be a subclass of promptopt.optimizers.Optimizer, got {cls!r}')


class PluginHost:
    """Loads plugins and offers a typed lookup by name for each kind of registered thing."""

    def __init__(self, load_entrypoints: bool = True, strict: bool | None = None,
                 extra_plugins: tuple[Any, ...] = ()) -> None:
        self.strict = strict if strict is not None else os.environ.get("PROMPTOPT_STRICT_PLUGINS") == "1"
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.info: dict[str, PluginInfo] = {}
        self.registries = {kind: Registry(kind.rstrip("s"), _validate_optimizer if kind == "optimizers" else None)
                           for kind in KINDS}
        from promptopt import __version__

        for module in DEFAULT_PLUGINS:
            self._add(importlib.import_module(module), module, "promptopt", __version__)
        for plugin in extra_plugins:
            self._add(plugin, getattr(plugin, "__name__", repr(plugin)), "(in-process)", "")
        if load_entrypoints:
            self._load_entrypoints()
        self._collect()

    # -- loading -------------------------------------------------------------------------
    def _add(self, plugin: Any, name: str, dist: str, version: str) -> None:
        if inspect.isclass(plugin):
            plugin = plugin()  # an entry point may name a class whose methods are hookimpls
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()  # a misspelled hook name fails loudly, not silently
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            self._fail(name, dist, f"{exc} (misspelled hook name?)")
            return
        hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        self.info[name] = PluginInfo(name, dist, version, hooks)

    def _load_entrypoints(self) -> None:
        allow, deny = _env_list("PROMPTOPT_LOAD_PLUGINS"), _env_list("PROMPTOPT_DISABLE_PLUGINS") or set()
        for ep in entry_points(group=GROUP):
            if (allow is not None and ep.name not in allow) or ep.name in deny:
                continue
            dist = ep.dist.name if ep.dist else "unknown"
            version = ep.dist.version if ep.dist else ""
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolate any plugin failure
                self._fail(ep.name, dist, f"{type(exc).__name__}: {exc}")
                continue
            try:
                self._add(plugin, ep.name, dist, version)
            except Exception as exc:  # noqa: BLE001
                self._fail(ep.name, dist, f"{type(exc).__name__}: {exc}")

    def _collect(self) -> None:
        """Call each registration hook one plugin at a time, in registration order (built-ins first)."""
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"promptopt_register_{kind}")
            for impl in caller.get_hookimpls():
                name = impl.plugin_name
                if name not in self.info:
                    continue  # already failed and removed
                register = partial(self._register, kind, name)
                try:
                    impl.function(register=register)
                except Exception as exc:  # noqa: BLE001
                    self._drop(name, f"{type(exc).__name__}: {exc}")

    def _register(self, kind: str, plugin: str, name: str, factory: Any, description: str = "") -> None:
        self.registries[kind].add(name, factory, description, plugin=plugin)
        self.info[plugin].registered.setdefault(kind, []).append(name)

    def _drop(self, plugin: str, reason: str) -> None:
        info = self.info.pop(plugin)
        for registry in self.registries.values():
            registry.remove_plugin(plugin)
        self.pm.unregister(name=plugin)
        if info.distribution == "promptopt":
            raise PluginError(f'built-in plugin "{plugin}" failed: {reason}')
        self._fail(plugin, info.distribution, reason)

    def _fail(self, plugin: str, dist: str, reason: str) -> None:
        failure = PluginFailure(plugin, dist, reason)
        if self.strict:
            raise PluginError(failure.message())
        log.warning(failure.message())
        self.failures.append(failure)

    # -- typed lookups -------------------------------------------------------------------
    def entry(self, kind: str, name: str) -> Entry:
        return self.registries[kind].get(name)

    def create_model(self, name: str, device: str = "cpu", dtype: str | None = None):
        """A model by registered name, else a local path or cached Hugging Face id."""
        if name in self.registries["models"]:
            return self.registries["models"].get(name).factory(device=device, dtype=dtype)
        from promptopt.models import load_pretrained

        if Path(name).expanduser().exists() or "/" in name:
            try:
                return load_pretrained(name, device=device, dtype=dtype)
            except FileNotFoundError as exc:
                raise UsageError(str(exc)) from None
        self.registries["models"].get(name)  # raises the unknown-name error listing the models
        raise AssertionError("unreachable")

    def create_instrument(self, name: str):
        """A registered instrument, or an instrument TOML file given by path."""
        if name.endswith(".toml") or Path(name).is_file():
            from promptopt.objectives import load_instrument

            if not Path(name).is_file():
                raise UsageError(f"instrument file {name} does not exist; give a path to a TOML survey")
            try:
                return load_instrument(name)
            except (ValueError, KeyError) as exc:
                raise UsageError(str(exc).strip("'\"")) from None
        return self.entry("instruments", name).factory()

    def create_scorer(self, instrument, name: str | None = None, constants: dict | None = None):
        """The named scorer, else the instrument's own ([scorer] table) or the one named like it."""
        if name is None:
            own = getattr(instrument, "scorer", None)
            if own is not None:
                return own.with_constants(**constants) if constants else own
            name = instrument.name
        return self.entry("scorers", name).factory(constants=constants)

    def optimizer_class(self, name: str) -> type:
        entry = self.entry("optimizers", name)
        if not entry.name.endswith(":*"):
            return entry.factory
        member = name.partition(":")[2]
        try:
            cls = entry.factory(member)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        _validate_optimizer(name, cls)
        return cls

    def target(self, query: str, table: str = DEFAULT_TARGET_TABLE):
        try:
            return self.entry("targets", table).factory().resolve(query)
        except (ValueError, KeyError) as exc:
            raise UsageError(str(exc).strip("'\"")) from None
