"""Survey instruments (items, answer scales, blocks) and the prompts built from them.

An instrument is data, loaded from TOML, so a new survey (or a user's copy of the official
wording) needs no code. Each content item renders to one user message whose natural answer
is a bare digit, because the model's next-token distribution over "1".."n" is what is read.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import InstrumentError
from .scorer import LinearScorer, scorer_from_config

__all__ = [
    "AnswerScale",
    "Item",
    "Block",
    "Demographic",
    "Instrument",
    "WORDINGS",
    "DEFAULT_ANSWER_INSTRUCTION",
    "BUILTIN_INSTRUMENTS",
    "load_instrument",
    "load_vsm13",
    "get_instrument",
]

WORDINGS = ("main", "alternate")
DEFAULT_ANSWER_INSTRUCTION = "Answer with a single number from 1 to {n}."

_DATA = Path(__file__).resolve().parent / "data"
BUILTIN_INSTRUMENTS: dict[str, Path] = {"vsm13": _DATA / "vsm13.toml"}


def _check_wording(wording: str) -> None:
    if wording not in WORDINGS:
        raise InstrumentError(f"unknown wording {wording!r}; allowed: {', '.join(WORDINGS)}")


@dataclass(frozen=True)
class AnswerScale:
    """Ordered answer labels; option ``i + 1`` is ``labels[i]``."""

    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        labels = tuple(self.labels) if not isinstance(self.labels, str) else (self.labels,)
        if len(labels) < 2:
            raise InstrumentError(f"an answer scale needs at least 2 labels, got {len(labels)}: {list(labels)}")
        if len(labels) > 9:
            raise InstrumentError(
                f"an answer scale may have at most 9 labels (answers are read as one digit), got {len(labels)}"
            )
        for lab in labels:
            if not isinstance(lab, str) or not lab.strip():
                raise InstrumentError(f"answer scale labels must be non-empty strings, got {lab!r}")
        repeated = sorted({lab for lab in labels if labels.count(lab) > 1})
        if repeated:
            raise InstrumentError(f"answer scale labels {repeated} appear twice; each option needs its own label")
        object.__setattr__(self, "labels", labels)

    @property
    def n_options(self) -> int:
        return len(self.labels)

    def render(self) -> str:
        """``"1 = label\\n2 = label ..."`` as written into the prompt."""
        return "\n".join(f"{i} = {lab}" for i, lab in enumerate(self.labels, start=1))

    def reversed(self) -> AnswerScale:
        """The same labels numbered the other way round (answer a here means n + 1 - a)."""
        return AnswerScale(self.labels[::-1])


@dataclass(frozen=True)
class Block:
    """A group of items sharing an introduction (the intro may be empty)."""

    id: str
    intro: str
    alternate_intro: str | None = None

    def intro_for(self, wording: str = "main") -> str:
        """The intro for a wording; the alternate falls back to the main intro if absent."""
        _check_wording(wording)
        if wording == "alternate" and self.alternate_intro:
            return self.alternate_intro
        return self.intro


@dataclass(frozen=True)
class Item:
    """One content item; ``alternate`` is a held-out paraphrase with the same meaning and scale."""

    id: str
    number: int
    block: str
    text: str
    scale: AnswerScale
    alternate: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise InstrumentError(f"item {self.number!r}: id must be a non-empty string")
        if isinstance(self.number, bool) or not isinstance(self.number, int) or self.number < 1:
            raise InstrumentError(f"item {self.id!r}: number must be a positive integer, got {self.number!r}")
        if not isinstance(self.text, str) or not self.text.strip():
            raise InstrumentError(f"item {self.number} ({self.id}): text must be a non-empty string")
        if not isinstance(self.scale, AnswerScale):
            raise InstrumentError(
                f"item {self.number} ({self.id}): scale must be an AnswerScale with at least 2 labels, got {self.scale!r}"
            )
        if self.alternate is not None and (not isinstance(self.alternate, str) or not self.alternate.strip()):
            raise InstrumentError(f"item {self.number} ({self.id}): alternate must be a non-empty string or absent")

    @property
    def n_options(self) -> int:
        return self.scale.n_options

    def wording_text(self, wording: str = "main") -> str:
        """The item text in the requested wording (error if the alternate is missing)."""
        _check_wording(wording)
        if wording == "main":
            return self.text
        if self.alternate is None:
            raise InstrumentError(
                f"item {self.number} ({self.id}) has no alternate wording; add 'alternate' to it or use wording 'main'"
            )
        return self.alternate

    def prompt(
        self, intro: str, wording: str = "main", instruction: str = DEFAULT_ANSWER_INSTRUCTION,
        rewrite: Callable[[str], str] | None = None,
    ) -> str:
        """Full user message: intro, item, numbered scale, and a one-digit answer instruction;
        ``rewrite`` (e.g. augment.word_dropout) is applied to the item text, then to the intro."""
        text = self.wording_text(wording)
        if rewrite is not None:   # in this order: a seeded rewrite draws from one stream
            text, intro = rewrite(text), rewrite(intro)
        parts = [intro.strip()] if intro and intro.strip() else []
        parts.append(text.strip())
        parts.append(self.scale.render())
        parts.append(instruction.format(n=self.n_options))
        return "\n\n".join(parts)


@dataclass(frozen=True)
class Demographic:
    """A respondent-description item (e.g. age band); ``options`` empty means free text."""

    id: str
    number: int
    text: str
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if not isinstance(self.text, str) or not self.text.strip():
            raise InstrumentError(f"demographic item {self.number} ({self.id}): text must be a non-empty string")

    @property
    def free_text(self) -> bool:
        return not self.options


@dataclass(frozen=True)
class Instrument:
    """A survey: blocks, content items (in scoring order), demographics and an optional scorer."""

    name: str
    description: str
    blocks: Mapping[str, Block]
    items: tuple[Item, ...]
    demographics: tuple[Demographic, ...] = ()
    source: str = ""
    answer_instruction: str = DEFAULT_ANSWER_INSTRUCTION
    scorer: LinearScorer | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", MappingProxyType(dict(self.blocks)))
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "demographics", tuple(self.demographics))
        where = f"instrument {self.name!r}"
        if not self.items:
            raise InstrumentError(f"{where}: has no content items; define at least one [[items]] entry")
        for bid, block in self.blocks.items():
            if not isinstance(block, Block):
                raise InstrumentError(f"{where}: block {bid!r} is not a Block")
        ids: dict[str, int] = {}
        numbers: set[int] = set()
        for entry in (*self.items, *self.demographics):
            if entry.number in numbers:
                raise InstrumentError(f"{where}: item number {entry.number} is used twice; numbers must be unique")
            numbers.add(entry.number)
            if entry.id in ids:
                raise InstrumentError(
                    f"{where}: item id {entry.id!r} is used by items {ids[entry.id]} and {entry.number}; ids must be unique"
                )
            ids[entry.id] = entry.number
        for item in self.items:
            if item.block not in self.blocks:
                raise InstrumentError(
                    f"{where}: item {item.number} uses block {item.block!r}; defined blocks: {sorted(self.blocks)}"
                )
        try:
            self.answer_instruction.format(n=9)
        except (KeyError, IndexError, ValueError):
            raise InstrumentError(
                f"{where}: answer_instruction may only use the placeholder {{n}} (number of options)"
            ) from None
        if self.scorer is not None and tuple(self.scorer.item_numbers) != self.item_numbers:
            raise InstrumentError(
                f"{where}: scorer item order {list(self.scorer.item_numbers)} differs from the items {list(self.item_numbers)}"
            )

    # -- look-ups ---------------------------------------------------------------------
    @property
    def item_numbers(self) -> tuple[int, ...]:
        """Content item numbers in order: the column order of mean-answer tensors."""
        return tuple(i.number for i in self.items)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_options(self) -> tuple[int, ...]:
        """Number of answer options per content item, in item order."""
        return tuple(i.n_options for i in self.items)

    @property
    def has_alternates(self) -> bool:
        return all(i.alternate is not None for i in self.items)

    def item(self, number: int) -> Item:
        if isinstance(number, bool) or not hasattr(number, "__index__"):  # an int (numpy ints too); "7" != 7
            raise InstrumentError(f"instrument {self.name!r}: item number must be an int, e.g. 7 "
                                  f"(got {type(number).__name__} {number!r})")
        for it in self.items:
            if it.number == number:
                return it
        raise InstrumentError(f"instrument {self.name!r} has no content item {number}; items: {list(self.item_numbers)}")

    # -- prompts ----------------------------------------------------------------------
    def prompt(self, number: int, wording: str = "main") -> str:
        """The full user message for one content item."""
        it = self.item(number)
        return it.prompt(self.blocks[it.block].intro_for(wording), wording, self.answer_instruction)

    def prompts(self, wording: str = "main", reverse_scales: bool = False,
                rewrite: Callable[[str], str] | None = None) -> list[str]:
        """One user message per content item, in item order (``wording``: main or alternate;
        ``reverse_scales``: each scale numbered the other way round, for counterbalancing;
        ``rewrite``: applied to each intro and item text, e.g. augment.word_dropout)."""
        _check_wording(wording)
        if wording == "alternate":
            missing = [i.number for i in self.items if i.alternate is None]
            if missing:
                raise InstrumentError(
                    f"instrument {self.name!r}: items {missing} have no alternate wording; add 'alternate' or use wording 'main'"
                )
        items = [replace(it, scale=it.scale.reversed()) for it in self.items] if reverse_scales else self.items
        return [it.prompt(self.blocks[it.block].intro_for(wording), wording, self.answer_instruction, rewrite)
                for it in items]

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary for a run's config.json."""
        return {
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "n_items": self.n_items,
            "item_numbers": list(self.item_numbers),
            "n_options": list(self.n_options),
            "has_alternates": self.has_alternates,
            "answer_instruction": self.answer_instruction,
            "scorer": self.scorer.describe() if self.scorer is not None else None,
        }


