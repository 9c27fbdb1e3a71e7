"""Target countries: published Hofstede dimension scores to align the model with.

Scores come from Hofstede's public 6-D dataset (release 2015-08-16), whose 3-letter ``ctr``
codes are Hofstede's own (``CHI`` = China, ``CAF`` = Canada French, not ISO), so rows are
mapped to ISO 3166 countries through their names. Queries accept ISO alpha-2/alpha-3 codes
and names; a few estimates (Saudi Arabia, from Hofstede Insights) fill gaps in the dataset.
Every target records its ``source`` so a run can say which version it used.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pycountry
import torch

from .errors import MissingDimensionsError, TargetError, UnknownTargetError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DIMENSIONS",
    "Target",
    "HOFSTEDE_2015_CSV",
    "HOFSTEDE_2015_SOURCE",
    "load_hofstede_2015",
    "load_estimates",
    "resolve_target",
    "list_targets",
]

DIMENSIONS: tuple[str, ...] = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")

_DATA = Path(__file__).resolve().parent / "data"
HOFSTEDE_2015_CSV = _DATA / "hofstede_6d_2015-08-16.csv"
ESTIMATES_TOML = _DATA / "hofstede_insights_estimates.toml"
HOFSTEDE_2015_SOURCE = "Hofstede 6-D dataset, release 2015-08-16 (geerthofstede.com)"

_CSV_COLUMNS = {"PDI": "pdi", "IDV": "idv", "MAS": "mas", "UAI": "uai", "LTO": "ltowvs", "IVR": "ivr"}
_MISSING = "#NULL!"
_HINT = "run `promptopt list targets` to see all targets"

# Dataset labels that are not ISO country names -> ISO alpha-2.
_LABEL_TO_ISO = {
    "Bosnia": "BA",
    "Czech Rep": "CZ",
    "Dominican Rep": "DO",
    "Great Britain": "GB",
    "Korea South": "KR",
    "Kyrgyz Rep": "KG",
    "Macedonia Rep": "MK",
    "Russia": "RU",
    "Slovak Rep": "SK",
    "Turkey": "TR",
    "U.S.A.": "US",
}
# Dataset rows that are regions or sub-national groups, not ISO countries.
_REGIONS = frozenset(
    {
        "Africa East",
        "Africa West",
        "Arab countries",
        "Belgium French",
        "Belgium Netherl",
        "Canada French",
        "Germany East",
        "South Africa white",
        "Switzerland French",
        "Switzerland German",
    }
)
# Extra everyday names accepted in queries (normalised form -> ISO alpha-2).
_QUERY_ALIASES = {
    "uk": "GB",
    "britain": "GB",
    "united kingdom": "GB",
    "south korea": "KR",
    "czech republic": "CZ",
    "slovak republic": "SK",
    "kyrgyz republic": "KG",
    "macedonia": "MK",
    "north macedonia": "MK",
    "turkiye": "TR",
    "america": "US",
    "united states of america": "US",
    "iran": "IR",
    "vietnam": "VN",
    "tanzania": "TZ",
    "moldova": "MD",
    "taiwan": "TW",
    "venezuela": "VE",
}


@dataclass(frozen=True)
class Target:
    """Published scores of one country or region, with where they came from."""

    code: str
    name: str
    scores: dict[str, float]
    source: str
    kind: str = "country"  # "country" (ISO 3166) or "region" (dataset group)
    missing: tuple[str, ...] = field(default=(), compare=False)

    def scores_tensor(
        self,
        dimensions: Sequence[str] = DIMENSIONS,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Scores as a ``[D]`` tensor in the given dimension order (error if any is missing)."""
        absent = [d for d in dimensions if d not in self.scores]
        if absent:
            raise MissingDimensionsError(
                f"{self.name}: no score for {', '.join(absent)} in {self.source}; available: {', '.join(self.scores)}"
            )
        return torch.tensor([float(self.scores[d]) for d in dimensions], dtype=dtype, device=device)

    @property
    def complete(self) -> bool:
        return all(d in self.scores for d in DIMENSIONS)

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for a run's config.json (which version of the target was used)."""
        return {"code": self.code, "name": self.name, "kind": self.kind, "scores": dict(self.scores), "source": self.source}


def _norm(text: str) -> str:
    """Case/punctuation-insensitive key: 'U.S.A.' -> 'usa', ' United  States ' -> 'united states'."""
    t = text.casefold().strip().replace(".", "")
    t = re.sub(r"[\s_]+", " ", t)
    return t


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.casefold()).strip("-")


