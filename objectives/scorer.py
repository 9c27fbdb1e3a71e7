"""Linear index formulas that turn mean item answers into dimension scores.

Hofstede's indices are linear in the item means (``PDI = 35(m07 - m02) + 25(m20 - m23) + C``),
so a scorer is a weight matrix ``W [Q, D]`` plus a constant vector ``c [D]``, and scoring a
whole population of candidate prompts is one matmul. Formulas live in the instrument's TOML
``[scorer]`` section so a new survey needs no code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import torch

from .errors import ScorerError

__all__ = ["LinearScorer", "check_scorer_fits", "scorer_from_config", "vsm13_scorer"]


def _is_int(n: Any) -> bool:
    """An item number: int() would truncate 7.9 to 7 and take True for 1."""
    return isinstance(n, Integral) and not isinstance(n, bool)


def check_scorer_fits(scorer: Any, n_items: int, device: torch.device | str | None = None) -> None:
    """Score one all-"1" respondent of ``n_items`` item means: a scorer built for another item count,
    or one whose scores miss its dimensions, fails here in one line (before any model runs) rather
    than as a shape error after the model has answered."""
    name = getattr(scorer, "name", None) or type(scorer).__name__
    dims = tuple(scorer.dimensions)
    try:
        shape = tuple(scorer.score(torch.ones(1, n_items, device=device)).shape)
    except (RuntimeError, IndexError, ValueError) as e:
        raise ScorerError(f"scorer {name!r} cannot score {n_items} item means ({type(e).__name__}: "
                          f"{str(e).splitlines()[0]}); give a scorer built for this instrument's {n_items} "
                          f"content items") from e
    if shape != (1, len(dims)):
        raise ScorerError(f"scorer {name!r} turned means [1, {n_items}] into scores {list(shape)}; it must give "
                          f"[1, {len(dims)}], one per dimension {list(dims)}")


def _is_number(w: Any) -> bool:
    """A weight or constant: float() would take True for 1.0 and "35" for 35.0."""
    return isinstance(w, Real) and not isinstance(w, bool)


class LinearScorer:
    """Batched linear scorer: ``score(means[..., Q]) = means @ W + c`` -> ``[..., D]``.

    ``terms[dim]`` lists ``(weight, item_number)`` pairs; ``item_numbers`` fixes the column
    order of ``means`` (the instrument's content items, in order); ``constants[dim]`` is the
    free additive constant C of each dimension (recorded in ``describe()`` because an L1 loss
    against published scores depends on it).
    """

    def __init__(
        self,
        name: str,
        dimensions: Sequence[str],
        terms: Mapping[str, Sequence[tuple[float, int]]],
        constants: Mapping[str, float],
        item_numbers: Sequence[int],
        dimension_names: Mapping[str, str] | None = None,
    ) -> None:
        dims = tuple(str(d) for d in dimensions)
        if not dims:
            raise ScorerError(f"scorer {name!r}: 'dimensions' is empty; give at least one dimension")
        if len(set(dims)) != len(dims):
            raise ScorerError(f"scorer {name!r}: duplicate dimension names in {list(dims)}; each must be unique")
        bad = [n for n in item_numbers if not _is_int(n)]
        if bad:
            raise ScorerError(f"scorer {name!r}: item number {bad[0]!r} in item_numbers must be an int, e.g. 7")
        numbers = tuple(int(n) for n in item_numbers)
        if len(set(numbers)) != len(numbers):
            raise ScorerError(f"scorer {name!r}: duplicate item numbers in {list(numbers)}; each must be unique")
        column = {n: i for i, n in enumerate(numbers)}

        extra = set(terms) - set(dims)
        if extra:
            raise ScorerError(
                f"scorer {name!r}: formulas for unknown dimensions {sorted(extra)}; allowed: {list(dims)}"
            )
        norm_terms: dict[str, tuple[tuple[float, int], ...]] = {}
        for d in dims:
            if d not in terms:
                raise ScorerError(f"scorer {name!r}: no formula for dimension {d!r}; every dimension in {list(dims)} needs one")
            if not terms[d]:
                raise ScorerError(f"scorer {name!r}: the formula for {d} has no terms; give at least one "
                                  "[weight, item_number] pair")
            pairs = []
            for pair in terms[d]:
                try:
                    w, n = pair
                except (TypeError, ValueError):
                    raise ScorerError(
                        f"scorer {name!r}: formula term {pair!r} of {d} is not a [weight, item_number] pair"
                    ) from None
                if not _is_number(w):
                    raise ScorerError(f"scorer {name!r}: weight {w!r} in {d}'s term {pair!r} must be a number, e.g. 35")
                if not _is_int(n):
                    raise ScorerError(f"scorer {name!r}: item {n!r} in {d}'s term {pair!r} must be an int item number, e.g. 7")
                w, n = float(w), int(n)
                if not math.isfinite(w):
                    raise ScorerError(f"scorer {name!r}: weight {w} in {d} is not finite; use a finite number")
                if n not in column:
                    raise ScorerError(
                        f"scorer {name!r}: {d} uses item {n}, which is not a content item; allowed items: {list(numbers)}"
                    )
                pairs.append((w, n))
            norm_terms[d] = tuple(pairs)

        extra_c = set(constants) - set(dims)
        if extra_c:
            raise ScorerError(
                f"scorer {name!r}: constants for unknown dimensions {sorted(extra_c)}; allowed: {list(dims)}"
            )
        missing_c = [d for d in dims if d not in constants]
        if missing_c:
            raise ScorerError(f"scorer {name!r}: no constant for {missing_c}; give a constant C for every dimension")
        consts = {}
        for d in dims:
            if not _is_number(constants[d]):
                raise ScorerError(f"scorer {name!r}: constant for {d} is {constants[d]!r}; it must be a number")
            consts[d] = float(constants[d])
            if not math.isfinite(consts[d]):
                raise ScorerError(f"scorer {name!r}: constant for {d} is not finite; use a finite number")

        self.name = str(name)
        self.dimensions: tuple[str, ...] = dims
        self.terms: dict[str, tuple[tuple[float, int], ...]] = norm_terms
        self.item_numbers: tuple[int, ...] = numbers
        self.dimension_names: dict[str, str] = dict(dimension_names or {})
        self._constants = consts

        W = torch.zeros(len(numbers), len(dims), dtype=torch.float64)
        for j, d in enumerate(dims):
            for w, n in norm_terms[d]:
                W[column[n], j] += w
        self._W = W
        self._c = torch.tensor([consts[d] for d in dims], dtype=torch.float64)
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- properties -------------------------------------------------------------------
    @property
    def constants(self) -> dict[str, float]:
        """A copy of the constants C per dimension."""
        return dict(self._constants)

    @property
    def weight_matrix(self) -> torch.Tensor:
        """``W [Q, D]`` (float64 copy) so callers can inspect or reuse it."""
        return self._W.clone()

    @property
    def bias(self) -> torch.Tensor:
        """``c [D]`` (float64 copy), the constants in dimension order."""
        return self._c.clone()

    @property
    def n_items(self) -> int:
        return len(self.item_numbers)

    # -- scoring ----------------------------------------------------------------------
    def _params(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (device, dtype)
        if key not in self._cache:
            self._cache[key] = (self._W.to(device=device, dtype=dtype), self._c.to(device=device, dtype=dtype))
        return self._cache[key]

    def score(self, means: torch.Tensor) -> torch.Tensor:
        """Scores ``[..., D]`` from mean answers ``[..., Q]`` (columns in ``item_numbers`` order).

        Runs on the input's device and dtype (integer input is promoted to float32).
        """
        if not isinstance(means, torch.Tensor):
            means = torch.as_tensor(means)
        if means.dim() == 0 or means.shape[-1] != self.n_items:
            raise ScorerError(
                f"scorer {self.name!r}: means must have last dimension {self.n_items} "
                f"(items {self.item_numbers[0]}..{self.item_numbers[-1]}), got shape {tuple(means.shape)}"
            )
        if not means.is_floating_point():
            means = means.to(torch.float32)
        W, c = self._params(means.device, means.dtype)
        return means @ W + c

    __call__ = score

    def score_dict(self, means: torch.Tensor) -> dict[str, float]:
        """Scores of a single mean vector ``[Q]`` as ``{dim: value}`` (for reports)."""
        s = self.score(means)
        if s.dim() != 1:
            raise ScorerError(f"score_dict needs one mean vector of shape [{self.n_items}], got {tuple(means.shape)}")
        return {d: float(v) for d, v in zip(self.dimensions, s.tolist())}

    # -- constants --------------------------------------------------------------------
    def with_constants(self, **overrides: float) -> LinearScorer:
        """A new scorer with some constants replaced (unknown dimension names are an error)."""
        unknown = set(overrides) - set(self.dimensions)
        if unknown:
            raise ScorerError(
                f"scorer {self.name!r}: cannot set constants for {sorted(unknown)}; allowed: {list(self.dimensions)}"
            )
        consts = self.constants
        consts.update(overrides)
        return LinearScorer(
            self.name, self.dimensions, self.terms, consts, self.item_numbers, self.dimension_names
        )

    def fit_constants(self, means: torch.Tensor, target: torch.Tensor | Sequence[float]) -> LinearScorer:
        """Anchored mode: constants chosen so ``score(means) == target`` exactly.

        ``means`` is one reference sample's mean vector ``[Q]`` (e.g. the unprompted model
        answering as a reference country), ``target`` that country's published scores ``[D]``.
        """
        means = torch.as_tensor(means, dtype=torch.float64).cpu()
        target_t = torch.as_tensor(target, dtype=torch.float64).cpu()
        if means.shape != (self.n_items,) or target_t.shape != (len(self.dimensions),):
            raise ScorerError(
                f"fit_constants needs means [{self.n_items}] and target [{len(self.dimensions)}], "
                f"got {tuple(means.shape)} and {tuple(target_t.shape)}"
            )
        c = target_t - means @ self._W
        return self.with_constants(**{d: float(v) for d, v in zip(self.dimensions, c.tolist())})

    # -- reporting --------------------------------------------------------------------
    def formula(self, dim: str) -> str:
        """Human-readable formula, e.g. ``PDI = 35*m07 - 35*m02 + 25*m20 - 25*m23 + 50``."""
        if dim not in self.terms:
            raise ScorerError(f"unknown dimension {dim!r}; allowed: {list(self.dimensions)}")
        parts: list[str] = []
        for w, n in self.terms[dim]:
            sign = "-" if w < 0 else "+"
            mag = f"{abs(w):g}"
            parts.append(f"{sign} {mag}*m{n:02d}")
        c = self._constants[dim]
        parts.append(f"{'-' if c < 0 else '+'} {abs(c):g}")
        body = " ".join(parts)
        body = body[2:] if body.startswith("+ ") else "-" + body[2:]
        return f"{dim} = {body}"

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (formulas and constants) for a run's config.json."""
        return {
            "name": self.name,
            "dimensions": list(self.dimensions),
            "dimension_names": dict(self.dimension_names),
            "item_numbers": list(self.item_numbers),
            "formulas": {d: self.formula(d) for d in self.dimensions},
            "terms": {d: [[w, n] for w, n in self.terms[d]] for d in self.dimensions},
            "constants": self.constants,
        }

    def __repr__(self) -> str:
        return f"LinearScorer(name={self.name!r}, dimensions={self.dimensions}, constants={self._constants})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LinearScorer):
            return NotImplemented
        return (
            self.name == other.name
            and self.dimensions == other.dimensions
            and self.terms == other.terms
            and self._constants == other._constants
            and self.item_numbers == other.item_numbers
        )

    __hash__ = None  # type: ignore[assignment]


