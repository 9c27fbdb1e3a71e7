"""benchmarks/tune_alignment.py: variant syntax, runs on the tiny model, resume, the report."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark

tune_alignment = load_benchmark("tune_alignment")


def test_variant_options_are_typed_and_hyper_keys_go_to_the_optimizer():
    name, options = tune_alignment.parse_variant("fast:popsize=8,position=answer,hyper.strategy=jade,hyper.F=0.7,icl-baseline=false")
    assert name == "fast"
    assert options == {"popsize": 8, "position": "answer", "icl_baseline": False, "hyper": {"strategy": "jade", "F": 0.7}}
    assert tune_alignment.parse_variant("base") == ("base", {})
    assert tune_alignment.optimizer_of(options) == "de strategy=jade F=0.7 popsize=8"
    with pytest.raises(SystemExit, match="key=value"):
        tune_alignment.parse_variant("bad:popsize")


def test_sweep_runs_each_cell_once_with_the_variant_hyper_parameters(tmp_path, monkeypatch):
    calls = []
    real_run = tune_alignment.run_or_resume
    monkeypatch.setattr(tune_alignment, "run_or_resume", lambda *a: calls.append(a[2]) or real_run(*a))
    args = ["--variants", "b1:model=tiny,popsize=4,hyper.strategy=best1bin", "--countries", "US", "--seeds", "0", "1",
            "--budget", "8", "--out", str(tmp_path)]
    assert tune_alignment.main(args) == 0
    assert len(calls) == 2
    rows = [json.loads(line) for line in (tmp_path / "tuning.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"]) for r in rows] == [("b1", 0), ("b1", 1)]
    for run_dir in calls:  # the optimizer really ran with the variant's strategy
        config = json.loads((run_dir / "config.json").read_text())["config"]
        assert config["hyper"] == {"strategy": "best1bin"} and config["popsize"] == 4
    assert all(r["evaluations"] == 8 and r["loss"] >= 0 for r in rows)

    assert tune_alignment.main(args) == 0  # finished cells are skipped
    assert len(calls) == 2
    assert len((tmp_path / "tuning.jsonl").read_text().splitlines()) == 2


def test_report_pools_every_run_of_a_variant():
    rows = [{"variant": "v", "budget": 8, "options": {}, "country": c, "seed": seed, "loss": loss, "naive_loss": 20.0,
             "evaluations": 8, "seconds": 1.0,
             "settings": {"position": "answer", "tokens": 2, "subspace": 64, "radius": 1.0}}
            for c, seed, loss in [("US", 0, 8.0), ("US", 1, 12.0), ("CN", 0, 16.0)]]
    line = tune_alignment.report(rows).splitlines()[-1]
    assert "10.00 (-50%, n=2)" in line and "16.00 (-20%, n=1)" in line
    # mean of -60%, -40%, -20% = -40%, standard error 20 / sqrt(3) = 11.5; one run of three reached -50%
    assert "| -40.0% ± 11.5 | 1/3 |" in line
