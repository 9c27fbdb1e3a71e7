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
    assert line.endswith("| – | – |")           # these rows predate the option mass and entropy: not made up
    rows[0]["option_mass"], rows[1]["option_mass"] = 0.02, 0.04
    rows[2]["answer_entropy"] = 0.84
    assert tune_alignment.report(rows).splitlines()[-1].endswith("| 0.030 | 0.84 |")    # medians of the runs that have it


def test_a_run_records_its_best_so_far_curve_and_the_curve_report_reads_budgets_off_it(tmp_path):
    args = ["--variants", "c:model=tiny,popsize=4", "--countries", "US", "--seeds", "0", "--budget", "12",
            "--out", str(tmp_path)]
    assert tune_alignment.main(args) == 0
    row = json.loads((tmp_path / "tuning.jsonl").read_text())
    assert [e for e, _ in row["curve"]] == [4, 8, 12]
    best = [b for _, b in row["curve"]]
    assert best == sorted(best, reverse=True)                 # best-so-far never rises
    assert tune_alignment.best_at(row, 8) == best[1] and tune_alignment.best_at(row, 13) is None


def test_curve_report_gives_each_checkpoint_the_best_loss_reached_by_then():
    def run(country, curve):
        return {"variant": "v", "budget": 16, "country": country, "naive_loss": 20.0, "curve": curve}
    rows = [run("US", [[8, 14.0], [16, 8.0]]), run("US", [[8, 12.0], [16, 12.0]]), run("CN", [[8, 16.0], [16, 10.0]])]
    lines = tune_alignment.curve_report(rows, [8, 16]).splitlines()
    # after 8: US ratios 0.7, 0.6 (median -35%), CN 0.8 (-20%); pooled mean of -30, -40, -20 = -30%
    assert lines[2].startswith("| v | 16 | 8 | -35% (n=2) | -20% (n=1) | -30.0% ± 5.8 | 0/3 |")
    # after 16: US 0.4, 0.6 (-50%), CN 0.5 (-50%); two of three runs at -50% or better
    assert lines[3].startswith("| v | 16 | 16 | -50% (n=2) | -50% (n=1) | -50.0% ± 5.8 | 2/3 |")


def test_alternate_report_scores_each_runs_prompt_on_the_alternate_wording_and_leaves_out_overwritten_runs(tmp_path, capsys):
    args = ["--variants", "a:model=tiny,popsize=4", "--countries", "US", "--seeds", "0", "1", "--budget", "8",
            "--out", str(tmp_path)]
    assert tune_alignment.main(args) == 0
    capsys.readouterr()
    # the same numbers by hand: each run's saved prompt and the bare model on the alternate wording
    from promptopt.config import build_config
    from promptopt.host import PluginHost
    host, changes = PluginHost(load_entrypoints=False), []
    for seed in (0, 1):
        config = build_config(None, model="tiny", popsize=4, country="US", seed=seed, budget=8, icl_baseline=False)
        alt, aligned = tune_alignment.alternate_wording(host, config, tmp_path / "tuning-runs" / f"a-US-{seed}")
        changes.append(float(aligned.loss[0]) / float(alt(None).loss[0]) - 1)
    rows = [json.loads(x) for x in (tmp_path / "tuning.jsonl").read_text().splitlines()]
    assert [r["alt_loss"] / r["alt_naive_loss"] - 1 for r in rows] == pytest.approx(changes)   # kept in the row

    def alternate_line(variant_budget):
        assert tune_alignment.main(args + ["--report-only", "--alternate"]) == 0
        out = capsys.readouterr().out
        return out, next((x for x in out.splitlines() if x.startswith(variant_budget)), None)

    # rows written before they kept the held-out scores: scored from their run dirs, same numbers
    (tmp_path / "tuning.jsonl").write_text("".join(
        json.dumps({k: v for k, v in r.items() if not k.startswith("alt_")}) + "\n" for r in rows))
    for source in ("run dirs", "rows"):
        _, line = alternate_line("| a | 8 |")
        assert line.startswith(f"| a | 8 | 2 | {100 * sum(changes) / 2:+.1f}% ± "), source
        assert f"| {sum(c < 0 for c in changes)}/2 |" in line
        # one country, two seeds: below naive when the median of the two changes is
        assert ("| 1/1 |" if sorted(changes)[0] + sorted(changes)[1] < 0 else "| 0/1 (not: US) |") in line
        (tmp_path / "tuning.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    # continuing the variant to a larger budget overwrites its run dirs: rows that keep their
    # held-out scores stay in the table, an old row without them is left out
    assert tune_alignment.main(args[:-4] + ["--budget", "12", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    out, line = alternate_line("| a | 8 |")
    assert "| a | 12 | 2 |" in out and line.startswith("| a | 8 | 2 |") and "left out" not in out
    lines = (tmp_path / "tuning.jsonl").read_text().splitlines()
    (tmp_path / "tuning.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in json.loads(x).items() if not k.startswith("alt_")}) + "\n"
                for x in lines[:2]) + "\n".join(lines[2:]) + "\n")
    out, line = alternate_line("| a | 8 |")
    assert line is None and "| a | 12 | 2 |" in out and "2 row(s) left out" in out
