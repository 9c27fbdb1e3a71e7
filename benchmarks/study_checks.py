"""Issue 8's acceptance lines, computed from a study's summary: each passes or fails, with its numbers.

The alignment study's report opens with these, so whoever reads docs/RESULTS.md sees the verdict
the cells give, not one written by hand. Statistics as the issue states them: per country the
median over seeds; "over countries" the median of those medians. Each optimizer line also gives
a paired test over the countries (one-sided Wilcoxon signed-rank on the per-country medians), so
a reader can tell a margin from noise; the line itself is decided as the issue states it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from scipy.stats import wilcoxon

FLAGSHIP = "de"
REFERENCE_COUNTRIES = ("SA", "US", "CN", "IN")   # the reference study's four
REDUCTION = 0.5                                  # DE lowers the naive loss by at least this much
RIVALS = ("cma", "ng:TwoPointsDE")               # DE must not be worse than these ...
BASELINE_OPTIMIZER = "random"                    # ... and must beat this one


@dataclass(frozen=True)
class Check:
    claim: str
    passed: bool | None   # None: the study lacks the cells to decide it
    detail: str


def _loss(table: dict[str, Any], country: str, optimizer: str) -> float | None:
    return table[country]["optimizers"].get(optimizer, {}).get("loss")


def _over_countries(table: dict[str, Any], optimizer: str, countries) -> float:
    return statistics.median(_loss(table, c, optimizer) for c in countries)


def _per_reference_country(table: dict[str, Any], claim: str, passes, describe) -> Check:
    missing = [c for c in REFERENCE_COUNTRIES if c not in table or _loss(table, c, FLAGSHIP) is None]
    if missing:
        return Check(claim, None, f"no {FLAGSHIP} cells for {', '.join(missing)}")
    results = {c: passes(table[c]) for c in REFERENCE_COUNTRIES}
    failing = [c for c, ok in results.items() if not ok]
    detail = ", ".join(f"{c} {describe(table[c])}" for c in REFERENCE_COUNTRIES)
    return Check(claim, not failing, detail + (f" (fails: {', '.join(failing)})" if failing else ""))


def _reduction(row: dict[str, Any]) -> float:
    return row["optimizers"][FLAGSHIP]["loss"] / row["naive"][0] - 1


def reduction_check(table: dict[str, Any]) -> Check:
    return _per_reference_country(
        table, f"{FLAGSHIP} lowers the naive L1 by at least {REDUCTION:.0%} for each of "
               f"{', '.join(REFERENCE_COUNTRIES)} (median of seeds)",
        lambda row: _reduction(row) <= -REDUCTION, lambda row: f"{_reduction(row):+.1%}")


def icl_check(table: dict[str, Any]) -> Check:
    def beats(row):
        return row["icl"][0] is not None and row["optimizers"][FLAGSHIP]["loss"] < row["icl"][0]

    def describe(row):
        icl = row["icl"][0]
        return f"{row['optimizers'][FLAGSHIP]['loss']:.2f} vs " + ("–" if icl is None else f"{icl:.2f}")
    return _per_reference_country(table, f"{FLAGSHIP} beats ICL for each of {', '.join(REFERENCE_COUNTRIES)}",
                                  beats, describe)


def optimizer_checks(table: dict[str, Any]) -> list[Check]:
    """Medians over the countries both optimizers have cells for, so a partial study compares like with like."""
    checks = []
    for other, strict in [(BASELINE_OPTIMIZER, True)] + [(r, False) for r in RIVALS]:
        claim = (f"{FLAGSHIP} beats {other}" if strict else f"{FLAGSHIP} is not worse than {other}") + \
            " on the median L1 over countries"
        shared = [c for c in table if _loss(table, c, FLAGSHIP) is not None and _loss(table, c, other) is not None]
        if not shared:
            checks.append(Check(claim, None, f"no countries with both {FLAGSHIP} and {other} cells"))
            continue
        ours, theirs = _over_countries(table, FLAGSHIP, shared), _over_countries(table, other, shared)
        passed = ours < theirs if strict else ours <= theirs
        scope = "" if len(shared) == len(table) else f" (over the {len(shared)} countries both have: {', '.join(shared)})"
        checks.append(Check(claim, passed, f"{ours:.2f} vs {theirs:.2f}{scope}; {paired_test(table, other, shared)}"))
    return checks


def paired_test(table: dict[str, Any], other: str, countries: list[str]) -> str:
    """In how many countries the flagship's median L1 is lower, and the one-sided Wilcoxon signed-rank
    p that it is lower in general (countries as pairs; ties dropped, as Wilcoxon's test does)."""
    pairs = [(_loss(table, c, FLAGSHIP), _loss(table, c, other)) for c in countries]
    lower = sum(ours < theirs for ours, theirs in pairs)
    counted = f"{FLAGSHIP} lower in {lower} of {len(pairs)} countries"
    if all(ours == theirs for ours, theirs in pairs):
        return counted
    p = wilcoxon([o for o, _ in pairs], [t for _, t in pairs], alternative="less").pvalue
    return f"{counted}, Wilcoxon signed-rank p = {p:.3g} (one-sided)"


def held_out_check(table: dict[str, Any]) -> Check:
    claim = f"on the alternate wording {FLAGSHIP}'s aligned L1 stays below the naive L1 in every country"
    rows = {c: r for c, r in table.items() if r["optimizers"].get(FLAGSHIP, {}).get("alt_loss") is not None}
    if not rows:
        return Check(claim, None, f"no {FLAGSHIP} cells with a held-out score")
    failing = [f"{c} {r['optimizers'][FLAGSHIP]['alt_loss']:.2f} vs {r['alt_naive']:.2f}"
               for c, r in rows.items() if not r["optimizers"][FLAGSHIP]["alt_loss"] < r["alt_naive"]]
    detail = f"{len(rows) - len(failing)} of {len(rows)} countries below naive"
    return Check(claim, not failing, detail + (f"; fails: {', '.join(failing)}" if failing else ""))


def checks(table: dict[str, Any]) -> list[Check]:
    """Every line of issue 8's "What must be shown" that the cells can decide, in the issue's order."""
    return [reduction_check(table), icl_check(table), *optimizer_checks(table), held_out_check(table)]


def report(found: list[Check]) -> list[str]:
    """The report's section: one table row per check."""
    mark = {True: "pass", False: "**fail**", None: "not run"}
    lines = ["", "## Issue 8's checks", "",
             "Computed from the cells below each time the report is written (`benchmarks/study_checks.py`).", "",
             "| check | result | numbers |", "|---|---|---|"]
    lines += [f"| {c.claim} | {mark[c.passed]} | {c.detail} |" for c in found]
    return lines
