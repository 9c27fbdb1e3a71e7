"""The plugin host: built-in plugins first, then the ``promptopt`` entry-point group.

Each registration hook is called plugin by plugin, so every registered name remembers its
plugin and one broken plugin is reported and skipped without stopping the others
(``PROMPTOPT_STRICT_PLUGINS=1`` makes any plugin failure fatal). Everything registered is
validated by the same checks whether it comes from a built-in or a third-party plugin:
signatures when it is registered (cheap), and what a factory returns the first time it is
created (instruments, scorers, models and target tables are not built at start-up, so a
``promptopt list`` never pays for loading every plugin's data).
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Callable, Iterator

import pluggy

from . import hookspecs, validation
from .errors import PluginError, PromptoptError, UsageError, exception_line, one_line
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
NOUNS = {"targets": "target table"}  # what one registered name is, in messages: a table, not a country
BUILTIN_DISTRIBUTION = "promptopt"
# Hooks whose implementations are called by the host one plugin at a time (with `register`).
REGISTRATION_HOOKS = tuple(f"promptopt_register_{kind}" for kind in KINDS)
HOOK_PREFIX = "promptopt_"
HOOK_NAMES = sorted(name for name, fn in vars(hookspecs).items() if hasattr(fn, "promptopt_spec"))


@dataclass
class PluginFailure:
    plugin: str
    distribution: str
    reason: str
    stage: str = "registering"  # or "importing": only an import error says the plugin did not import

    def message(self) -> str:
        return f'Error {self.stage} plugin "{self.plugin}" (distribution {self.distribution}): {self.reason}'

    def fatal(self) -> str:
        """The text of the PluginError a strict host raises (the CLI adds "Error: " itself)."""
        verb = "import" if self.stage == "importing" else "register"
        return (f'could not {verb} plugin "{self.plugin}" (distribution {self.distribution}): {self.reason} '
                "(fatal: PROMPTOPT_STRICT_PLUGINS=1)")


@dataclass
class HookError:
    """A lifecycle or command hook of a loaded plugin raised; the run went on without it."""

    plugin: str
    hook: str
    reason: str

    def message(self, strict: bool = False) -> str:
        """The warning when ignored; when strict, a PluginError's text (the CLI adds "Error: " itself)."""
        if strict:
            return f'plugin "{self.plugin}", hook {self.hook} raised {self.reason} (fatal: PROMPTOPT_STRICT_PLUGINS=1)'
        return f'Error in plugin "{self.plugin}", hook {self.hook}: {self.reason} (ignored; PROMPTOPT_STRICT_PLUGINS=1 makes it fatal)'


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "builtin": self.builtin, "hooks": list(self.hooks),
                "registered": {k: list(v) for k, v in self.registered.items()}}


