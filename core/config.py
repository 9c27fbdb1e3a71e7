"""RunConfig: every option of `promptopt run`, validated once, from flags and/or a TOML file."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
import difflib
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError

POSITIONS = ("suffix", "prefix", "answer", "reply")
EXECUTORS = ("local", "ray")
INITS = ("random", "screen")   # where x0 starts without --init-text (session.init_ids)
BASES = ("gaussian", "tokens")  # how a soft-prompt subspace's directions are drawn (softprompt.make_space)
# "auto" and the keys of promptopt.models.backend.DTYPES, spelt out so a config check does not import
# torch (tested equal)
DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}   # config.json and factories see the long name
SEED_MAX = 2**63 - 1   # torch.manual_seed takes a signed 64-bit seed; numpy's generators refuse negatives
DEVICE = re.compile(r"cpu|cuda(:\d+)?|mps")
# float options that a run compares and records: nan and inf pass a range check or break the run
FINITE = ("radius", "min_mass", "max_entropy", "shift_weight", "target_loss", "time_limit")
# what a config saved before an option existed ran at, where that is not today's default
BEFORE_OPTION_EXISTED: dict[str, Any] = {"min_mass": None,   # the floor came in off, then became default 0.1
                                         "init": "random",    # x0 was K random tokens before screening
                                         "counterbalance": False}
# the objective's penalty settings: what each allows, in one place for `promptopt run` (RunConfig.validate)
# and the Python API (SurveyObjective); off is None, or 0 where the text says so
PENALTY_SETTINGS: dict[str, tuple[Callable[[float], bool], str]] = {
    "min_mass": (lambda v: 0 <= v < 1, "a share of probability in [0, 1), e.g. 0.1, or 0 for no floor"),
    "max_entropy": (lambda v: 0 < v <= 1, "in (0, 1], a share of the largest entropy, e.g. 0.6"),
    "shift_weight": (lambda v: v >= 0, ">= 0 L1 points per answer point, e.g. 5, or 0 for none"),
}


# what a run is scored with: `evaluate --soft-prompt RUN` scores its prompt the same way unless a flag
# or --config says otherwise (device and search settings are not scoring); best/metadata.json keeps them
SCORING_SETTINGS = ("model", "instrument", "scorer", "country", "targets", "position", "system_prompt",
                    "respondents", "counterbalance", "constants", "seed", "dtype")


@dataclass
class RunConfig:
    """A run, fully specified. Defaults are the README's main job on the embedded model."""

    model: str = "smollm2"
    instrument: str = "vsm13"
    scorer: str | None = None
    country: str = "US"
    targets: str = "hofstede"
    optimizer: str = "de"
    popsize: int = 8
    generations: int | None = None
    budget: int | None = None
    seed: int = 0
    tokens: int = 1
    subspace: int = 64
    radius: float = 1.0
    basis: str = "gaussian"
    init: str = "random"
    init_text: str | None = None
    position: str = "reply"
    device: str = "cpu"
    dtype: str | None = None
    system_prompt: str | None = None
    batch_rows: int | None = None
    min_mass: float | None = 0.1   # floor on the option mass; 0 or None: no floor
    max_entropy: float | None = None  # cap on the answers' mean normalised entropy; None: no cap
    shift_weight: float | None = None  # L1 points per answer point the item means move from the bare model's
    target_loss: float | None = None
    patience: int | None = None
    time_limit: float | None = None
    icl_baseline: bool = True
    respondents: int = 0
    counterbalance: bool = False   # each item also asked with its scale reversed; the two answers averaged
    augment: int = 0   # training only: copies of the survey with words dropped, fitted with the plain one
    executor: str = "local"
    ray_address: str | None = None
    actors: int | None = None
    constants: dict[str, float] = field(default_factory=dict)
    hyper: dict[str, Any] = field(default_factory=dict)
    out: str | None = None

    # Evaluations of a run given neither --generations nor --budget (docs/TUNING.md): the budget,
    # not the generation count, is the default, so changing --popsize keeps the cost of a run.
    DEFAULT_BUDGET: typing.ClassVar[int] = 480

    @property
    def total_generations(self) -> int:
        """Generations to run: given directly, or the evaluation budget spent in whole generations."""
        if self.generations is not None:
            return self.generations
        return max(1, (self.DEFAULT_BUDGET if self.budget is None else self.budget) // self.popsize)

    @property
    def total_evaluations(self) -> int:
        """Evaluations a run may spend: its generations at the full population. A run stops on
        this count, so an optimizer whose population shrinks (DE with ``lpsr``) runs more,
        smaller generations for the same cost."""
        return self.total_generations * self.popsize

    def validate(self) -> RunConfig:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(message)

        for name in FINITE:
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            need(value is None or math.isfinite(value), f"{flag} must be a finite number (got {value})")
        need(self.target_loss is None or self.target_loss >= 0,
             f"--target-loss must be >= 0, the L1 loss's floor (got {self.target_loss})")
        need(self.popsize >= 4, f"--popsize must be >= 4 (got {self.popsize})")
        need(self.generations is None or self.generations >= 1, f"--generations must be >= 1 (got {self.generations})")
        need(self.budget is None or self.budget >= self.popsize,
             f"--budget must be at least one generation, >= popsize {self.popsize} (got {self.budget})")
        need(self.generations is None or self.budget is None, "give --generations or --budget, not both")
        need(self.tokens >= 1, f"--tokens must be >= 1 (got {self.tokens})")
        need(self.subspace >= 0, f"--subspace must be >= 0, 0 meaning direct search (got {self.subspace})")
        need(self.radius > 0, f"--radius must be > 0 (got {self.radius})")
        need(self.basis in BASES, f"--basis must be one of {', '.join(BASES)} (got {self.basis!r})")
        need(self.init in INITS, f"--init must be one of {', '.join(INITS)} (got {self.init!r})")
        need(self.init_text is None or self.init == "random", "give --init-text or --init screen, not both")
        if self.init_text is not None:
            try:
                filled = self.init_text.format(country="Country")
            except (KeyError, IndexError, ValueError):
                filled = ""
            need(filled != "", f"--init-text must be non-empty text (a space is a token), with {{country}} as its only "
                                       f"placeholder (got {self.init_text!r})")
        need(self.position in POSITIONS, f"--position must be one of {', '.join(POSITIONS)} (got {self.position!r})")
        need(0 <= self.seed <= SEED_MAX, f"--seed must be in 0..2**63-1 (got {self.seed})")
        need(self.dtype is None or self.dtype in DTYPES, f"--dtype must be one of {', '.join(DTYPES)} (got {self.dtype!r})")
        self.dtype = DTYPE_ALIASES.get(self.dtype, self.dtype)
        need(self.out is None or self.out.strip() != "",
             "--out must be a directory path, not empty; omit it for the default runs/<time>-<optimizer>-<country>")
        need(DEVICE.fullmatch(self.device) is not None,
             f"malformed --device {self.device!r}; --device must be cpu or cuda[:N] (e.g. cuda:1) or mps")
        need(self.batch_rows is None or self.batch_rows >= 1, f"--batch-rows must be >= 1 (got {self.batch_rows})")
        need(self.augment >= 0, f"--augment must be >= 0 copies of the survey, 0 meaning none (got {self.augment})")
        need(self.respondents >= 0, f"--respondents must be >= 0, 0 meaning the model answers as itself (got {self.respondents})")
        for name, (ok, allowed) in PENALTY_SETTINGS.items():
            value = getattr(self, name)
            need(value is None or ok(value), f"--{name.replace('_', '-')} must be {allowed} (got {value})")
        if self.min_mass == 0:
            self.min_mass = None   # one spelling of "no floor", as config.json and the study record it
        need(self.patience is None or self.patience >= 1, f"--patience must be >= 1 generation (got {self.patience})")
        need(self.time_limit is None or self.time_limit > 0, f"--time-limit must be > 0 seconds (got {self.time_limit})")
        need(self.executor in EXECUTORS, f"--executor must be one of {', '.join(EXECUTORS)} (got {self.executor!r})")
        need(self.actors is None or self.actors >= 1, f"--actors must be >= 1 (got {self.actors})")
        need(self.executor == "ray" or (self.ray_address is None and self.actors is None),
             "--ray-address and --actors need --executor ray")
        if self.executor == "ray":
            from .distributed import RAY_INSTALL_HINT, ray_available

            need(ray_available(), RAY_INSTALL_HINT)
        if self.device.startswith("cuda"):
            import torch

            need(torch.cuda.is_available(), f"--device {self.device} asked for, but this torch sees no CUDA GPU; use --device cpu")
            index = int(self.device.partition(":")[2] or 0)
            count = torch.cuda.device_count()
            need(index < count, f"--device {self.device} asked for, but this torch sees {count} CUDA GPU(s), "
                                f"cuda:0..cuda:{count - 1}; give one of those")
        if self.device == "mps":
            import torch

            need(torch.backends.mps.is_available(), "--device mps asked for, but this torch sees no Apple GPU; use --device cpu")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Accept value if it fits the field's declared type; ints are fine where floats are expected."""
    hint = typing.get_type_hints(RunConfig)[key]
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, getattr(__import__("types"), "UnionType")) else (hint,)
    for option in allowed:
        if option is type(None) and value is None:
            return value
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, bool):
            continue
        if base is dict and isinstance(value, dict) and typing.get_args(option)[1:] == (float,):
            bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
            if bad:
                raise UsageError(f"config key {key!r} must be a table of numbers, got {bad[0]} = {value[bad[0]]!r}")
            return {k: float(v) for k, v in value.items()}
        if isinstance(base, type) and isinstance(value, base):
            return value
    names = " or ".join(getattr(a, "__name__", str(a)) for a in allowed)
    raise UsageError(f"config key {key!r} must be {names}, got {type(value).__name__} {value!r}")


