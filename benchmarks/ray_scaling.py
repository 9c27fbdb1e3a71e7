"""Benchmark: evaluating generations on Ray actors (`--executor ray`) vs in-process (`local`).

    python benchmarks/ray_scaling.py                          # tiny model, 1 and 2 actors
    python benchmarks/ray_scaling.py --model smollm2          # the embedded SmolLM2-135M-Instruct
    python benchmarks/ray_scaling.py --actors 1 2 4 --popsize 32 --address auto   # on a cluster

For each setting the same populations (z uniform in the search space's bounds, seeded) are
evaluated for --generations generations after one warm-up generation (not timed):

- local, T threads: ``LocalExecutor`` (decode + survey objective in this process), torch
  threads 1 and, if more, the machine's cores;
- ray, N actors: ``RayExecutor`` with N CPU actors of 1 thread each (``--device cuda``: one
  GPU each), each holding its own model and prefix KV cache.

Columns: candidate-items/s = candidates x items per wall second of the driver;
s/gen = driver wall seconds per generation; in-actor s/gen = the slowest chunk's evaluation
time inside its actor; overhead s/gen = driver wall minus that (object store put, scheduling,
the results' transfer, gathering): what Ray adds per generation on top of the computation;
vs local-1 = ray's s/gen minus local with 1 thread's s/gen (for 1 actor: the whole cost of
going through Ray for the same computation). Actor start-up (model load per actor) is paid
once per run and reported apart. Every Ray result is checked against the local one (max abs
loss difference).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from promptopt.config import RunConfig  # noqa: E402
from promptopt.distributed import LocalExecutor, RayExecutor  # noqa: E402
from promptopt.host import PluginHost  # noqa: E402
from promptopt.runner import open_session  # noqa: E402


def populations(space, popsize: int, n: int, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lo, hi = space.lower.cpu(), space.upper.cpu()
    return [(lo + (hi - lo) * torch.rand(popsize, space.dim, generator=gen)).to(space.lower.device)
            for _ in range(n)]


def time_local(session, pops, threads: int) -> tuple[list[float], list[torch.Tensor]]:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        executor = LocalExecutor(session)
        executor(pops[0])  # warm-up
        walls, losses = [], []
        for z in pops[1:]:
            t0 = time.perf_counter()
            losses.append(executor(z).loss)
            walls.append(time.perf_counter() - t0)
        return walls, losses
    finally:
        torch.set_num_threads(old)


def time_ray(config, session, pops, actors: int, address: str | None):
    t0 = time.perf_counter()
    executor = RayExecutor(config, session, address=address, actors=actors)
    startup = time.perf_counter() - t0
    try:
        executor(pops[0])  # warm-up
        walls, inside, losses = [], [], []
        for z in pops[1:]:
            losses.append(executor(z).loss)
            walls.append(executor.stats.wall)
            inside.append(executor.stats.actor_max)
        return startup, walls, inside, losses
    finally:
        executor.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny (default), smollm2, or a local path / HF id")
    parser.add_argument("--popsize", type=int, default=16)
    parser.add_argument("--generations", type=int, default=5, help="timed generations (plus one warm-up)")
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a new local Ray)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import ray

    cores = os.cpu_count() or 1
    config = RunConfig(model=args.model, popsize=args.popsize, device=args.device, dtype=args.dtype,
                       seed=args.seed).validate()
    t0 = time.perf_counter()
    session = open_session(PluginHost(), config)
    driver_setup = time.perf_counter() - t0
    items = session.objective.evaluator.n_items
    pops = populations(session.space, args.popsize, args.generations + 1, args.seed)

    if args.address:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(num_cpus=max(args.actors), include_dashboard=False, log_to_driver=False,
                 object_store_memory=100 * 2**20, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})

    rows = []
    base_walls, base_losses = time_local(session, pops, 1)
    rows.append(("local, 1 thread", None, base_walls, None, 0.0))
    if cores > 1:
        walls, _ = time_local(session, pops, cores)
        rows.append((f"local, {cores} threads", None, walls, None, 0.0))
    base = statistics.median(base_walls)
    for n in args.actors:
        startup, walls, inside, losses = time_ray(config, session, pops, n, args.address)
        diff = max(float((a - b).abs().max()) for a, b in zip(losses, base_losses))
        rows.append((f"ray, {n} actor{'s' if n > 1 else ''}", startup, walls, inside, diff))
    ray.shutdown()

    print(f"# ray_scaling: {args.model}, {items} items, popsize {args.popsize}, {args.generations} timed "
          f"generations (+1 warm-up), device {args.device}")
    print(f"# {dt.date.today()}, {platform.machine()} {cores} cores, torch {torch.__version__}, ray {ray.__version__}, "
          f"python {platform.python_version()}; driver model load + setup {driver_setup:.1f} s")
    header = ("| executor | candidate-items/s | s/gen | in-actor s/gen | overhead s/gen | vs local-1 s/gen "
              "| actor start-up s | max abs loss diff vs local |")
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, startup, walls, inside, diff in rows:
        wall = statistics.median(walls)
        rate = args.popsize * items / wall
        if inside is None:
            print(f"| {name} | {rate:.1f} | {wall:.3f} | - | - | {wall - base:+.3f} | - | - |")
        else:
            over = statistics.median(w - i for w, i in zip(walls, inside))
            print(f"| {name} | {rate:.1f} | {wall:.3f} | {statistics.median(inside):.3f} | {over:.3f} "
                  f"| {wall - base:+.3f} | {startup:.1f} | {diff:.1e} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
