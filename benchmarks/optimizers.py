"""Benchmark of the promptopt optimizers. Prints Markdown tables.

    python benchmarks/optimizers.py            # full: 100-D, 20k evaluations, 5 seeds
    python benchmarks/optimizers.py --quick    # smoke run in well under a minute

(a) Median final best-so-far on sphere, Rastrigin and Rosenbrock (torch batched, float64)
    for the default ``de`` against classic DE/rand/1/bin, random search, Nevergrad's
    TwoPointsDE and pycma, all through the same ask/tell contract with the same popsize.
(b) Optimizer overhead per generation (ask + tell only, trivial fitness) at the size of a
    soft prompt (dim 5760 = 10 tokens x 576, popsize 64) on CPU: ``de`` vs Nevergrad.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings

import torch

from promptopt.optimizers import get_optimizer


def sphere(z: torch.Tensor) -> torch.Tensor:
    return z.double().pow(2).sum(1)


def rastrigin(z: torch.Tensor) -> torch.Tensor:
    z = z.double()
    return 10 * z.shape[1] + (z * z - 10 * torch.cos(2 * math.pi * z)).sum(1)


def rosenbrock(z: torch.Tensor) -> torch.Tensor:
    z = z.double()
    return (100 * (z[:, 1:] - z[:, :-1] ** 2) ** 2 + (1 - z[:, :-1]) ** 2).sum(1)


FUNCTIONS = {  # name -> (function, bounds); optimum 0 at 0, 0, and 1 respectively
    "sphere": (sphere, (-5.0, 5.0)),
    "rastrigin": (rastrigin, (-5.12, 5.12)),
    "rosenbrock": (rosenbrock, (-5.0, 10.0)),
}

CONTENDERS = {  # column label -> (registry name, hyper-parameters)
    "de (default)": ("de", {}),
    "de jade": ("de", {"strategy": "jade"}),
    "de best1bin": ("de", {"strategy": "best1bin"}),
    "de rand1bin": ("de", {"strategy": "rand1bin"}),
    "random": ("random", {}),
    "ng:TwoPointsDE": ("ng:TwoPointsDE", {}),
    "cma": ("cma", {}),
}


def run(name: str, hyper: dict, fn, bounds, dim: int, popsize: int, budget: int, seed: int) -> float:
    kw = dict(hyper)
    if name.startswith("ng:"):
        kw.setdefault("budget", budget)
    opt = get_optimizer(name)(dim, bounds=bounds, popsize=popsize, seed=seed, **kw)
    while opt.evaluations < budget:
        z = opt.ask()
        opt.tell(fn(z))
    return opt.best[1]


def quality(dim: int, popsize: int, budget: int, seeds: int) -> None:
    print(f"### (a) median final best over {seeds} seeds (dim {dim}, popsize {popsize}, {budget} evaluations; lower is better)\n")
    print("| function | " + " | ".join(CONTENDERS) + " |")
    print("|---" * (len(CONTENDERS) + 1) + "|")
    for fname, (fn, bounds) in FUNCTIONS.items():
        cells, medians = [], {}
        for label, (name, hyper) in CONTENDERS.items():
            vals = [run(name, hyper, fn, bounds, dim, popsize, budget, s) for s in range(seeds)]
            medians[label] = statistics.median(vals)
        best_other = min(v for k, v in medians.items() if k in ("de rand1bin", "random", "ng:TwoPointsDE"))
        for label in CONTENDERS:
            cell = f"{medians[label]:.4g}"
            if label == "de (default)":
                cell = f"**{cell}**" if medians[label] < best_other else cell + " (not best)"
            cells.append(cell)
        print(f"| {fname} | " + " | ".join(cells) + " |", flush=True)
    print()


def overhead(dim: int, popsize: int, generations: dict[str, int], repeats: int) -> None:
    torch.set_num_threads(1)  # numpy-based Nevergrad is single threaded too; steadier timings
    print(f"### (b) optimizer overhead per generation (ask + tell, trivial fitness), dim {dim}, popsize {popsize}, CPU, "
          f"1 torch thread; each generation timed alone\n")
    opts = {}
    for name in generations:
        opt = get_optimizer(name)(dim, bounds=(-1.0, 1.0), popsize=popsize, seed=0,
                                  **({"budget": 10**7} if name.startswith("ng:") else {}))
        for _ in range(2):  # warm-up; DE's first generation is the initial population
            z = opt.ask()
            opt.tell(z[:, 0].double())
        opts[name] = opt
    samples: dict[str, list[float]] = {name: [] for name in generations}
    for _ in range(repeats):  # interleaved blocks: load changes on a shared machine hit all alike
        for name, gens in generations.items():
            opt = opts[name]
            for _ in range(gens):
                t0 = time.perf_counter()
                z = opt.ask()
                opt.tell(z[:, 0].double())  # trivial fitness (~µs)
                samples[name].append((time.perf_counter() - t0) * 1e3)
    lo = {k: min(v) for k, v in samples.items()}
    med = {k: statistics.median(v) for k, v in samples.items()}
    print("| optimizer | generations timed | min ms / gen | median ms / gen | min ratio vs de | median ratio vs de |")
    print("|---|---|---|---|---|---|")
    for name in generations:
        print(f"| {name} | {len(samples[name])} | {lo[name]:.3f} | {med[name]:.3f} | {lo[name] / lo['de']:.1f} | "
              f"{med[name] / med['de']:.1f} |")
    print()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small dims/budget/seeds: a smoke run")
    ap.add_argument("--only-overhead", action="store_true", help="skip part (a)")
    ap.add_argument("--budget", type=int, default=20_000, help="evaluations per run in part (a) (default 20000)")
    ap.add_argument("--seeds", type=int, default=5, help="seeds per cell in part (a) (default 5)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"torch {torch.__version__}, python {sys.version.split()[0]}\n")
    t0 = time.perf_counter()
    if not args.only_overhead:
        if args.quick:
            quality(dim=20, popsize=20, budget=2000, seeds=3)
        else:
            quality(dim=100, popsize=50, budget=args.budget, seeds=args.seeds)
    if args.quick:
        overhead(dim=5760, popsize=64, generations={"de": 10, "ng:TwoPointsDE": 2, "ng:DE": 1}, repeats=3)
    else:
        overhead(dim=5760, popsize=64, generations={"de": 20, "ng:TwoPointsDE": 3, "ng:DE": 2}, repeats=5)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
