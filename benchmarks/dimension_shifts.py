"""Where the held-out wording goes wrong, per dimension (issue 8): read from a study's cells, no model run.

    python benchmarks/dimension_shifts.py [CELLS.jsonl] [--optimizer de]   (default: study/cells.jsonl)

For each run, the shift its best prompt gives each dimension score (aligned minus bare model)
on the main wording and on the alternate wording. Prints per dimension: the mean shift on each
wording, in how many runs the alternate-wording shift is positive, and how well the two shifts
agree across runs (Pearson r); then per country the bare model's alternate-wording error
(score minus target), in how many runs the alternate loss is below the naive one, and the
alternate loss a prompt would get if its shifts carried over exactly (the same shift on both
wordings) and halved each main-wording error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def shifts(cells: list[dict], optimizer: str) -> pd.DataFrame:
    """One row per (run, dimension): main and alternate shift, the alternate naive error."""
    rows = []
    for c in cells:
        if c["optimizer"] != optimizer or "alt_dimensions" not in c:
            continue
        target = c["target"]["scores"]
        for d in c["dimensions"]:
            rows.append({"country": c["country"], "seed": c["seed"], "dimension": d,
                         "main": c["dimensions"][d] - c["naive_dimensions"][d],
                         "alternate": c["alt_dimensions"][d] - c["alt_naive_dimensions"][d],
                         "alt_naive_error": c["alt_naive_dimensions"][d] - target[d],
                         "main_naive_error": c["naive_dimensions"][d] - target[d],
                         "alt_below_naive": c["alt_loss"] < c["alt_naive_loss"]})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A pipe table of a frame, index first (pandas' to_markdown would need tabulate)."""
    head = [table.index.name or "", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, [i, *row])) + " |" for i, row in zip(table.index, table.itertuples(index=False))]
    return "\n".join(lines)


def report(frame: pd.DataFrame) -> str:
    by_dim = frame.groupby("dimension", sort=False)
    table = pd.DataFrame({
        "mean shift, main": by_dim["main"].mean(),
        "mean shift, alternate": by_dim["alternate"].mean(),
        "alternate shift > 0": by_dim["alternate"].apply(lambda s: f"{(s > 0).sum()}/{len(s)}"),
        "r (main vs alternate, across runs)": by_dim.apply(lambda g: g["main"].corr(g["alternate"])),
    }).round(2)
    errors = frame.pivot_table(index="country", columns="dimension", values="alt_naive_error", aggfunc="first",
                               sort=False)[list(table.index)].round(1)
    runs = frame.drop_duplicates(["country", "seed"]).groupby("country", sort=False)["alt_below_naive"]
    errors["runs below naive, alternate"] = runs.apply(lambda s: f"{s.sum()}/{len(s)}")
    # what the held-out loss would be if a prompt's shifts carried over exactly: the bare model's
    # two wordings differ by little, so such a prompt halving the main loss would pass everywhere
    bare = frame.drop_duplicates(["country", "dimension"]).groupby("country", sort=False)
    errors["naive L1, alternate"] = bare["alt_naive_error"].apply(lambda e: e.abs().mean()).round(2)
    errors["alternate L1 if a shift halving the main error carried over"] = bare.apply(
        lambda g: (g["alt_naive_error"] - 0.5 * g["main_naive_error"]).abs().mean(), include_groups=False).round(2)
    return (markdown(table) + "\n\nBare model's error on the alternate wording (score - target):\n\n"
            + markdown(errors))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cells", nargs="?", default=str(ROOT / "study" / "cells.jsonl"))
    p.add_argument("--optimizer", default="de")
    args = p.parse_args(argv)
    cells = [json.loads(line) for line in Path(args.cells).read_text().splitlines() if line.strip()]
    frame = shifts(cells, args.optimizer)
    if frame.empty:
        raise SystemExit(f"error: no {args.optimizer} cells with held-out scores in {args.cells}")
    print(report(frame))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