def _country_name(c: Any) -> str:
    return getattr(c, "common_name", None) or c.name


def _iso_for_label(label: str) -> str | None:
    """ISO alpha-2 of a dataset row label, or None for a region; error if unmappable."""
    if label in _REGIONS:
        return None
    if label in _LABEL_TO_ISO:
        return _LABEL_TO_ISO[label]
    try:
        return pycountry.countries.lookup(label).alpha_2
    except LookupError:
        raise TargetError(
            f"{HOFSTEDE_2015_CSV.name}: row {label!r} maps to no ISO country and is not a known region"
        ) from None


@dataclass(frozen=True)
class _Row:
    ctr: str
    label: str
    iso2: str | None
    scores: dict[str, float]

    @property
    def code(self) -> str:
        return self.iso2 if self.iso2 else _slug(self.label)

    @property
    def name(self) -> str:
        if self.iso2 is None:
            return self.label
        return _country_name(pycountry.countries.get(alpha_2=self.iso2))

    def target(self) -> Target:
        return Target(
            code=self.code,
            name=self.name,
            scores=dict(self.scores),
            source=f"{HOFSTEDE_2015_SOURCE}, row {self.label!r}",
            kind="country" if self.iso2 else "region",
            missing=tuple(d for d in DIMENSIONS if d not in self.scores),
        )


@lru_cache(maxsize=1)
def _rows() -> tuple[_Row, ...]:
    rows: list[_Row] = []
    with HOFSTEDE_2015_CSV.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        need = {"ctr", "country", *_CSV_COLUMNS.values()}
        if not need <= set(reader.fieldnames or ()):
            raise TargetError(f"{HOFSTEDE_2015_CSV}: expected columns {sorted(need)}, got {reader.fieldnames}")
        for r in reader:
            scores: dict[str, float] = {}
            for dim, col in _CSV_COLUMNS.items():
                v = (r[col] or "").strip()
                if v and v != _MISSING:
                    scores[dim] = float(v)
            label = r["country"].strip()
            rows.append(_Row(r["ctr"].strip(), label, _iso_for_label(label), scores))
    return tuple(rows)


def load_hofstede_2015() -> pd.DataFrame:
    """The 2015-08-16 dataset as a DataFrame: ctr, label, code, name, kind and the six scores (NaN = missing).

    pandas is imported lazily because it is slow to import and only listing needs it.
    """
    import pandas as pd

    records = []
    for row in _rows():
        rec: dict[str, Any] = {"ctr": row.ctr, "label": row.label, "code": row.code, "name": row.name,
                               "kind": "country" if row.iso2 else "region"}
        rec.update({d: row.scores.get(d, math.nan) for d in DIMENSIONS})
        records.append(rec)
    return pd.DataFrame.from_records(records)


@lru_cache(maxsize=1)
def _estimates() -> dict[str, Target]:
    with ESTIMATES_TOML.open("rb") as fh:
        data = tomllib.load(fh)
    out: dict[str, Target] = {}
    for iso2, t in data.items():
        try:
            scores = {d: float(t[d]) for d in DIMENSIONS}
            out[iso2.upper()] = Target(iso2.upper(), str(t["name"]), scores, str(t["source"]), "country")
        except KeyError as e:
            raise TargetError(f"{ESTIMATES_TOML}: [{iso2}] lacks key {e.args[0]!r}; need name, source and all six scores") from None
    return out


def load_estimates() -> dict[str, Target]:
    """Estimates that replace incomplete dataset rows, keyed by ISO alpha-2 (e.g. ``SA``)."""
    return dict(_estimates())


@lru_cache(maxsize=1)
def _index() -> tuple[dict[str, str], dict[str, _Row], dict[str, _Row]]:
    """(normalised name/code -> ISO alpha-2 of dataset countries, ISO -> row, normalised region key -> row)."""
    by_iso: dict[str, _Row] = {}
    regions: dict[str, _Row] = {}
    names: dict[str, str] = {}
    for row in _rows():
        if row.iso2 is None:
            regions[_norm(row.label)] = row
            regions[_norm(row.code)] = row
            continue
        by_iso[row.iso2] = row
        names[_norm(row.label)] = row.iso2
    for key, iso2 in _QUERY_ALIASES.items():
        names.setdefault(_norm(key), iso2)
    return names, by_iso, regions