def scorer_from_config(
    cfg: Mapping[str, Any], item_numbers: Sequence[int], where: str = "[scorer]"
) -> LinearScorer:
    """Build a scorer from a TOML ``[scorer]`` table.

    Keys: ``name`` (optional), ``dimensions`` (optional list; default: the order of
    ``formulas``), ``formulas`` (dim -> list of ``[weight, item_number]``), ``constants``
    (optional, dim -> C), ``default_constant`` (optional, default 50) for dimensions without
    an explicit constant, ``dimension_names`` (optional, dim -> long name).
    """
    if not isinstance(cfg, Mapping):
        raise ScorerError(f"{where}: must be a table with 'formulas' (and optional 'constants')")
    formulas = cfg.get("formulas")
    if not isinstance(formulas, Mapping) or not formulas:
        raise ScorerError(
            f"{where}: key 'scorer.formulas' is missing or empty; give e.g. PDI = [[35, 7], [-35, 2]]"
        )
    for d, pairs in formulas.items():
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise ScorerError(
                f"{where}: key 'scorer.formulas.{d}' must be a list of [weight, item_number] pairs"
            )
        for w, n in pairs:
            if isinstance(w, bool) or not isinstance(w, (int, float)) or isinstance(n, bool) or not isinstance(n, int):
                raise ScorerError(
                    f"{where}: key 'scorer.formulas.{d}' has term [{w!r}, {n!r}]; weight must be a number and item an integer"
                )
    dims = cfg.get("dimensions", list(formulas))
    if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
        raise ScorerError(f"{where}: key 'scorer.dimensions' must be a list of strings")
    default_c = cfg.get("default_constant", 50.0)
    if isinstance(default_c, bool) or not isinstance(default_c, (int, float)):
        raise ScorerError(f"{where}: key 'scorer.default_constant' must be a number")
    constants_cfg = cfg.get("constants", {})
    if not isinstance(constants_cfg, Mapping):
        raise ScorerError(f"{where}: key 'scorer.constants' must be a table of dimension = number")
    for d, v in constants_cfg.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ScorerError(f"{where}: key 'scorer.constants.{d}' must be a number, got {v!r}")
    constants = {d: float(constants_cfg.get(d, default_c)) for d in dims}
    constants.update({d: float(v) for d, v in constants_cfg.items()})  # unknown dims -> error below
    names = cfg.get("dimension_names", {})
    if not isinstance(names, Mapping):
        raise ScorerError(f"{where}: key 'scorer.dimension_names' must be a table of dimension = name")
    try:
        return LinearScorer(
            name=str(cfg.get("name", "linear")),
            dimensions=dims,
            terms={d: [(w, n) for w, n in pairs] for d, pairs in formulas.items()},
            constants=constants,
            item_numbers=item_numbers,
            dimension_names={str(k): str(v) for k, v in names.items()},
        )
    except ScorerError as e:
        raise ScorerError(f"{where}: {e}") from None


def vsm13_scorer(constants: Mapping[str, float] | None = None) -> LinearScorer:
    """The VSM 2013 manual's formulas (MAS 35/35), C = 50 everywhere unless overridden."""
    from .instrument import load_vsm13  # local import: instrument imports this module

    scorer = load_vsm13().scorer
    assert scorer is not None  # the builtin file defines one
    return scorer.with_constants(**dict(constants)) if constants else scorer
