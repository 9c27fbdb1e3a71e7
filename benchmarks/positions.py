"""Soft-prompt position (suffix, prefix, answer): alignment loss and wall time at an equal budget.

    python benchmarks/positions.py [--country CN] [--budget 96] [--seeds 0 1] [--positions suffix prefix answer]

Each cell is a full `promptopt run` (DE, default settings otherwise) in a temporary
directory; the table gives naive loss, aligned loss and optimisation seconds per run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from promptopt.config import build_config
from promptopt.host import PluginHost
from promptopt.runner import run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--country", default="CN")
    ap.add_argument("--budget", type=int, default=96, help="evaluations per run (default 96)")
    ap.add_argument("--popsize", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--positions", nargs="+", default=["suffix", "prefix", "answer"])
    args = ap.parse_args(argv)
    host = PluginHost(load_entrypoints=False)
    print(f"# positions: {args.model}, country {args.country}, DE, {args.budget} evaluations, popsize {args.popsize}\n")
    print("| position | seed | naive L1 | aligned L1 | reduction | optimisation s | s / evaluation |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for position in args.positions:
            for seed in args.seeds:
                config = build_config(None, model=args.model, country=args.country, budget=args.budget,
                                      popsize=args.popsize, seed=seed, position=position, icl_baseline=False)
                s = run(config, host, Path(tmp) / f"{position}-{seed}", progress=False, echo=lambda _: None)
                rows.setdefault(position, []).append(s)
                print(f"| {position} | {seed} | {s['naive_loss']:.2f} | {s['loss']:.2f} | "
                      f"{1 - s['loss'] / s['naive_loss']:.0%} | {s['seconds']:.0f} | {s['seconds'] / s['evaluations']:.2f} |",
                      flush=True)
    print("\n| position | median aligned L1 | median s / evaluation |")
    print("|---|---|---|")
    for position, summaries in rows.items():
        print(f"| {position} | {statistics.median(s['loss'] for s in summaries):.2f} | "
              f"{statistics.median(s['seconds'] / s['evaluations'] for s in summaries):.2f} |")


if __name__ == "__main__":
    main()