def _reason(exc: Exception) -> str:
    """A plugin's error message; str() of a KeyError is the repr of its message, quotes and all."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc)


def _dist(ep: EntryPoint) -> tuple[str, str]:
    return (ep.dist.name, ep.dist.version) if ep.dist else ("unknown", "")


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    return None if value is None else {v.strip() for v in value.split(",") if v.strip()}


def is_model_path(name: str) -> bool:
    """Whether a --model value names a file or folder (or a Hugging Face id, org/name) rather than a
    registered model."""
    return "/" in name or name.startswith((".", "~")) or name.lower().endswith(".gguf") or Path(name).expanduser().exists()


class PluginHost:
    """Loads plugins and offers a typed lookup by name for each kind of registered thing."""

    def __init__(self, load_entrypoints: bool = True, strict: bool | None = None,
                 extra_plugins: tuple[Any, ...] = ()) -> None:
        self.strict = strict if strict is not None else os.environ.get("PROMPTOPT_STRICT_PLUGINS") == "1"
        self.pm = pluggy.PluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.hook_errors: list[HookError] = []
        self.info: dict[str, PluginInfo] = {}
        self.registries = {kind: Registry(NOUNS.get(kind, kind.rstrip("s")), partial(self._validate, kind))
                           for kind in KINDS}
        self._checked: set[tuple[str, str]] = set()
        from promptopt import __version__

        for module in DEFAULT_PLUGINS:
            self._add(importlib.import_module(module), module, BUILTIN_DISTRIBUTION, __version__)
        for plugin in extra_plugins:
            self._add(plugin, getattr(plugin, "__name__", None) or type(plugin).__name__, "(in-process)", "")
        if load_entrypoints:
            self._load_entrypoints()
        self._collect()

    @staticmethod
    def _validate(kind: str, name: str, factory: Any) -> None:
        validation.VALIDATORS[kind](name, factory)  # looked up at call time, so tests can observe it

    # -- loading -------------------------------------------------------------------------
    def _add(self, plugin: Any, name: str, dist: str, version: str) -> None:
        registered = False
        try:
            if inspect.isclass(plugin):
                plugin = plugin()  # an entry point may name a class whose methods are hookimpls
            self._check_names(plugin)
            self.pm.register(plugin, name=name)  # validates hookimpl argument names against the specs
            registered = True
            self.pm.check_pending()  # a decorated hook no spec knows (caught above unless optional)
            self._check_impls(plugin)
        except Exception as exc:  # noqa: BLE001 - isolate any plugin failure, in-process ones too
            if registered:
                self.pm.unregister(plugin)
            reason = str(exc) if isinstance(exc, PluginError) else exception_line(exc, "; ")
            if dist == BUILTIN_DISTRIBUTION:
                raise PluginError(f'built-in plugin "{name}" failed: {reason}') from exc
            self._fail(name, dist, reason)
            return
        hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
        self.info[name] = PluginInfo(name, dist, version, hooks)
        if dist != BUILTIN_DISTRIBUTION:
            self._guard_hooks(plugin, name)

    def _impls(self, plugin: Any):
        for caller in self.pm.get_hookcallers(plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin:
                    yield caller, impl

    def _check_names(self, plugin: Any) -> None:
        """pluggy silently skips a ``promptopt_*`` function that is not decorated, so a plugin would
        load and do nothing; an undecorated or unknown hook name fails the plugin instead."""
        for attr in dir(plugin):
            if not attr.startswith(HOOK_PREFIX):
                continue
            value = inspect.getattr_static(plugin, attr, None)  # a property is not run
            if not (callable(value) or isinstance(value, (staticmethod, classmethod))):
                continue
            opts = self.pm.parse_hookimpl_opts(plugin, attr)
            hook = (opts or {}).get("specname") or attr
            if opts is not None and hook in HOOK_NAMES:
                self._check_arguments(plugin, attr, hook)
                continue
            if opts is not None and opts.get("optionalhook"):
                continue
            close = difflib.get_close_matches(hook, HOOK_NAMES, n=1)
            hint = f"; did you mean {close[0]}?" if close else "; rename it"
            if opts is not None:
                raise PluginError(f"{hook} is not a promptopt hook{hint}")
            if hook in HOOK_NAMES:
                raise PluginError(f"{attr} is not marked @promptopt.hookimpl; decorate it")
            raise PluginError(f"{attr} is not marked @promptopt.hookimpl and is not a promptopt hook{hint}")

    def _check_arguments(self, plugin: Any, attr: str, hook: str) -> None:
        """A hookimpl argument the spec does not name fails with the names it may use, not with
        pluggy's multi-line PluginValidationError."""
        try:
            params = inspect.signature(getattr(plugin, attr)).parameters.values()
        except (TypeError, ValueError):
            return
        allowed = getattr(self.pm.hook, hook).spec.argnames
        for p in params:
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in allowed:
                close = difflib.get_close_matches(p.name, allowed, n=1, cutoff=0.5) or (allowed if len(allowed) == 1 else [])
                fix = f"rename it to {close[0]!r}" if close else f"use only {', '.join(allowed) or 'no arguments'}"
                raise PluginError(f"{hook} takes ({', '.join(allowed)}), not argument {p.name!r}; {fix}")

    def _check_impls(self, plugin: Any) -> None:
        """Catch the pluggy pitfalls that otherwise fail silently."""
        for caller, impl in self._impls(plugin):
            spec_args = caller.spec.argnames if caller.spec else ()
            try:
                params = inspect.signature(impl.function).parameters
            except (TypeError, ValueError):
                continue
            defaulted = [p for p in spec_args if p in params and params[p].default is not inspect.Parameter.empty]
            if defaulted:
                raise PluginError(f"{caller.name}: argument {defaulted[0]!r} has a default value, so pluggy would "
                                  "never pass it; remove the default")
            if caller.name in REGISTRATION_HOOKS and (impl.hookwrapper or impl.wrapper):
                raise PluginError(f"{caller.name} may not be a hook wrapper")

    def _guard_hooks(self, plugin: Any, name: str) -> None:
        """A third-party lifecycle or command hook that raises is reported, not fatal (unless strict)."""
        for caller, impl in self._impls(plugin):
            if caller.name in REGISTRATION_HOOKS or impl.hookwrapper or impl.wrapper:
                continue
            impl.function = self._guarded(name, caller.name, impl.function)

    def _guarded(self, plugin: str, hook: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - isolate a tracker's failure from the run
                error = HookError(plugin, hook, exception_line(exc, "; "))
                first = not any(e.plugin == plugin and e.hook == hook for e in self.hook_errors)
                self.hook_errors.append(error)
                if self.strict:
                    raise PluginError(error.message(strict=True)) from exc
                if first:
                    log.warning(error.message())  # once per plugin and hook, not once per generation
                return None

        return guarded

    def _load_entrypoints(self) -> None:
        allow, deny = _env_list("PROMPTOPT_LOAD_PLUGINS"), _env_list("PROMPTOPT_DISABLE_PLUGINS") or set()
        seen: dict[str, Any] = {}
        # sys.path order is an accident of the environment; sorted, a name clash always fails the same plugin
        for ep in sorted(entry_points(group=GROUP), key=lambda ep: (ep.name, _dist(ep)[0])):
            dist, version = _dist(ep)
            keys = {ep.name, dist}  # either the entry-point name or the distribution name selects it
            if (allow is not None and not keys & allow) or keys & deny:
                continue
            if ep.name in seen:
                other = seen[ep.name]
                if other.value == ep.value:
                    continue  # the same plugin found twice on sys.path (e.g. editable + installed)
                self._fail(ep.name, dist, f"entry point name already used by distribution {_dist(other)[0]} "
                                          f"({other.value}); rename one of them")
                continue
            seen[ep.name] = ep
            if ep.name in self.info or ep.name in DEFAULT_PLUGINS:
                self._fail(ep.name, dist, f'plugin name "{ep.name}" is already taken by a built-in plugin')
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolate any plugin failure
                self._fail(ep.name, dist, exception_line(exc, "; "), stage="importing")
                continue
            self._add(plugin, ep.name, dist, version)

    def _collect(self) -> None:
        """Call each registration hook one plugin at a time, in registration order (built-ins first)."""
        for kind in KINDS:
            caller = getattr(self.pm.hook, f"promptopt_register_{kind}")
            for impl in caller.get_hookimpls():
                name = impl.plugin_name
                if name not in self.info:
                    continue  # already failed and removed
                kwargs = {"register": self._registrar(kind, name)}
                try:
                    impl.function(*[kwargs[arg] for arg in impl.argnames])
                except Exception as exc:  # noqa: BLE001
                    self._drop(name, f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc))

    def _registrar(self, kind: str, plugin: str) -> Callable[..., None]:
        """The ``register`` a registration hook gets: its own name in a wrong-call TypeError
        ("register() takes from 2 to 3 positional arguments ..."), not the host's internals."""
        def register(name: str, factory: Any, description: str = "") -> None:
            self._register(kind, plugin, name, factory, description)

        register.__qualname__ = "register"
        return register

    def _register(self, kind: str, plugin: str, name: str, factory: Any, description: str = "") -> None:
        self.registries[kind].add(name, factory, description, plugin=plugin)
        self.info[plugin].registered.setdefault(kind, []).append(name)

    def _drop(self, plugin: str, reason: str) -> None:
        info = self.info.pop(plugin)
        for registry in self.registries.values():
            registry.remove_plugin(plugin)
        self.pm.unregister(name=plugin)
        if info.builtin:
            raise PluginError(f'built-in plugin "{plugin}" failed: {reason}')
        self._fail(plugin, info.distribution, reason)

    def _fail(self, plugin: str, dist: str, reason: str, stage: str = "registering") -> None:
        failure = PluginFailure(plugin, dist, reason, stage)
        if self.strict:
            raise PluginError(failure.fatal())
        # Recorded, not printed: the CLI prints host.failures once; an unknown name that a failed
        # plugin may have provided mentions the failures in its error (see entry()).
        log.info(failure.message())
        self.failures.append(failure)

    # -- introspection -------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-ready: every loaded plugin (version, hooks, what it registered), every failure, and
        each distinct error a lifecycle or command hook raised (once, however often it raised)."""
        hook_errors = {(e.plugin, e.hook, e.reason): None for e in self.hook_errors}
        return {"plugins": [info.to_dict() for info in self.info.values()],
                "failed": [{"name": f.plugin, "distribution": f.distribution, "error": f.reason}
                           for f in self.failures],
                "hook_errors": [{"plugin": p, "hook": h, "error": r} for p, h, r in hook_errors]}

    # -- typed lookups -------------------------------------------------------------------
    def entry(self, kind: str, name: str) -> Entry:
        try:
            return self.registries[kind].get(name)
        except UsageError as exc:
            if not self.failures:
                raise
            failed = "; ".join(f'"{f.plugin}" ({f.reason})' for f in self.failures)
            raise UsageError(f"{exc}; note: plugins that failed to load: {failed}") from None

    @contextmanager
    def _factory(self, kind: str, name: str) -> Iterator[Entry]:
        """The entry for name; an error its factory raises names the thing and the third-party plugin,
        so the user knows whose it is (built-ins' errors are left exactly as they are)."""
        entry = self.entry(kind, name)
        try:
            yield entry
        except Exception as exc:
            info = self.info.get(entry.plugin)
            if info is None or info.builtin:
                raise
            what = f'{self.registries[kind].kind} "{name}" (plugin "{entry.plugin}")'
            if isinstance(exc, PromptoptError):  # keeps its class, so its exit code
                exc.args = (f"{what}: {exc}",)
                raise
            reason = one_line(f"{type(exc).__name__}: {_reason(exc)}", "; ")
            raise PluginError(f"{what} failed: {reason}") from exc

    def _checked_once(self, kind: str, name: str, obj: Any, check: Callable[[str, Any], None]) -> Any:
        """What a factory returned, checked on first creation; a third party's is named with its plugin,
        as an error its factory raises is (validation's messages open with `KIND "NAME": `)."""
        if (kind, name) not in self._checked:
            try:
                check(name, obj)
            except PluginError as exc:
                plugin = self.entry(kind, name).plugin
                info = self.info.get(plugin)
                if info is not None and not info.builtin:
                    exc.args = (str(exc).replace(f'"{name}": ', f'"{name}" (plugin "{plugin}"): ', 1),)
                raise
            self._checked.add((kind, name))
        return obj

    def create_model(self, name: str, device: str = "cpu", dtype: str | None = None):
        """A model by registered name, else a local path or cached Hugging Face id."""
        if name in self.registries["models"]:
            with self._factory("models", name) as entry:
                backend = entry.factory(device=device, dtype=dtype)
            return self._checked_once("models", name, backend, validation.check_model)
        from promptopt.models import ModelError, load_pretrained, locate

        if not is_model_path(name):
            try:
                locate(name)   # a model id in the Hugging Face cache without an organisation, e.g. gpt2
            except ModelError:
                self._unknown_model(name)
        try:
            return load_pretrained(name, device=device, dtype=dtype)
        except (FileNotFoundError, ValueError) as exc:  # a missing path, a GGUF transformers cannot read, no chat template
            raise UsageError(str(exc)) from None

    def check_model_name(self, name: str) -> None:
        """That ``name`` is a registered model, an existing model path or a model id in the Hugging
        Face cache, without loading it (``promptopt validate``)."""
        from promptopt.models import ModelError, locate

        if name in self.registries["models"]:
            return
        try:
            locate(name)
        except ModelError as exc:
            if not is_model_path(name):
                self._unknown_model(name)
            raise UsageError(str(exc)) from None

    def _unknown_model(self, name: str) -> None:
        try:
            self.entry("models", name)
        except UsageError as exc:
            raise UsageError(f"{exc}; or give a saved model's directory, a .gguf file or a model id in the "
                             "Hugging Face cache") from None

    def create_instrument(self, name: str | Path):
        """A registered instrument, or an instrument TOML file given by path."""
        name = str(name)
        if Path(name).is_dir():
            raise UsageError(f"instrument {name} is a directory; give a TOML survey file or a registered "
                             f"instrument ({', '.join(self.registries['instruments'].names())})")
        if name.endswith(".toml") or Path(name).is_file():
            from promptopt.objectives import load_instrument

            if not Path(name).is_file():
                raise UsageError(f"instrument file {name} does not exist; give a path to a TOML survey")
            try:
                return load_instrument(name)
            except UnicodeDecodeError as exc:
                raise UsageError(f"instrument file {name} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                 "save it as UTF-8 TOML") from None
            except (ValueError, KeyError) as exc:
                raise UsageError(_reason(exc)) from None
        with self._factory("instruments", name) as entry:
            instrument = entry.factory()
        return self._checked_once("instruments", name, instrument, validation.check_instrument)

    def create_scorer(self, instrument, name: str | None = None, constants: dict | None = None):
        """The named scorer, else the instrument's own ([scorer] table) or the one named like it.

        The instrument's own scorer also answers to its own name, the one config.json and
        `validate` show, unless a registered scorer takes that name.
        """
        own = getattr(instrument, "scorer", None)
        if name is not None and own is not None and name == getattr(own, "name", None) \
                and name not in self.registries["scorers"]:
            name = None
        if name is None:
            if own is not None:
                return own.with_constants(**constants) if constants else own
            name = instrument.name
            if name not in self.registries["scorers"]:
                raise UsageError(f"instrument {name!r} has no [scorer] section and no scorer named {name!r} is "
                                 f"registered; give --scorer (registered: {', '.join(self.registries['scorers'].names())})")
        with self._factory("scorers", name) as entry:
            scorer = entry.factory(constants=constants)
        return self._checked_once("scorers", name, scorer, validation.check_scorer)

    def optimizer_class(self, name: str) -> type:
        with self._factory("optimizers", name) as entry:
            if not entry.name.endswith(":*"):
                return entry.factory
            try:
                cls = entry.factory(name.partition(":")[2])
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        validation.validate_optimizer(name, cls)
        return cls

    def target_table(self, table: str = DEFAULT_TARGET_TABLE):
        """The registered target table (``resolve(query)``, ``list()``), checked on first use."""
        with self._factory("targets", table) as entry:
            targets = entry.factory()
        return self._checked_once("targets", table, targets, validation.check_target_table)

    def target(self, query: str, table: str = DEFAULT_TARGET_TABLE):
        targets = self.target_table(table)
        with self._factory("targets", table):
            try:
                target = targets.resolve(query)
            except (ValueError, KeyError) as exc:
                raise UsageError(_reason(exc)) from None
        validation.check_target(table, target)
        return target
