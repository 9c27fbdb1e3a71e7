"""Benchmark: the machine's matrix-product rate, the ceiling the evaluator's FLOP/s is read against.

    python benchmarks/matmul.py                                   # CPU, [2000, 576] x [576, 1536], fp32 and bf16
    python benchmarks/matmul.py --device cuda --shape 8192 8192 8192 --dtypes bfloat16

The CPU shape is one SmolLM2-135M MLP projection over a large batch of rows; 8192^3 is the
usual square product for a GPU's dense peak. Prints GFLOP/s (2 M K N per product) per dtype,
the best of --repeats timed calls after one warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluator import machine, sync  # noqa: E402  (the evaluator benchmark's machine line and CUDA sync)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def product_rate(m: int, k: int, n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """Best GFLOP/s of ``a @ b`` for a [m, k] x [k, n] product."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=gen).to(device, dtype)
    b = torch.randn(k, n, generator=gen).to(device, dtype)
    a @ b   # warm-up: kernel choice, caches
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * m * k * n / best / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=3, type=int, default=[2000, 576, 1536], metavar=("M", "K", "N"))
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    if min(args.shape) < 1 or args.repeats < 1:
        parser.error("--shape sizes and --repeats must be >= 1")
    device = torch.device(args.device)
    m, k, n = args.shape
    print(f"# matmul benchmark: [{m}, {k}] x [{k}, {n}], best of {args.repeats}")
    print(f"machine: {machine(device)}")
    for name in args.dtypes:
        print(f"{name}: {product_rate(m, k, n, DTYPES[name], device, args.repeats):.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
