"""Does a search space's start predict how well DE does in it? (issue 8: "several random inits")

    python benchmarks/space_screening.py --rows study/gpu/tuning.jsonl          # SA US CN IN, seeds 0-9

A run's seed fixes its search space (the K random tokens of x0 and the projection A) as well as
the optimizer's draws, so the tuning sweeps' DE variants at the same (country, seed) share one
space. If the loss at the space's start (x0, or the best of N uniform z) ranked the spaces the way
their DE results do, a run could screen several spaces first and search the best. Per country
this prints how much the final L1 / naive of the sweep's DE rows in the default space (position,
K, d, radius) varies between seeds (of the seed means) and within a seed (across variants), then
scores x0 and N uniform z of every seed's space and gives the Spearman rank correlation of each
with the seed's mean final L1 / naive.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from alignment_study import cached_models, read_cells
from promptopt.config import RunConfig, build_config
from promptopt.host import PluginHost
from promptopt.runner import open_session


def start_losses(host: PluginHost, model: str, country: str, seed: int, samples: int,
                 **settings: Any) -> dict[str, float]:
    """Loss at x0 and the best / mean of `samples` uniform z in the space of (country, seed)."""
    session = open_session(host, build_config(None, model=model, country=country, seed=seed, icl_baseline=False,
                                              **settings))
    space = session.space
    g = torch.Generator().manual_seed(10_000 + seed)   # not the run's own draws
    z = torch.rand(samples, space.dim, generator=g) * 2 - 1
    with torch.no_grad():
        loss = session.objective(space.decode(torch.cat([space.z0[None], z.to(space.z0)]))).loss
    return {"x0": float(loss[0]), "best_of_n": float(loss[1:].min()), "mean_of_n": float(loss[1:].mean())}


def final_ratios(rows_path: Path, space: dict) -> pd.DataFrame:
    """Final L1 / naive of every DE row of the sweep searched in the given space settings."""
    keep = [r for r in read_cells(rows_path) if r["options"].get("optimizer", "de") == "de"
            and all(r["settings"].get(k) == v for k, v in space.items())]
    if not keep:
        raise SystemExit(f"error: {rows_path} has no DE rows with {space}")
    return pd.DataFrame([{"country": r["country"], "seed": r["seed"], "variant": r["variant"],
                          "ratio": r["loss"] / r["naive_loss"]} for r in keep])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=Path, default=Path("study/gpu/tuning.jsonl"), help="tuning sweep rows")
    ap.add_argument("--countries", nargs="+", default=["SA", "US", "CN", "IN"])
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--samples", type=int, default=16, help="uniform z per space (default 16)")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--position", default=RunConfig.position, help="the rows' soft-prompt position (default: a run's)")
    ap.add_argument("--tokens", type=int, default=RunConfig.tokens, help="the rows' soft-prompt length (default: a run's)")
    args = ap.parse_args(argv)
    if not args.rows.exists():
        ap.error(f"--rows {args.rows} does not exist; give a tune_alignment.py tuning.jsonl")
    settings = {"position": args.position, "tokens": args.tokens}
    space = build_config(None, model=args.model, **settings)
    runs = final_ratios(args.rows, {k: getattr(space, k) for k in ("position", "tokens", "subspace", "radius")})
    runs = runs[runs["country"].isin(args.countries) & runs["seed"].isin(args.seeds)]
    finals = runs.groupby(["country", "seed"], as_index=False)["ratio"].mean()
    host = cached_models(PluginHost(load_entrypoints=False))
    starts = pd.DataFrame([{"country": c, "seed": s, **start_losses(host, args.model, c, s, args.samples, **settings)}
                           for c in args.countries for s in args.seeds])
    both = starts.merge(finals, on=["country", "seed"])
    if both.empty:
        raise SystemExit(f"error: {args.rows} has no rows for {args.countries} x seeds {args.seeds}")
    print(f"# space screening: {args.model}, {args.samples} uniform z per space; rows {args.rows}\n")
    print("| country | seeds | DE runs | variance of L1/naive (%^2) between seeds | within a seed | "
          "Spearman(x0, final) | Spearman(best of N, final) | Spearman(mean of N, final) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for country, group in both.groupby("country", sort=False):
        mine = runs[runs["country"] == country]
        between = (100 * group["ratio"]).var(ddof=0)
        within = mine.groupby("seed")["ratio"].apply(lambda r: (100 * r).var(ddof=0)).mean()
        rho = [group[key].corr(group["ratio"], method="spearman") for key in ("x0", "best_of_n", "mean_of_n")]
        print(f"| {country} | {len(group)} | {len(mine)} | {between:.0f} | {within:.0f} | "
              + " | ".join(f"{r:+.2f}" for r in rho) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
