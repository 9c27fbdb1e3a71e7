"""benchmarks/matmul.py: the rate it prints follows from the timed product, and bad sizes exit 2."""

from __future__ import annotations

import re

import pytest
import torch

from conftest import load_benchmark


def test_rate_counts_two_flops_per_multiply_add(monkeypatch):
    bench = load_benchmark("matmul")
    ticks = iter([0.0, 0.5] * 3)   # every timed call takes 0.5 s
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    assert bench.product_rate(10, 20, 30, torch.float32, torch.device("cpu"), repeats=3) == pytest.approx(2 * 10 * 20 * 30 / 0.5 / 1e9)


def test_prints_one_positive_rate_per_dtype(capsys):
    assert load_benchmark("matmul").main(["--shape", "64", "32", "16", "--repeats", "2"]) == 0
    rates = re.findall(r"^(float32|bfloat16): (\d+) GFLOP/s$", capsys.readouterr().out, re.M)
    assert [name for name, _ in rates] == ["float32", "bfloat16"] and all(int(r) >= 0 for _, r in rates)


@pytest.mark.parametrize("argv", [["--shape", "0", "4", "4"], ["--repeats", "0"]])
def test_bad_sizes_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        load_benchmark("matmul").main(argv)
    assert e.value.code == 2
