"""benchmarks/alignment_study.py on the tiny model: cells, report, figure, resume, --report-only."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark


def _load():
    return load_benchmark("alignment_study")


def test_alignment_study_runs_resumes_and_reports(tmp_path, monkeypatch):
    study = _load()
    out, results = tmp_path / "study", tmp_path / "study" / "RESULTS.md"
    args = ["--model", "tiny", "--countries", "US", "CN", "--seeds", "0", "--optimizers", "de", "random",
            "--budget", "12", "--popsize", "4", "--out", str(out), "--results", str(results)]

    calls = []
    real_run = study.runner.run
    monkeypatch.setattr(study.runner, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))

    assert study.main(args) == 0
    assert len(calls) == 4
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert len(cells) == 4
    assert {c["key"] for c in cells} == {"US-de-0", "US-random-0", "CN-de-0", "CN-random-0"}
    for c in cells:
        assert (out / "runs" / c["key"] / "summary.json").exists()
        assert c["alt_loss"] >= 0 and c["alt_naive_loss"] >= 0 and c["loss"] >= 0 and c["device"] == "cpu"
        assert 0 < c["option_mass"] <= 1 and 0 < c["naive_option_mass"] <= 1
    # ICL scored once per country, in its first cell, and carried into the country's other cells
    assert [(cfg.country, cfg.optimizer) for cfg, *_ in calls if cfg.icl_baseline] == [("US", "de"), ("CN", "de")]
    for country in ("US", "CN"):
        assert len({c["icl_loss"] for c in cells if c["country"] == country}) == 1
    assert all(c["icl_loss"] is not None for c in cells)

    text = results.read_text()
    for word in ("US", "CN", "de", "random", "naive", "ICL", "alternate wording", "C = 50", "device: cpu",
                 "## Issue 8's checks"):
        assert word in text
    # the option mass section: per country, the naive model's mass, then each optimizer's median
    mass_rows = text.split("## Answer validity: option mass")[1].split("##")[0]
    us_de = [c["option_mass"] for c in cells if c["key"] == "US-de-0"][0]
    naive_us = [c["naive_option_mass"] for c in cells if c["country"] == "US"][0]
    assert f"| US | {naive_us:.3f} | {us_de:.3f} |" in mass_rows
    # and the answer entropy, the same way
    entropy_rows = text.split("## Answer validity: answer entropy")[1].split("##")[0]
    us_de = [c["answer_entropy"] for c in cells if c["key"] == "US-de-0"][0]
    naive_us = [c["naive_answer_entropy"] for c in cells if c["country"] == "US"][0]
    assert f"| US | {naive_us:.2f} | {us_de:.2f} |" in entropy_rows
    # the held-out section ends with DE's per-dimension shifts: US's IDV row of the second table
    held_out = text.split("## Held-out check: alternate wording")[1].split("##")[0]
    us = [c for c in cells if c["key"] == "US-de-0"][0]
    idv_error = us["alt_naive_dimensions"]["IDV"] - us["target"]["scores"]["IDV"]
    assert "| IDV |" in held_out and f"| US | {round(us['alt_naive_dimensions']['PDI'] - us['target']['scores']['PDI'], 1)} | {round(idv_error, 1)} |" in held_out
    png = tmp_path / "study" / "img" / "alignment_study.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second invocation skips every finished cell
    before = (out / "cells.jsonl").read_bytes()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*")}
    assert study.main(args) == 0
    assert len(calls) == 4
    assert (out / "cells.jsonl").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*")} == mtimes

    # --report-only regenerates the Markdown (and figure) from cells.jsonl alone
    results.unlink()
    png.unlink()
    assert study.main(args + ["--report-only"]) == 0
    assert len(calls) == 4
    assert results.read_text() == text
    assert png.exists()


def test_half_finished_run_dir_is_redone(tmp_path):
    study = _load()
    out = tmp_path / "s"
    args = ["--model", "tiny", "--countries", "US", "--seeds", "0", "--optimizers", "random",
            "--budget", "8", "--popsize", "4", "--out", str(out), "--results", str(out / "R.md")]
    junk = out / "runs" / "US-random-0"
    junk.mkdir(parents=True)
    (junk / "stray.txt").write_text("left by a killed session")
    assert study.main(args) == 0
    cells = (out / "cells.jsonl").read_text().splitlines()
    assert len(cells) == 1
    assert not (junk / "stray.txt").exists() and (junk / "summary.json").exists()


def test_cells_of_other_settings_are_rerun_and_replaced_per_optimizer_popsize(tmp_path, monkeypatch):
    study = _load()
    out = tmp_path / "s"
    base = ["--model", "tiny", "--countries", "US", "--seeds", "0", "--optimizers", "de", "random",
            "--budget", "12", "--out", str(out), "--results", str(out / "R.md")]
    calls = []
    real_run = study.runner.run
    monkeypatch.setattr(study.runner, "run", lambda *a, **k: calls.append(a[0]) or real_run(*a, **k))

    assert study.main(base + ["--popsize", "4"]) == 0
    assert [(c.optimizer, c.popsize) for c in calls] == [("de", 4), ("random", 4)]
    # de's population changes: only its cell reruns, and its line replaces the old one
    assert study.main(base + ["--popsize", "4", "de=6"]) == 0
    assert [(c.optimizer, c.popsize) for c in calls[2:]] == [("de", 6)]
    cells = {c["key"]: c for c in study.read_cells(out / "cells.jsonl")}
    assert len((out / "cells.jsonl").read_text().splitlines()) == 2
    assert (cells["US-de-0"]["popsize"], cells["US-random-0"]["popsize"]) == (6, 4)
    assert json.loads((out / "runs" / "US-de-0" / "config.json").read_text())["config"]["popsize"] == 6
    assert "de 6" in (out / "R.md").read_text()

    with pytest.raises(SystemExit, match="OPTIMIZER=N"):
        study.main(base + ["--popsize", "de=many"])


def test_the_study_passes_its_dtype_to_every_cell():
    study = _load()
    for dtype, recorded in ((None, None), ("bf16", "bfloat16")):   # an alias as its full name, as a run records it
        args = study.parse_args(["--device", "cpu"] + (["--dtype", dtype] if dtype else []))
        study.resolve_device(args)
        args.popsizes = study.parse_popsizes(args.popsize)
        assert study.cell_config(args, "US", "de", 0).dtype == recorded


def test_the_study_passes_its_init_to_every_cell_and_old_cells_count_as_random_init():
    study = _load()
    args = study.parse_args(["--device", "cpu", "--init", "screen"])
    args.popsizes = study.parse_popsizes(args.popsize)
    config = study.cell_config(args, "US", "random", 0)
    assert config.init == "screen" and config.popsize == 16
    old = {"budget": 480, "popsize": 16, "settings": {k: v for k, v in study.settings_of(config).items() if k != "init"}}
    assert not study.is_done(old, config)             # a cell recorded before --init: random, not screen
    assert study.is_done(old, study.build_config(None, budget=480, popsize=16, optimizer="random"))


def test_the_study_passes_its_position_to_every_cell_and_a_cell_at_another_position_is_rerun():
    study = _load()
    args = study.parse_args(["--device", "cpu", "--position", "answer"])
    args.popsizes = study.parse_popsizes(args.popsize)
    config = study.cell_config(args, "US", "de", 0)
    assert config.position == "answer"
    at_reply = {"budget": config.budget, "popsize": config.popsize,
                "settings": {**study.settings_of(config), "position": "reply"}}
    assert not study.is_done(at_reply, config)
    assert study.is_done({**at_reply, "settings": study.settings_of(config)}, config)


def test_a_bad_dtype_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _load().parse_args(["--dtype", "float99"])
    assert exit_info.value.code == 2 and "float32" in capsys.readouterr().err


def test_a_cell_recorded_before_a_setting_existed_counts_as_run_at_its_default():
    study = _load()
    config = study.build_config(None, budget=480, popsize=8)
    old = {"budget": 480, "popsize": 8,
           "settings": {k: v for k, v in study.settings_of(config).items() if k != "init_text"}}
    assert study.is_done(old, config)
    assert not study.is_done(old, study.build_config(None, budget=480, popsize=8, init_text="{country}"))
    assert not study.is_done({**old, "popsize": 16}, config) and not study.is_done(None, config)
    # a cell from before the option-mass floor existed ran without one, whatever today's default floor is
    unfloored = {**old, "settings": {k: v for k, v in old["settings"].items() if k != "min_mass"}}
    assert study.RunConfig.min_mass and not study.is_done(unfloored, config)
    assert study.is_done(unfloored, study.build_config(None, budget=480, popsize=8, min_mass=0))


def test_processes_sharing_a_study_keep_each_others_baselines(tmp_path):
    study = _load()
    path = tmp_path / "baselines.json"
    study.update_baselines(path, "US", {"naive_loss": 1.0})   # process A
    study.update_baselines(path, "CN", {"naive_loss": 2.0})   # process B, which never read A's entry
    study.update_baselines(path, "US", {"naive_loss": 1.5})
    assert json.loads(path.read_text()) == {"US": {"naive_loss": 1.5}, "CN": {"naive_loss": 2.0}}


def test_jobs_split_the_countries_over_worker_processes_into_one_study(tmp_path):
    study = _load()
    out, results = tmp_path / "study", tmp_path / "R.md"
    args = ["--model", "tiny", "--countries", "US", "CN", "JP", "--seeds", "0", "--optimizers", "de",
            "--budget", "8", "--popsize", "4", "--out", str(out), "--results", str(results), "--jobs", "2"]
    assert study.main(args) == 0
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert sorted(c["key"] for c in cells) == ["CN-de-0", "JP-de-0", "US-de-0"]   # each cell once
    assert set(json.loads((out / "baselines.json").read_text())) == {"US", "CN", "JP"}
    assert all(word in results.read_text() for word in ("US", "CN", "JP"))        # the parent's report
    assert study.main(args) == 0                                                    # all done: nothing reruns
    assert len((out / "cells.jsonl").read_text().splitlines()) == 3


def test_jobs_report_bad_input_with_exit_code_2(tmp_path, capfd):
    study = _load()
    args = ["--model", "tiny", "--countries", "US", "Atlantis", "--seeds", "0", "--optimizers", "de",
            "--budget", "8", "--popsize", "4", "--out", str(tmp_path / "s"), "--results", str(tmp_path / "R.md"),
            "--jobs", "2"]
    assert study.main(args) == 2
    assert "Atlantis" in capfd.readouterr().err
    with pytest.raises(SystemExit):
        study.main(args[:-1] + ["0"])


def test_a_run_dir_saved_before_a_setting_existed_is_reused_not_rerun(tmp_path, monkeypatch):
    study = _load()
    config = study.build_config(None, model="tiny", budget=8, popsize=4, icl_baseline=False)
    run_dir = tmp_path / "run"
    first = study.run_or_resume(study.PluginHost(load_entrypoints=False), config, run_dir)
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["config"]["basis"]                      # as written before --basis existed
    (run_dir / "config.json").write_text(json.dumps(saved))
    monkeypatch.setattr(study.runner, "run", lambda *a, **k: pytest.fail("reran a run at its default settings"))
    assert study.run_or_resume(study.PluginHost(load_entrypoints=False), config, run_dir) == first


def test_the_settings_line_says_none_for_an_absent_floor_or_cap_and_default_for_other_unset_settings():
    study = _load()
    assert study._setting("min_mass", None) == "none" and study._setting("max_entropy", None) == "none"
    assert study._setting("init_text", None) == "default" and study._setting("dtype", None) == "default"
    assert study._setting("min_mass", 0.1) == "0.1"


def _cell(seed: int, loss: float, pdi: float, country: str = "US", optimizer: str = "de") -> dict:
    return {"country": country, "optimizer": optimizer, "seed": seed, "loss": loss, "naive_loss": 20.0,
            "dimensions": {"PDI": pdi, "IDV": 50.0}, "naive_dimensions": {"PDI": 50.0, "IDV": 50.0},
            "target": {"scores": {"PDI": 40.0, "IDV": 91.0}, "name": "United States"},
            "constants": {"PDI": 50.0, "IDV": 60.0}, "alt_naive_loss": 18.0, "alt_loss": 17.0}


def test_an_optimizers_scores_are_its_median_runs_own_so_they_give_its_l1():
    study = _load()
    runs = [_cell(0, 9.0, 41.0), _cell(1, 3.0, 45.0), _cell(2, 15.0, 60.0)]
    row = study.summarise(runs)["table"]["US"]["optimizers"]["de"]
    assert row["loss"] == 9.0 and row["range"] == (3.0, 15.0)
    assert row["median_run"] == {"seed": 0, "loss": 9.0, "dimensions": {"PDI": 41.0, "IDV": 50.0}}
    assert study.median_run(runs[:2])["seed"] == 1   # an even count: the lower of the middle two


def test_the_midpoint_respondent_scores_the_constants():
    study = _load()
    cell = _cell(0, 9.0, 41.0)
    # |50 - 40| and |60 - 91|: every index's item differences are 0, so each score is its C
    assert study.midpoint_loss(cell["target"], cell["constants"], ["PDI", "IDV"]) == (10 + 31) / 2


def test_limitations_count_the_countries_where_the_bare_model_is_worse_than_the_midpoint():
    study = _load()
    cells = [_cell(0, 9.0, 41.0), _cell(0, 5.0, 41.0, country="JP")]
    cells[0]["naive_loss"], cells[1]["naive_loss"] = 25.0, 15.0   # above and below the midpoint L1 of 20.5
    s = study.summarise(cells)
    text = "\n".join(study._limitations_section(cells, s["table"], s["countries"], s["optimizers"]))
    assert "The bare model is further from the target than that in 1 of 2 countries (US)" in text
    assert "On the 1 countries never used for a choice (JP), the mean change vs naive per run: de -66.7% (n=1)" in text


def test_the_studys_long_table_has_every_cells_scores_on_both_wordings_and_each_baseline_once():
    study = _load()
    cells = [_cell(0, 9.0, 41.0), _cell(1, 3.0, 45.0)]
    for c in cells:
        c["alt_dimensions"] = {"PDI": 60.0, "IDV": 55.0}
        c["alt_naive_dimensions"] = {"PDI": 52.0, "IDV": 48.0}
    cells[1]["icl_dimensions"] = {"PDI": 70.0, "IDV": 40.0}
    rows = study.scores_rows(cells)
    key = [(r["method"], r["wording"], r["seed"]) for r in rows]
    assert key.count(("naive", "main", None)) == 2 and key.count(("naive", "alternate", None)) == 2   # one per dimension
    assert key.count(("ICL", "main", None)) == 2                       # from the cell that holds it
    assert key.count(("aligned", "alternate", 1)) == 2 and len(rows) == 2 * (2 + 1 + 2 * 2)
    pdi = next(r for r in rows if r["method"] == "aligned" and r["seed"] == 1 and r["dimension"] == "PDI" and r["wording"] == "main")
    assert (pdi["score"], pdi["target"], pdi["constant"]) == (45.0, 40.0, 50.0)


def test_rescore_icl_writes_the_current_prompts_scores_into_every_cell_of_its_countries_only(tmp_path):
    study = _load()
    out = tmp_path / "s"
    args = ["--model", "tiny", "--countries", "US", "CN", "--seeds", "0", "1", "--optimizers", "random",
            "--budget", "8", "--popsize", "4", "--out", str(out), "--results", str(out / "R.md")]
    assert study.main(args) == 0
    cells = study.read_cells(out / "cells.jsonl")
    scored = {c["key"]: (c["icl_loss"], c["icl_dimensions"]) for c in cells}
    stale = [{**c, "icl_loss": 99.0, "icl_system_prompt": "old"} for c in cells]   # as if an older prompt scored them
    study.write_cells(out / "cells.jsonl", stale)

    assert study.main([*args[:4], *args[5:], "--rescore-icl"]) == 0   # US only
    again = {c["key"]: c for c in study.read_cells(out / "cells.jsonl")}
    for key in ("US-random-0", "US-random-1"):
        assert (again[key]["icl_loss"], again[key]["icl_dimensions"]) == scored[key]
        assert again[key]["icl_system_prompt"].startswith("You are a typical adult from the United States, ")
    assert again["CN-random-0"]["icl_loss"] == 99.0 and again["CN-random-0"]["icl_system_prompt"] == "old"
    assert study.read_json(out / "baselines.json")["US"]["icl_loss"] == scored["US-random-0"][0]
    assert "| ICL | " + f"{scored['US-random-0'][0]:.2f}" in (out / "R.md").read_text()
