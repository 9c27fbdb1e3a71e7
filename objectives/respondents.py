"""Simulated respondents: persona preambles drawn from an instrument's demographic items.

The VSM prescribes item means over a sample of matched respondents; with respondents the
model answers every item once per persona and the item means are averaged over them.
Options are drawn so that small samples cover each demographic evenly (a shuffled cycle
per item), seeded, so the same seed always gives the same sample.
"""

from __future__ import annotations

import random

from .errors import InstrumentError


def simulated_respondents(instrument, n: int, seed: int = 0) -> list[str]:
    """n persona descriptions, one line each, from the demographic items that have options."""
    if n < 1:
        raise InstrumentError(f"number of respondents must be >= 1 (got {n})")
    items = [d for d in instrument.demographics if d.options]
    if not items:
        raise InstrumentError(f"instrument {instrument.name!r} has no demographic items with options to build respondents from")
    rng = random.Random(seed)
    columns = []
    for item in items:
        cycle = []
        while len(cycle) < n:
            block = list(item.options)
            rng.shuffle(block)
            cycle.extend(block)
        columns.append(cycle[:n])
    return ["Answer as this survey respondent would: " + "; ".join(
        f"{item.id.replace('_', ' ')}: {column[r]}" for item, column in zip(items, columns)) + "."
        for r in range(n)]
