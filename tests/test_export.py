"""`promptopt.export`: history.parquet, best/item_answers.csv, and the PEFT prompt-tuning round trip."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from promptopt.rundir import write_history, write_soft_prompt

K, H = 4, 32  # the tiny model's hidden size


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as `promptopt run` writes it (history.csv + best/), without spending a run on it."""
    rows = [{"generation": g, "evaluations": 6 * g, "best_loss": 30.0 / g + 0.123456789, "mean_loss": 31.5 / g,
             "seconds": 0.25, "PDI": 40.1 + g, "IDV": -3.0, "MAS": 1e-7 * g, "UAI": 55.5, "LTO": 12.0, "IVR": 99.9}
            for g in range(1, 6)]
    write_history(tmp_path / "history.csv", rows)
    soft = torch.randn(K, H, generator=torch.Generator().manual_seed(3))
    write_soft_prompt(tmp_path / "best", soft, {"model": "tiny", "instrument": "vsm13", "target": "US",
                                                "position": "suffix", "tokens": K, "hidden_size": H, "loss": 21.5})
    return tmp_path


def test_parquet_history_equals_the_csv(run_dir):
    from promptopt.export import export_history

    path = export_history(run_dir)
    assert path == run_dir / "history.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_csv(run_dir / "history.csv"), check_exact=True)
    assert not list(run_dir.glob(".history.parquet*")), "temp file left behind"


def test_item_answers_of_a_real_evaluation(run_dir, tiny_backend):
    from promptopt.evaluator import SoftPromptEvaluator
    from promptopt.export import write_item_answers
    from promptopt.objectives import get_instrument

    instrument = get_instrument("vsm13")
    # prefix position: all 24 items share one chat head, so building the evaluator costs one forward, not 24
    evaluator = SoftPromptEvaluator(tiny_backend, instrument.prompts(), list(instrument.n_options), position="prefix")
    soft = torch.randn(2, K, H, generator=torch.Generator().manual_seed(0))
    answers = evaluator.evaluate(soft)
    path = write_item_answers(run_dir, instrument, answers, candidate=1)
    assert path == run_dir / "best" / "item_answers.csv"
    frame = pd.read_csv(path)
    assert len(frame) == 24 == instrument.n_items
    assert list(frame.columns) == ["item", "id", "p1", "p2", "p3", "p4", "p5", "option_mass", "expected"]
    assert list(frame["item"]) == list(instrument.item_numbers)
    assert list(frame["id"]) == [it.id for it in instrument.items]
    probs = frame[["p1", "p2", "p3", "p4", "p5"]]
    assert ((probs >= 0) & (probs <= 1)).all().all()
    assert probs.sum(axis=1).tolist() == pytest.approx([1.0] * 24, abs=1e-6)
    assert frame["expected"].tolist() == pytest.approx(answers.expected[1].tolist(), abs=1e-6)
    assert frame["option_mass"].tolist() == pytest.approx(answers.mass[1].tolist(), abs=1e-6)
    expected = (probs.to_numpy() * [1, 2, 3, 4, 5]).sum(axis=1)
    assert frame["expected"].to_numpy() == pytest.approx(expected, abs=1e-5)


def test_item_answers_reject_a_mismatched_instrument(run_dir):
    from promptopt.evaluator import AnswerDistribution
    from promptopt.export import write_item_answers
    from promptopt.objectives import get_instrument

    probs = torch.full((1, 3, 5), 0.2)
    answers = AnswerDistribution(probs=probs, mass=torch.ones(1, 3), expected=torch.full((1, 3), 3.0))
    with pytest.raises(ValueError, match="24"):
        write_item_answers(run_dir, get_instrument("vsm13"), answers)