# keys people write from the flags' names, and what a config file says instead
KEY_HINTS = {"icl": "the key is icl_baseline (true or false); ", "no_icl": "write icl_baseline = false; ",
             "quiet": "--quiet is a command-line flag only; ", "resume": "--resume DIR is a command-line flag only; ",
             "config": "a config file cannot name another; "}


def config_from_mapping(data: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """Check keys and types of a mapping of RunConfig options; returns the checked options."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    out = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, sorted(fields), n=1)
            hint = KEY_HINTS.get(name) or (f"did you mean {close[0]!r}? " if close else "")
            raise UsageError(f"unknown key {key!r} in {where}; {hint}allowed keys: {', '.join(sorted(fields))}")
        out[name] = _check_type(name, value, None)
    return out


FILE_RELATIVE = ("instrument", "model")   # keys whose relative paths are read from the config file's folder


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Options from a TOML file: top-level keys, or keys under a [run] table."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "save it as UTF-8 TOML") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from None
    if "run" in data and isinstance(data["run"], dict):
        data = {**{k: v for k, v in data.items() if k != "run"}, **data["run"]}
    options = config_from_mapping(data, where=str(path))
    for key in FILE_RELATIVE:   # a file next to the config means that file, from wherever it is run
        value = options.get(key)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute() and (path.parent / value).exists():
            options[key] = str((path.parent / value).resolve())
    return options


def replaced(options: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``options`` less what ``given`` (set at a higher precedence) replaces: an option's alternative
    (--budget replaces a file's generations and the reverse; --init-text replaces init, --init screen
    an init_text; --executor local a ray_address and actors), so a flag overrides a file, and a
    resume's new setting a saved one, instead of the two clashing."""
    drop = set()
    for key, value in given.items():
        drop |= {"generations": {"budget"}, "budget": {"generations"}, "init_text": {"init"}}.get(key, set())
        if key == "init" and value == "screen":
            drop.add("init_text")
        if key == "executor" and value == "local":
            drop |= {"ray_address", "actors"}
    return {k: v for k, v in options.items() if k not in drop - set(given)}


def build_config(file: str | Path | None = None, defaults: dict[str, Any] | None = None, **flags: Any) -> RunConfig:
    """``defaults`` (e.g. a saved run's settings), overridden by the file's options, overridden by
    any flag that was given (not None)."""
    from_file = load_config_file(file) if file else {}
    given = {k: v for k, v in flags.items() if v is not None}
    from_file = replaced(from_file, given)
    options = {**replaced(defaults or {}, {**from_file, **given}), **from_file, **given}
    try:
        return RunConfig(**config_from_mapping(options, where="options")).validate()
    except UsageError as exc:   # named as the user wrote it: a flag, or a key of the file
        flag = re.search(r"--([a-z][a-z-]*)", str(exc))
        key = flag and flag.group(1).replace("-", "_")
        if key in from_file and key not in given:
            raise UsageError(f"{exc} (from {key} = {from_file[key]!r} in {file})") from None
        raise
