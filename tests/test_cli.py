"""The CLI end to end on the tiny model: run directory contents, determinism, exit codes."""

from __future__ import annotations

import json

import torch
import os

import pandas as pd
import pytest
from safetensors.torch import load_file

from conftest import invoke

from promptopt.config import RunConfig

TINY = ["--model", "tiny", "--popsize", "6", "--generations", "3", "--quiet"]


def test_run_writes_a_complete_run_directory_and_improves_on_naive(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = invoke(["run", *TINY, "--generations", "5", "--country", "CN", "--out", str(out)])
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["country"] == "CN" and config["target"]["code"] == "CN"
    assert "2015" in config["target"]["source"] and config["seed"] == 0
    assert config["scorer"]["constants"] == {d: 50.0 for d in ["PDI", "IDV", "MAS", "UAI", "LTO", "IVR"]}
    assert set(config["versions"]) >= {"promptopt", "torch", "transformers"}
    history = pd.read_csv(out / "history.csv")
    assert list(history["generation"]) == [1, 2, 3, 4, 5]
    assert set(history.columns) >= {"evaluations", "best_loss", "mean_loss", "seconds", "PDI", "IVR"}
    assert (history["best_loss"].diff().dropna() <= 0).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] <= summary["naive_loss"]
    assert summary["evaluations"] == 30
    soft = load_file(str(out / "best" / "soft_prompt.safetensors"))["soft_prompt"]
    assert soft.shape == (RunConfig.tokens, 32)   # the default soft-prompt length
    assert "naive" in stdout and "aligned" in stdout and "mean absolute difference" in stdout
    events = [json.loads(line)["event"] for line in (out / "events.jsonl").read_text().splitlines()]
    assert events == ["run_start"] + ["generation_end"] * 5 + ["run_end"]
    umask = os.umask(0)
    os.umask(umask)
    for written in ("config.json", "history.csv", "summary.json", "best/soft_prompt.safetensors"):
        assert (out / written).stat().st_mode & 0o777 == 0o666 & ~umask, written  # not mkstemp's 0600