def test_peft_files_follow_peft_prompt_tuning_format(run_dir):
    from promptopt.export import export_peft, load_peft_prompt

    directory = export_peft(run_dir, "some/base-model")
    assert directory == run_dir / "best" / "peft"
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["task_type"] == "CAUSAL_LM"
    assert (config["num_virtual_tokens"], config["token_dim"], config["num_transformer_submodules"]) == (K, H, 1)
    assert config["base_model_name_or_path"] == "some/base-model" and config["prompt_tuning_init"] == "RANDOM"
    with safe_open(str(directory / "adapter_model.safetensors"), "pt") as f:
        assert list(f.keys()) == ["prompt_embeddings"]
        assert f.metadata()["format"] == "pt" and f.metadata()["promptopt_position"] == "suffix"
        tensor = f.get_tensor("prompt_embeddings")
    from safetensors.torch import load_file

    original = load_file(str(run_dir / "best" / "soft_prompt.safetensors"))["soft_prompt"]
    assert tensor.equal(original) and load_peft_prompt(directory).equal(original)
    readme = (directory / "README.md").read_text()
    assert "suffix" in readme and "interoperability" in readme
    # the default base model is the run's model, with promptopt's short names mapped to Hugging Face ids
    assert json.loads((export_peft(run_dir) / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny"


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # peft/transformers chatter
def test_peft_loads_the_export_onto_the_tiny_model(run_dir, monkeypatch):
    peft = pytest.importorskip("peft")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # save_pretrained would otherwise ask the Hub about "tiny"
    from safetensors.torch import load_file

    from promptopt.export import export_peft
    from promptopt.models import build_tiny

    directory = export_peft(run_dir, "tiny")
    original = load_file(str(run_dir / "best" / "soft_prompt.safetensors"))["soft_prompt"]

    # peft's own config class reads our adapter_config.json without complaint
    config = peft.PeftConfig.from_pretrained(str(directory))
    assert isinstance(config, peft.PromptTuningConfig) and config.num_virtual_tokens == K

    # peft's loader puts our tensor into the prompt encoder of a fresh tiny model (built in memory)
    model = peft.PeftModel.from_pretrained(build_tiny().model, str(directory))
    loaded = model.prompt_encoder["default"].embedding.weight.detach()
    assert loaded.equal(original)
    assert set(peft.get_peft_model_state_dict(model)) == {"prompt_embeddings"}
    assert peft.get_peft_model_state_dict(model)["prompt_embeddings"].equal(original)

    # and what peft itself saves from that model is byte-for-byte the same tensor under the same key
    model.save_pretrained(str(run_dir / "resaved"))
    assert load_file(str(run_dir / "resaved" / "adapter_model.safetensors"))["prompt_embeddings"].equal(original)


@pytest.mark.parametrize("base", ["", "  "])
def test_an_empty_base_model_is_refused_and_nothing_is_written(run_dir, base):
    from conftest import invoke

    code, _, err = invoke(["export", str(run_dir), "--base-model", base])
    assert code == 2 and "--base-model is empty" in err and err.count("\n") == 1, err
    assert not (run_dir / "best" / "peft").exists()


def test_scores_csv_is_tidy_and_adds_up_to_each_methods_l1(tmp_path):
    from conftest import finished_tiny_run

    from promptopt.export import SCORE_COLUMNS, export_scores

    run = finished_tiny_run(tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    frame = pd.read_csv(export_scores(run))
    assert tuple(frame.columns) == SCORE_COLUMNS
    methods = ["naive", "ICL", "aligned"] if summary["icl_dimensions"] else ["naive", "aligned"]
    assert list(frame["method"].unique()) == methods and len(frame) == 6 * len(methods)
    assert set(frame["run"]) == {"run"} and set(frame["target_code"]) == {"US"} and set(frame["constant"]) == {50.0}
    aligned = frame[frame["method"] == "aligned"].set_index("dimension")
    assert aligned["score"].to_dict() == pytest.approx(summary["dimensions"])
    # the dimension rows of a method give its L1 (summary.json rounds scores to 3 decimals)
    for method, rows in frame.groupby("method"):
        assert rows["abs_error"].mean() == pytest.approx(rows["l1"].iloc[0], abs=1e-3), method
    assert not list(run.glob(".scores.csv*")), "temp file left behind"


def test_scores_of_an_unfinished_run_is_a_clear_error(run_dir):
    from promptopt.errors import CheckpointError
    from promptopt.export import export_scores

    with pytest.raises(CheckpointError, match="has no summary.json: the run has not finished"):
        export_scores(run_dir)
    assert not (run_dir / "scores.csv").exists()
