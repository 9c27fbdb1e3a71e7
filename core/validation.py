"""Validation of what plugins register, one function per kind, for built-ins and third parties alike.

Registration-time checks (``VALIDATORS``) only look at signatures, so listing plugins stays
cheap; the ``check_*`` functions look at what a factory returned, once, on first creation.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, Callable

import torch

from .errors import PluginError, UsageError

def _describe(obj: Any) -> str:
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def _check_callable_as(kind: str, name: str, factory: Any, call: str, *args: Any, **kwargs: Any) -> None:
    """The factory must accept exactly the keyword arguments the host will pass."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins and C callables have no signature: trust them
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise PluginError(f'{kind} "{name}": factory {_describe(factory)}{signature} cannot be called as {call} ({exc})') from None


def validate_model_factory(name: str, factory: Any) -> None:
    _check_callable_as("model", name, factory, "factory(device=..., dtype=...)", device="cpu", dtype=None)


def validate_instrument_factory(name: str, factory: Any) -> None:
    _check_callable_as("instrument", name, factory, "factory()")


def validate_scorer_factory(name: str, factory: Any) -> None:
    _check_callable_as("scorer", name, factory, "factory(constants=...)", constants=None)


def validate_target_factory(name: str, factory: Any) -> None:
    _check_callable_as("target table", name, factory, "factory()")


def validate_optimizer(name: str, cls: Any) -> None:
    from promptopt.optimizers import Optimizer

    if name.endswith(":*"):
        _check_callable_as("optimizer family", name, cls, "make(member_name)", "Member")
        return  # its members are validated when resolved
    if not (inspect.isclass(cls) and issubclass(cls, Optimizer)):
        raise PluginError(f'optimizer "{name}" must be a subclass of promptopt.optimizers.Optimizer, got {cls!r}')
    missing = [m for m in ("_ask", "_tell") if getattr(cls, m) is getattr(Optimizer, m)]
    if missing:
        raise PluginError(f'optimizer "{name}" ({cls.__qualname__}) does not implement {" and ".join(missing)}; '
                          "see promptopt.optimizers.Optimizer")


VALIDATORS: dict[str, Callable[[str, Any], None]] = {
    "models": validate_model_factory,
    "instruments": validate_instrument_factory,
    "scorers": validate_scorer_factory,
    "optimizers": validate_optimizer,
    "targets": validate_target_factory,
}
"""Registration-time checks per kind; every registration, built-in or not, goes through these."""

MODEL_ATTRIBUTES = ("model", "tokenizer", "device", "dtype", "hidden_size", "embedding_matrix", "embed",
                    "encode", "single_token_id", "render_chat", "describe")
TARGET_ATTRIBUTES = ("code", "name", "scores", "source", "scores_tensor", "describe")


def _missing(obj: Any, names: tuple[str, ...]) -> list[str]:
    present = set(dir(obj))  # dir() does not evaluate properties
    return [n for n in names if n not in present]


def check_instrument(name: str, obj: Any) -> None:
    """What an instrument factory returned: an Instrument whose every item has an answer scale."""
    from promptopt.objectives import Instrument

    if not isinstance(obj, Instrument):
        raise PluginError(f'instrument "{name}": factory returned {type(obj).__name__}, expected a '
                          "promptopt.objectives.Instrument (load_instrument(path) builds one from TOML)")
    if not obj.items:
        raise PluginError(f'instrument "{name}" has no content items')
    for item in obj.items:
        if getattr(getattr(item, "scale", None), "n_options", 0) < 2:
            raise PluginError(f'instrument "{name}": item {item.number} has no answer scale with at least 2 options')


def check_scorer(name: str, obj: Any) -> None:
    dims = getattr(obj, "dimensions", None)
    if (not isinstance(dims, (tuple, list)) or not dims or not all(isinstance(d, str) for d in dims)
            or not callable(getattr(obj, "score", None)) or not callable(getattr(obj, "describe", None))):
        raise PluginError(f'scorer "{name}": factory returned {type(obj).__name__}, expected an object with '
                          "dimensions (non-empty tuple of str), score(means) and describe(), e.g. a LinearScorer")


def check_model(name: str, obj: Any) -> None:
    missing = _missing(obj, MODEL_ATTRIBUTES)
    if missing:
        raise PluginError(f'model "{name}": factory returned {type(obj).__name__} without {", ".join(missing)}; '
                          "expected a promptopt.models.CausalLMBackend")


def check_target_table(name: str, obj: Any) -> None:
    if not (callable(getattr(obj, "resolve", None)) and callable(getattr(obj, "list", None))):
        raise PluginError(f'target table "{name}": factory returned {type(obj).__name__}, expected an object with '
                          "resolve(query) -> Target and list() -> list[Target], e.g. a TargetTable")


