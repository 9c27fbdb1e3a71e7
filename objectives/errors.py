"""Error types of the objectives layer.

All are builtin ``ValueError`` (and, for look-ups, ``KeyError``) subclasses so callers such
as the CLI can catch them generically and turn them into exit code 2. Each message is one
line saying what was wrong and what is allowed.
"""

from __future__ import annotations

__all__ = [
    "ObjectivesError",
    "InstrumentError",
    "ScorerError",
    "TargetError",
    "UnknownTargetError",
    "MissingDimensionsError",
]


class ObjectivesError(ValueError):
    """Base class: a bad instrument, scorer, target or loss input."""

    def __str__(self) -> str:  # keep one clean line even for KeyError subclasses
        return str(self.args[0]) if self.args else ""


class InstrumentError(ObjectivesError):
    """An instrument file or definition is invalid (message names the file and key)."""


class ScorerError(ObjectivesError):
    """A scorer definition or its input tensor is invalid."""


class TargetError(ObjectivesError):
    """A target country/region cannot be used."""


class UnknownTargetError(TargetError, KeyError):
    """No country or region matches the query (also a ``KeyError`` for look-up callers)."""


class MissingDimensionsError(TargetError):
    """The dataset lacks some dimension scores for the requested country."""
