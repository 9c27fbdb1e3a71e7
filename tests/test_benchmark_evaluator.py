"""benchmarks/evaluator.py end to end on the tiny model: the table, the exactness check, FLOP/s and MFU lines."""

from __future__ import annotations

from conftest import load_benchmark


def _load():
    return load_benchmark("evaluator")


def test_benchmark_runs_any_registered_model_and_reports_flops_and_mfu(capsys):
    bench = _load()
    bench.main(["--model", "tiny", "--quick", "--peak-tflops", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| (b) ours")]
    assert [row.split(" | ")[1] for row in rows] == ["answer", "reply", "suffix", "prefix"]
    assert "PASS: fast path vs full forward" in out
    assert "speed-up of the default" not in out  # the 50x goal is the embedded model's, not checked on others
    flops = [line for line in out.splitlines() if line.startswith("- model FLOP/s")]
    assert len(flops) == 5 and all("% MFU of 1 TFLOP/s" in line for line in flops)


def test_flops_per_token_counts_the_body_twice_and_skips_embeddings():
    from promptopt.models import build_tiny

    model = build_tiny().model
    body = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lm_head" not in name)
    assert _load().flops_per_token(model) == 2.0 * body
    assert body < sum(p.numel() for p in model.parameters())