def check_target(table: str, obj: Any) -> None:
    missing = _missing(obj, TARGET_ATTRIBUTES)
    if missing or not isinstance(getattr(obj, "scores", None), Mapping):
        raise PluginError(f'target table "{table}": resolve() returned {type(obj).__name__} without '
                          f"{', '.join(missing) or 'a scores mapping'}; expected a promptopt.objectives.Target")


# what the runner itself passes every optimizer, and the flag that sets it
# (x0, budget and max_evaluations only to a constructor that names them: optimizers.run_arguments)
RUN_SET_PARAMETERS = {"dim": "the search space (--subspace, --tokens)", "bounds": "the search space (--radius)",
                      "popsize": "--popsize", "seed": "--seed", "device": "--device",
                      "x0": "the initial soft prompt (--init, --init-text)",
                      "budget": "--budget or --generations", "max_evaluations": "--budget or --generations"}
_TOML_TYPES = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
               dict: "a table", list: "an array"}


def batch_problem(z: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> str | None:
    """What is wrong with an optimizer's batch z [n, d] for bounds [d], or None: the host's one
    check of the values (one host sync per generation), since the contract is the optimizer's."""
    bad = ~torch.isfinite(z) | (z < lower) | (z > upper)
    if not bool(bad.any()):
        return None
    row, col = (int(i) for i in bad.nonzero()[0])
    value, lo, hi = (float(t) for t in (z[row, col], lower[col], upper[col]))
    where = "is not finite" if not math.isfinite(value) else "is outside the bounds"
    return (f"asked for a point that {where}: row {row}, coordinate {col} is {value:.6g}, bounds "
            f"[{lo:.6g}, {hi:.6g}] ({int(bad.any(1).sum())} of {z.shape[0]} rows); ask() must return "
            "finite points inside the bounds it was given")


def check_hyper(optimizer: str, cls: type, hyper: Mapping[str, Any]) -> None:
    """A run's ``[hyper]`` table against the optimizer's constructor: every key one of its keyword
    parameters (not one the run sets from a flag), every value of the type its annotation names.
    A typo or a quoted number is then one line naming the key, before any model loads, instead of a
    TypeError from deep inside the optimizer (or a key silently swallowed by ``**kwargs``)."""
    import typing

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no signature to check against: trust it
        return
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - unresolvable annotations: check names only
        hints = {}
    for name, p in parameters.items():  # unannotated: the default's type, if it has one
        if name not in hints and p.default is not p.empty and p.default is not None:
            hints[name] = type(p.default)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    settable = [n for n, p in parameters.items()
                if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in RUN_SET_PARAMETERS
                and n != "self" and _accepted_types(hints.get(n)) != ()]
    where = f"optimizer {optimizer} ({cls.__name__})"
    for key, value in hyper.items():
        if key in RUN_SET_PARAMETERS:
            raise UsageError(f"[hyper] {key} is set by the run from {RUN_SET_PARAMETERS[key]}; set it there, "
                             "not in [hyper]")
        if key not in parameters:
            if takes_any:
                continue
            raise UsageError(f"[hyper] {key} is not a parameter of {where}; " + (
                f"it takes {', '.join(settable)}" if settable else "it has none a config file sets; drop [hyper]"))
        wanted = _accepted_types(hints.get(key))
        if wanted == ():
            raise UsageError(f"[hyper] {key} of {where} takes {_hint_name(hints[key])}, which a config file "
                             f"cannot hold; settable there: {', '.join(settable) or 'none'}")
        if wanted is not None and not _is_instance(value, wanted):
            kinds = " or ".join(dict.fromkeys(_TOML_TYPES[t] for t in wanted))
            raise UsageError(f"[hyper] {key} = {value!r} must be {kinds} for {where}")


def _accepted_types(hint: Any) -> tuple[type, ...] | None:
    """The config-file types a value may have for annotation ``hint``: None, no check (no hint, Any or
    a generic); () when nothing a config file holds fits (e.g. torch.dtype)."""
    import types
    import typing
    from collections.abc import Sequence

    if hint is None or hint is Any:
        return None
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    plain: list[type] = []
    for arg in args:
        origin = typing.get_origin(arg) or arg
        if arg is type(None):
            continue
        if origin is Any or not isinstance(origin, type):
            return None
        if issubclass(origin, Mapping):
            plain.append(dict)
        elif issubclass(origin, Sequence) and origin is not str:
            plain.append(list)
        elif origin in _TOML_TYPES:
            plain.append(origin)
    return tuple(plain)


def _hint_name(hint: Any) -> str:
    return f"{hint.__module__}.{hint.__qualname__}" if isinstance(hint, type) else str(hint)


def _is_instance(value: Any, wanted: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in wanted
    if isinstance(value, int) and float in wanted:
        return True  # 1 for 1.0
    return isinstance(value, wanted)