def _candidates() -> list[str]:
    """Display names and codes suggested for misspelt queries."""
    names, by_iso, regions = _index()
    out = {row.label for row in regions.values()}
    for iso2, row in by_iso.items():
        c = pycountry.countries.get(alpha_2=iso2)
        out.update({row.label, _country_name(c), c.name, c.alpha_2, c.alpha_3})
    out.update(t.name for t in _estimates().values())
    return sorted(out)


def _lookup_iso(query: str) -> str | None:
    key = _norm(query)
    names, _, _ = _index()
    if len(key) in (2, 3) and key.isalpha():  # codes: ISO alpha-2 / alpha-3 only
        c = pycountry.countries.get(alpha_2=key.upper()) if len(key) == 2 else pycountry.countries.get(alpha_3=key.upper())
        if c is not None:
            return c.alpha_2
    if key in names:
        return names[key]
    try:
        return pycountry.countries.lookup(query.strip()).alpha_2
    except LookupError:
        pass
    try:
        return pycountry.countries.lookup(key).alpha_2
    except LookupError:
        return None


def resolve_target(query: str, prefer_estimate: bool = True) -> Target:
    """Target for an ISO alpha-2/alpha-3 code, a country name or a dataset region name.

    Case-insensitive (``US``, ``usa``, ``United States``, ``U.S.A.`` are the same). Saudi
    Arabia resolves to the Hofstede Insights estimate (``prefer_estimate=False`` gives the
    incomplete 2015 row instead, which fails for lack of four dimensions).
    """
    if not isinstance(query, str) or not query.strip():
        raise UnknownTargetError(f"empty target; give an ISO code or a country/region name ({_HINT})")
    _, by_iso, regions = _index()
    key = _norm(query)
    if key in regions:
        target = regions[key].target()
    else:
        iso2 = _lookup_iso(query)
        if iso2 is None:
            ctr = {row.ctr.casefold(): row for row in _rows()}.get(key)
            if ctr is not None:
                use = f"{ctr.iso2} or {pycountry.countries.get(alpha_2=ctr.iso2).alpha_3}" if ctr.iso2 else repr(ctr.label)
                raise UnknownTargetError(
                    f"{query.strip()!r} is the dataset's own code for {ctr.label!r}, not an ISO code; use {use} ({_HINT})"
                )
            close = difflib.get_close_matches(query.strip(), _candidates(), n=3, cutoff=0.6)
            if not close:  # try case-insensitively
                lowered = {c.casefold(): c for c in _candidates()}
                close = [lowered[m] for m in difflib.get_close_matches(query.strip().casefold(), list(lowered), n=3, cutoff=0.6)]
            did = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise UnknownTargetError(f"unknown target {query.strip()!r}; {did}{_HINT}")
        estimates = _estimates()
        if prefer_estimate and iso2 in estimates:
            return estimates[iso2]
        if iso2 not in by_iso:
            c = pycountry.countries.get(alpha_2=iso2)
            raise UnknownTargetError(
                f"{_country_name(c)} ({iso2}) is not in the {HOFSTEDE_2015_SOURCE}; {_HINT}"
            )
        target = by_iso[iso2].target()
    if target.missing:
        have = [d for d in DIMENSIONS if d in target.scores]
        raise MissingDimensionsError(
            f"{target.name}: the {HOFSTEDE_2015_SOURCE} has no {', '.join(target.missing)} score"
            f" (only {', '.join(have) or 'none'}); choose a target with all six ({_HINT})"
        )
    return target


def list_targets() -> list[Target]:
    """All selectable targets: complete dataset rows plus estimates, sorted by name."""
    estimates = _estimates()
    out = [row.target() for row in _rows() if not (row.iso2 and row.iso2 in estimates)]
    out = [t for t in out if not t.missing]
    out.extend(estimates.values())
    return sorted(out, key=lambda t: t.name.casefold())


@dataclass(frozen=True)
class TargetTable:
    """A named table of targets, as registered by the ``promptopt_register_targets`` hook."""

    name: str
    source: str
    resolve: Callable[[str], Target]
    list: Callable[[], list[Target]]


def hofstede_table() -> TargetTable:
    """Hofstede's 2015 6-D dataset plus the Saudi Arabia estimate, resolved by ISO code or name."""
    return TargetTable("hofstede", HOFSTEDE_2015_SOURCE, resolve_target, list_targets)