def test_same_seed_same_config_gives_identical_history_bit_for_bit(tmp_path):
    histories = []
    for name in ("a", "b"):
        code, _, err = invoke(["run", *TINY, "--seed", "7", "--out", str(tmp_path / name)])
        assert code == 0, err
        histories.append(pd.read_csv(tmp_path / name / "history.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(histories[0], histories[1], check_exact=True)
    a = load_file(str(tmp_path / "a" / "best" / "soft_prompt.safetensors"))["soft_prompt"]
    b = load_file(str(tmp_path / "b" / "best" / "soft_prompt.safetensors"))["soft_prompt"]
    assert a.equal(b)


def test_a_different_seed_gives_a_different_trajectory(tmp_path):
    for seed in ("1", "2"):
        assert invoke(["run", *TINY, "--seed", seed, "--out", str(tmp_path / seed)])[0] == 0
    a, b = (pd.read_csv(tmp_path / s / "history.csv") for s in ("1", "2"))
    assert not a["mean_loss"].equals(b["mean_loss"])


@pytest.mark.parametrize("optimizer", ["cma", "random", "ng:TwoPointsDE", "ng:NGOpt"])
def test_other_optimizers_run_end_to_end(tmp_path, optimizer):
    code, _, err = invoke(["run", *TINY, "--optimizer", optimizer, "--out", str(tmp_path / "r")])
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["optimizer"] == optimizer


@pytest.mark.parametrize("args, needle", [
    (["--optimizer", "dee"], "unknown optimizer 'dee'; did you mean de"),
    (["--optimizer", "ng:NoSuchThing"], "NoSuchThing"),
    (["--instrument", "vsm99"], "unknown instrument 'vsm99'"),
    (["--model", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["--model", "/no/such/dir"], "model path /no/such/dir does not exist"),
    (["--country", "Atlantis"], "Atlantis"),
    (["--country", "Albania"], "PDI"),
    (["--popsize", "3"], "--popsize must be >= 4 (got 3)"),
    (["--generations", "0"], "--generations must be >= 1"),
    (["--tokens", "0"], "--tokens must be >= 1"),
    (["--instrument", "missing.toml"], "does not exist"),
    (["--device", "tpu"], "--device must be cpu or cuda"),
    (["--init-text", "{nation}"], "{country} as its only placeholder"),
    (["--init-text", ""], "--init-text must be non-empty"),
    (["--init", "screen", "--init-text", "hi"], "give --init-text or --init screen, not both"),
])
def test_bad_input_exits_2_with_one_line_saying_what_is_allowed(tmp_path, args, needle):
    code, stdout, stderr = invoke(["run", *TINY, *args, "--out", str(tmp_path / "r")])
    assert code == 2, (stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], stderr
    assert not (tmp_path / "r" / "summary.json").exists()


def test_unknown_option_is_a_usage_error():
    code, _, err = invoke(["run", "--no-such-flag"])
    assert code == 2 and "No such option" in err


def test_existing_run_directory_is_not_overwritten(tmp_path):
    assert invoke(["run", *TINY, "--out", str(tmp_path / "r")])[0] == 0
    code, _, err = invoke(["run", *TINY, "--out", str(tmp_path / "r")])
    assert code == 2 and "already holds a run" in err


def test_evaluate_naive_icl_and_saved_soft_prompt_as_json(tmp_path):
    assert invoke(["run", *TINY, "--out", str(tmp_path / "r")])[0] == 0
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    results = {}
    for label, extra in {"naive": ["--baseline", "naive"], "icl": ["--baseline", "icl"],
                         "soft": ["--soft-prompt", str(tmp_path / "r")]}.items():
        code, out, err = invoke(["evaluate", "--model", "tiny", "--json", *extra])
        assert code == 0, err
        results[label] = json.loads(out)
        assert set(results[label]["dimensions"]) == {"PDI", "IDV", "MAS", "UAI", "LTO", "IVR"}
    assert results["naive"]["loss"] == pytest.approx(summary["naive_loss"], abs=1e-4)
    assert results["soft"]["loss"] == pytest.approx(summary["loss"], abs=1e-4)
    assert results["icl"]["loss"] != results["naive"]["loss"]
    # each result restates how it was scored: the constants, the run's settings, the ICL text, the software
    assert results["icl"]["system_prompt"] == summary["icl_system_prompt"] and results["naive"]["system_prompt"] is None
    assert results["soft"]["constants"] == {d: 50.0 for d in results["soft"]["dimensions"]}
    assert results["soft"]["scoring"]["position"] == json.loads((tmp_path / "r" / "config.json").read_text())["config"]["position"]
    assert results["naive"]["versions"]["torch"] == torch.__version__


def test_list_and_plugins_show_what_is_registered_and_by_whom():
    code, out, _ = invoke(["list", "optimizers"])
    assert code == 0
    for name in ("de", "cma", "random", "ng:*"):
        assert any(line.split()[0] == name and "promptopt.plugins.optimizers" in line for line in out.splitlines())
    code, out, _ = invoke(["list", "targets"])
    assert code == 0 and "United States" in out and "Saudi Arabia" in out
    code, out, _ = invoke(["plugins", "--json"])
    data = json.loads(out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["promptopt.plugins.models"]["registered"]["models"] == ["smollm2", "tiny", "llama3-8b-random"]
    assert "promptopt_register_models" in by_name["promptopt.plugins.models"]["hooks"]


def test_a_run_whose_optimizer_cannot_save_state_runs_but_refuses_to_resume(tmp_path):
    assert invoke(["run", *TINY, "--optimizer", "ng:NGOpt", "--out", str(tmp_path / "r")])[0] == 0
    code, _, err = invoke(["run", "--resume", str(tmp_path / "r"), "--generations", "4", "--quiet"])
    assert code == 2 and "cannot be resumed" in err


def test_init_screen_starts_at_the_punctuation_token_with_the_lowest_fitness(tmp_path):
    from promptopt.config import build_config
    from promptopt.host import PluginHost
    from promptopt.session import build_objective
    from promptopt.softprompt import punctuation_ids

    out = tmp_path / "r"
    code, _, stderr = invoke(["run", *TINY, "--generations", "1", "--tokens", "2", "--init", "screen",
                              "--out", str(out)])
    assert code == 0, stderr
    chosen = json.loads((out / "config.json").read_text())["search_space"]["init_tokens"]
    # by hand: every punctuation token, repeated K = 2 times, scored by the run's own objective
    host = PluginHost(load_entrypoints=False)
    config = build_config(None, model="tiny", tokens=2)
    backend = host.create_model("tiny")
    objective = build_objective(host, config, backend)[3]
    ids = punctuation_ids(backend.tokenizer)
    soft = backend.embedding_matrix[torch.tensor(ids)][:, None, :].repeat(1, 2, 1)
    fitness = objective(soft).fitness
    assert chosen == [ids[int(fitness.argmin())]] * 2
    assert float(fitness[ids.index(chosen[0])]) == float(fitness.min())


def test_init_text_starts_the_soft_prompt_at_the_targets_name(tmp_path):
    from promptopt.models import build_tiny

    out = tmp_path / "r"
    code, _, stderr = invoke(["run", *TINY, "--generations", "1", "--country", "CN", "--tokens", "3",
                              "--init-text", "{country}!", "--out", str(out)])
    assert code == 0, stderr
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["init_text"] == "{country}!"
    # the tiny model's tokenizer is per character: "China!" starts with "Chi"
    assert config["search_space"]["init_tokens"] == build_tiny().encode("China!")[:3]


def test_evaluate_alternate_wording_scores_the_held_out_paraphrase(tmp_path):
    from promptopt.objectives import WORDINGS

    assert invoke(["run", *TINY, "--out", str(tmp_path / "r")])[0] == 0
    by_wording = {}
    for wording in WORDINGS:
        code, out, err = invoke(["evaluate", "--model", "tiny", "--json", "--wording", wording,
                                 "--soft-prompt", str(tmp_path / "r")])
        assert code == 0, err
        by_wording[wording] = json.loads(out)
        assert by_wording[wording]["wording"] == wording
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert by_wording["main"]["loss"] == pytest.approx(summary["loss"], abs=1e-4)
    assert by_wording["alternate"]["loss"] != pytest.approx(by_wording["main"]["loss"], abs=1e-4)
    code, out, _ = invoke(["evaluate", "--model", "tiny", "--wording", "alternate", "--baseline", "naive"])
    assert code == 0 and "(alternate wording)" in out and "option mass" in out
    code, _, err = invoke(["evaluate", "--model", "tiny", "--wording", "paraphrase"])
    assert code == 2 and "alternate" in err


@pytest.mark.parametrize("where", ["run", "moved"])
def test_evaluate_scores_a_saved_prompt_as_its_run_was_unless_a_flag_overrides(tmp_path, where):
    """In its run directory the run's config.json says how; copied out of it, best/metadata.json does."""
    import shutil

    run_dir = tmp_path / "r"
    assert invoke(["run", *TINY, "--country", "CN", "--counterbalance", "--position", "answer",
                   "--out", str(run_dir)])[0] == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    prompt = run_dir if where == "run" else shutil.copytree(run_dir / "best", tmp_path / "shared" / "best")
    code, out, err = invoke(["evaluate", "--json", "--soft-prompt", str(prompt)])   # no --model, no --country
    assert code == 0, err
    result = json.loads(out)
    assert result["target"]["code"] == "CN" and result["model"] == "tiny"
    settings = run_dir / "config.json" if where == "run" else prompt / "metadata.json"
    assert result["settings_from"] == str(settings)
    assert result["loss"] == pytest.approx(summary["loss"], abs=1e-4)        # counterbalanced, at the answer cue
    code, out, _ = invoke(["evaluate", "--json", "--soft-prompt", str(prompt), "--country", "US"])
    assert code == 0 and json.loads(out)["target"]["code"] == "US"
    code, out, _ = invoke(["evaluate", "--json", "--soft-prompt", str(prompt), "--no-counterbalance"])
    assert code == 0 and json.loads(out)["loss"] != pytest.approx(summary["loss"], abs=1e-4)
    if where == "moved":   # metadata written before its scoring table existed: model, target, position
        meta = json.loads((prompt / "metadata.json").read_text())
        del meta["scoring"]
        (prompt / "metadata.json").write_text(json.dumps(meta))
        code, out, err = invoke(["evaluate", "--json", "--soft-prompt", str(prompt)])
        assert code == 0 and (json.loads(out)["target"]["code"], json.loads(out)["model"]) == ("CN", "tiny"), err


def test_evaluate_takes_no_search_flag(tmp_path):
    for flag, value in [("--optimizer", "nope"), ("--popsize", "2"), ("--tokens", "3"), ("--min-mass", "0.5")]:
        code, _, err = invoke(["evaluate", "--model", "tiny", flag, value])
        assert code == 2 and f"No such option '{flag}'" in err, (flag, err)


def test_a_relative_instrument_path_is_stored_absolute_so_resume_works_from_anywhere(tmp_path, monkeypatch):
    from importlib.resources import files

    (tmp_path / "survey.toml").write_text((files("promptopt.objectives") / "data" / "vsm13.toml").read_text())
    monkeypatch.chdir(tmp_path)
    assert invoke(["run", *TINY, "--generations", "1", "--instrument", "survey.toml", "--out", "r"])[0] == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["config"]
    assert saved["instrument"] == str(tmp_path / "survey.toml") and saved["model"] == "tiny"
    monkeypatch.chdir(tmp_path / "r")
    code, _, err = invoke(["run", "--resume", ".", "--generations", "2", "--quiet"])
    assert code == 0, err


def test_json_output_writes_null_for_a_non_finite_number(tmp_path):
    from promptopt.rundir import json_text

    text = json_text({"loss": float("inf"), "dims": [float("nan"), 1.5], "nested": {"x": float("-inf")}})
    assert json.loads(text) == {"loss": None, "dims": [None, 1.5], "nested": {"x": None}}
    assert "Infinity" not in text and "NaN" not in text
    config = tmp_path / "huge.toml"
    config.write_text('model = "tiny"\n[constants]\nPDI = 1e308\nIDV = 1e308\n')
    code, out, err = invoke(["evaluate", "--config", str(config), "--json"])
    assert code == 0, err
    assert "Infinity" not in out and json.loads(out)["loss"] is None


def test_a_run_says_on_stderr_what_it_does_before_its_progress_bar_and_quiet_silences_it(tmp_path):
    code, out, err = invoke(["run", "--model", "tiny", "--popsize", "4", "--generations", "1", "--out", str(tmp_path / "a")])
    assert code == 0, err
    assert "loading model tiny, caching the survey's prompts ..." in err
    assert "scoring the bare model and the ICL persona prompt ..." in err and "evaluations" in err
    assert "loading model" not in out
    code, out, err = invoke(["run", "--model", "tiny", "--popsize", "4", "--generations", "1", "--quiet",
                             "--out", str(tmp_path / "b")])
    assert code == 0 and err == "", err
