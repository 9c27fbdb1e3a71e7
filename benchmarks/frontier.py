"""The frontier between issue 8's two lines, read from tuning rows (no model run).

    python benchmarks/frontier.py [TUNING.jsonl ...] [--png docs/img/frontier.png]
                                  (default: study/transfer/tuning.jsonl)

Every tuning run scored on the held-out wording (`tune_alignment.py --alternate`) is one point:
its change vs the naive model on the main wording (line 1 wants -50% or better) against its
change on the alternate wording (the held-out line wants below 0). Prints per country how many
runs meet both, the best held-out change among the runs that meet line 1, and the best
main-wording change among the runs that meet the held-out line; the PNG puts every run on one
panel per country, coloured by soft-prompt position.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from dimension_shifts import markdown

from promptopt.rundir import atomic_write

ROOT = Path(__file__).resolve().parents[1]

LINE_1 = -50.0  # issue 8: DE lowers the naive loss by at least 50%
DEFAULT_ROWS = ROOT / "study" / "transfer" / "tuning.jsonl"
COLOURS = {"reply": "tab:orange", "answer": "tab:blue", "prefix": "tab:green", "suffix": "tab:red"}  # per position


def runs(paths: list[Path]) -> pd.DataFrame:
    """One row per tuning run with a held-out score: main and alternate change vs naive, in %."""
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            r = json.loads(line)
            if r.get("alt_loss") is None:
                continue
            rows.append({"country": r["country"], "position": r["settings"]["position"],
                         "main": 100 * (r["loss"] / r["naive_loss"] - 1),
                         "alternate": 100 * (r["alt_loss"] / r["alt_naive_loss"] - 1)})
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise SystemExit(f"no run with a held-out score in {', '.join(map(str, paths))}: "
                         "rows come from tune_alignment.py --alternate")
    frame["line_1"] = frame["main"] <= LINE_1
    frame["held_out"] = frame["alternate"] < 0
    return frame


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per country: runs, runs meeting both lines, and the best of each line given the other."""
    def per_country(g: pd.DataFrame) -> pd.Series:
        return pd.Series({
            "runs": len(g),
            "both lines": int((g["line_1"] & g["held_out"]).sum()),
            "best alternate change, runs at -50%": _pct(g.loc[g["line_1"], "alternate"].min()),
            "best main change, runs below naive on the alternate": _pct(g.loc[g["held_out"], "main"].min()),
        })

    order = frame.groupby("country").size().sort_values(ascending=False).index
    table = frame.groupby("country").apply(per_country, include_groups=False).loc[order]
    table.index.name = "country"
    return table


def _pct(value: float) -> str:
    return "\u2013" if pd.isna(value) else f"{value:+.0f}%"


def write_figure(frame: pd.DataFrame, table: pd.DataFrame, path: Path) -> None:
    """Every run on one panel per country, in the order and with the counts of ``summary``'s table."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    countries = list(table.index)
    positions = sorted(frame["position"].unique())
    cols = min(5, len(countries))
    rows = -(-len(countries) // cols)
    fig = Figure(figsize=(2.8 * cols, 2.6 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax, country in zip(axes.flat, countries):
        g = frame[frame["country"] == country]
        ax.fill_between([-100, LINE_1], [-1000, -1000], [0, 0], color="0.9", zorder=0)
        ax.axvline(LINE_1, color="0.5", lw=0.8)
        ax.axhline(0, color="0.5", lw=0.8)
        for position in positions:
            p = g[g["position"] == position]
            ax.scatter(p["main"], p["alternate"], s=14, label=position, alpha=0.8,
                       color=COLOURS.get(position, "0.4"))
        ax.set_title(f"{country} ({table.loc[country, 'both lines']}/{len(g)} meet both)", fontsize="small")
    low, high = frame["alternate"].min(), frame["alternate"].max()
    axes.flat[0].set_ylim(low - 0.05 * (high - low) - 1, high + 0.05 * (high - low) + 1)
    axes.flat[0].set_xlim(-100, 5)
    for ax in axes.flat[len(countries):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("main wording, change vs naive (%)", fontsize="small")
    for ax in axes[:, 0]:
        ax.set_ylabel("alternate wording, change (%)", fontsize="small")
    axes.flat[0].legend(fontsize="x-small", title="position", title_fontsize="x-small")
    fig.suptitle("Issue 8: a run that meets line 1 (-50% or better) and the held-out line (below naive) "
                 "falls in the shaded corner", fontsize="medium")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("rows", nargs="*", type=Path, default=[DEFAULT_ROWS], help="tuning.jsonl files")
    p.add_argument("--png", type=Path, default=None, help="also draw every run, one panel per country")
    args = p.parse_args(argv)
    missing = [str(r) for r in args.rows if not r.is_file()]
    if missing:
        p.error(f"no such tuning file: {', '.join(missing)}")
    frame = runs(args.rows)
    table = summary(frame)
    print(markdown(table))
    if args.png:
        write_figure(frame, table, args.png)
        print(f"\nfigure: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
