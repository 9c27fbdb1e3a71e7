"""Perturbed copies of a survey's wording, for training only: the held-out check asks whether a prompt
carries to another wording of the same items, and the main wording alone cannot say (docs/TUNING.md).

Each copy drops a seeded share of the words of every intro and item text (the scale and the answer
instruction stay whole), so a soft prompt fitted over the copies must move the answers through what
the items mean, not through their exact words.
"""

from __future__ import annotations

import random
from typing import Callable

WORD_DROPOUT = 0.2   # the share of words each copy drops


def word_dropout(seed: int | str, rate: float = WORD_DROPOUT) -> Callable[[str], str]:
    """A rewrite that drops each word with probability ``rate`` (at least one word stays), drawn from
    one seeded stream: the same seed gives the same copy of the survey."""
    if not 0 <= rate < 1:
        raise ValueError(f"word dropout rate must be in [0, 1) (got {rate})")
    rng = random.Random(seed)

    def drop(text: str) -> str:
        words = text.split(" ")
        kept = [w for w in words if rng.random() >= rate]
        return " ".join(kept) if kept else words[0]

    return drop