# -- TOML loading -------------------------------------------------------------------------

# the keys each table may hold: a misspelt optional key (``alternat_intro``) would otherwise be
# dropped without a word, and the held-out wording would silently reuse the main intro
_TOP_KEYS = ("instrument", "scales", "blocks", "items", "demographics", "scorer")
_HEAD_KEYS = ("name", "description", "source", "answer_instruction")
_SCALE_KEYS = ("labels",)
_BLOCK_KEYS = ("intro", "alternate_intro")
_ITEM_KEYS = ("id", "number", "block", "text", "alternate", "scale")
_DEMO_KEYS = ("id", "number", "text", "options")
_SCORER_KEYS = ("name", "dimensions", "formulas", "constants", "default_constant", "dimension_names")


def _check_keys(table: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    """One line for the first key ``table`` may not hold, naming the closest allowed one."""
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise InstrumentError(f"{where}: unknown key '{key}'; {hint}allowed: {', '.join(allowed)}")


def _req(table: Mapping[str, Any], key: str, where: str, kind: type | tuple[type, ...], what: str) -> Any:
    if key not in table:
        raise InstrumentError(f"{where}: missing key '{key}'; {what}")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise InstrumentError(f"{where}: key '{key}' has the wrong type ({type(value).__name__}); {what}")
    return value


def _parse_labels(value: Any, where: str) -> AnswerScale:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise InstrumentError(f"{where}: must be a list of label strings (option 1 first)")
    try:
        return AnswerScale(tuple(value))
    except InstrumentError as e:
        raise InstrumentError(f"{where}: {e}") from None


def _instrument_from_dict(data: Mapping[str, Any], src: str) -> Instrument:
    _check_keys(data, _TOP_KEYS, src)
    head = _req(data, "instrument", src, dict, "add an [instrument] table with name, description and source")
    where_i = f"{src}: [instrument]"
    _check_keys(head, _HEAD_KEYS, where_i)
    name = _req(head, "name", where_i, str, "give the instrument a name")
    if not name.strip():
        raise InstrumentError(f"{where_i}: key 'name' is empty; give the instrument a name")
    description = head.get("description", "")
    source = head.get("source", "")
    instruction = head.get("answer_instruction", DEFAULT_ANSWER_INSTRUCTION)
    for key, val in (("description", description), ("source", source), ("answer_instruction", instruction)):
        if not isinstance(val, str):
            raise InstrumentError(f"{where_i}: key '{key}' must be a string")

    scales_cfg = data.get("scales", {})
    if not isinstance(scales_cfg, dict):
        raise InstrumentError(f"{src}: key 'scales' must be tables [scales.NAME] with 'labels'")
    scales: dict[str, AnswerScale] = {}
    for sname, stable in scales_cfg.items():
        w = f"{src}: [scales.{sname}]"
        if not isinstance(stable, dict) or "labels" not in stable:
            raise InstrumentError(f"{w}: missing key 'labels'; give a list of at least 2 labels")
        _check_keys(stable, _SCALE_KEYS, w)
        scales[sname] = _parse_labels(stable["labels"], f"{w} key 'labels'")

    blocks_cfg = _req(data, "blocks", src, dict, "add [blocks.ID] tables with an 'intro'")
    blocks: dict[str, Block] = {}
    for bid, btable in blocks_cfg.items():
        w = f"{src}: [blocks.{bid}]"
        if not isinstance(btable, dict):
            raise InstrumentError(f"{w}: must be a table with key 'intro'")
        _check_keys(btable, _BLOCK_KEYS, w)
        intro = _req(btable, "intro", w, str, "give the block an intro string (may be empty)")
        alt = btable.get("alternate_intro")
        if alt is not None and not isinstance(alt, str):
            raise InstrumentError(f"{w}: key 'alternate_intro' must be a string")
        blocks[bid] = Block(id=bid, intro=intro, alternate_intro=alt)

    items_cfg = _req(data, "items", src, list, "add [[items]] entries with number, block, text and scale")
    items: list[Item] = []
    for k, it in enumerate(items_cfg):
        if not isinstance(it, dict):
            raise InstrumentError(f"{src}: items[{k}] must be a table")
        num = it.get("number")
        w = f"{src}: items[{k}]" + (f" (number {num})" if isinstance(num, int) and not isinstance(num, bool) else "")
        _check_keys(it, _ITEM_KEYS, w)
        number = _req(it, "number", w, int, "give a positive integer item number")
        block = _req(it, "block", w, str, f"name one of the blocks {sorted(blocks)}")
        if block not in blocks:
            raise InstrumentError(f"{w}: key 'block' = {block!r} is not defined; defined blocks: {sorted(blocks)}")
        text = _req(it, "text", w, str, "give the item text")
        if not text.strip():
            raise InstrumentError(f"{w}: key 'text' is empty; give the item text")
        alternate = it.get("alternate")
        if alternate is not None and (not isinstance(alternate, str) or not alternate.strip()):
            raise InstrumentError(f"{w}: key 'alternate' must be a non-empty string")
        if "scale" not in it:
            raise InstrumentError(
                f"{w}: missing key 'scale'; give the name of a [scales.NAME] table or a list of labels"
            )
        sval = it["scale"]
        if isinstance(sval, str):
            if sval not in scales:
                raise InstrumentError(f"{w}: key 'scale' = {sval!r} is not defined; defined scales: {sorted(scales)}")
            scale = scales[sval]
        elif isinstance(sval, list):
            scale = _parse_labels(sval, f"{w} key 'scale'")
        elif isinstance(sval, dict) and "labels" in sval:
            scale = _parse_labels(sval["labels"], f"{w} key 'scale.labels'")
        else:
            raise InstrumentError(f"{w}: key 'scale' must be a scale name or a list of at least 2 labels")
        item_id = it.get("id", f"q{number:02d}")
        if not isinstance(item_id, str) or not item_id.strip():
            raise InstrumentError(f"{w}: key 'id' must be a non-empty string")
        try:
            items.append(Item(item_id, number, block, text, scale, alternate))
        except InstrumentError as e:
            raise InstrumentError(f"{w}: {e}") from None

    demo_cfg = data.get("demographics", [])
    if not isinstance(demo_cfg, list):
        raise InstrumentError(f"{src}: key 'demographics' must be [[demographics]] entries")
    demos: list[Demographic] = []
    for k, dm in enumerate(demo_cfg):
        w = f"{src}: demographics[{k}]"
        if not isinstance(dm, dict):
            raise InstrumentError(f"{w}: must be a table")
        _check_keys(dm, _DEMO_KEYS, w)
        number = _req(dm, "number", w, int, "give a positive integer item number")
        text = _req(dm, "text", w, str, "give the question text")
        opts = dm.get("options", [])
        if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
            raise InstrumentError(f"{w}: key 'options' must be a list of strings (empty = free text)")
        did = dm.get("id", f"q{number:02d}")
        if not isinstance(did, str) or not did.strip():
            raise InstrumentError(f"{w}: key 'id' must be a non-empty string")
        demos.append(Demographic(did, number, text, tuple(opts)))

    scorer = None
    if "scorer" in data:
        if isinstance(data["scorer"], dict):
            _check_keys(data["scorer"], _SCORER_KEYS, f"{src}: [scorer]")
        numbers = [i.number for i in items]
        if len(set(numbers)) == len(numbers):  # duplicates are reported by Instrument below
            try:
                scorer = scorer_from_config(data["scorer"], numbers, where=f"{src}: [scorer]")
            except ValueError as e:
                raise InstrumentError(str(e)) from None

    try:
        return Instrument(
            name=name,
            description=description,
            blocks=blocks,
            items=tuple(items),
            demographics=tuple(demos),
            source=source,
            answer_instruction=instruction,
            scorer=scorer,
        )
    except InstrumentError as e:
        raise InstrumentError(f"{src}: {e}") from None


def load_instrument(path: str | Path) -> Instrument:
    """Read an instrument TOML file (see ``data/vsm13.toml`` for the schema)."""
    p = Path(path)
    if p.is_dir():
        raise InstrumentError(f"instrument {p} is a directory; give the instrument's .toml file in it, or one of "
                              f"{sorted(BUILTIN_INSTRUMENTS)}")
    if not p.is_file():
        raise InstrumentError(f"instrument file not found: {p}; give a TOML path or one of {sorted(BUILTIN_INSTRUMENTS)}")
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise InstrumentError(f"{p}: invalid TOML: {e}") from None
    return _instrument_from_dict(data, str(p))


@lru_cache(maxsize=None)
def load_vsm13() -> Instrument:
    """The builtin VSM 2013 instrument (project's own wording, manual's formulas, C = 50)."""
    return load_instrument(BUILTIN_INSTRUMENTS["vsm13"])


def get_instrument(name_or_path: str | Path) -> Instrument:
    """A builtin instrument by name (e.g. ``"vsm13"``) or any instrument TOML by path."""
    key = str(name_or_path)
    if key in BUILTIN_INSTRUMENTS:
        return load_vsm13() if key == "vsm13" else load_instrument(BUILTIN_INSTRUMENTS[key])
    p = Path(name_or_path)
    if p.suffix.lower() != ".toml" and not p.exists():
        raise InstrumentError(
            f"unknown instrument {key!r}; use a builtin name ({', '.join(sorted(BUILTIN_INSTRUMENTS))}) or a .toml path"
        )
    return load_instrument(p)
