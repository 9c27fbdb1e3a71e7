"""Bringing your own model: what loads, and a one-line error (exit 2) for each way a model cannot
answer the survey, before any search starts."""

from __future__ import annotations

import json
import os
import shutil
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

from conftest import invoke
from promptopt.config import build_config
from promptopt.evaluator import option_token_ids
from promptopt.models import CausalLMBackend, ModelError, build_tiny, load_pretrained
from promptopt.models.gguf import _converting, converted, intact
from promptopt.models.tiny import CHAT_TEMPLATE, SPECIAL

# Gemma's template: a system message is an error, not a turn
NO_SYSTEM_TEMPLATE = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
                      "{% endif %}" + CHAT_TEMPLATE)


def save_tiny(directory: Path, tokenizer=None, chat_template: str | None = None) -> Path:
    """The tiny random model saved as save_pretrained writes it, optionally with another tokenizer or template."""
    tiny = build_tiny()
    tokenizer = tokenizer or tiny.tokenizer
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tiny.model.resize_token_embeddings(len(tokenizer))
    tiny.model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def tokenizer_without_digits() -> PreTrainedTokenizerFast:
    """The tiny character tokenizer less 0-9: every digit encodes as <unk>."""
    chars = sorted(set(string.printable) - set(string.digits))
    core = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(SPECIAL + chars)}, merges=[], unk_token="<unk>"))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                  bos_token="<|im_start|>", eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL[2:]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def one_line_error(args: list[str]) -> str:
    code, _, err = invoke(args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), (code, err)
    return lines[0]


def test_a_tokenizer_without_digits_is_refused_instead_of_scoring_every_dimension_50(tmp_path):
    model = save_tiny(tmp_path / "nodigits", tokenizer_without_digits())
    line = one_line_error(["evaluate", "--model", str(model), "--country", "US"])
    assert "answer option '1' is the unknown token" in line and "digits" in line


def test_answer_labels_that_share_a_token_are_refused_for_any_backend():
    class SameToken:   # a plugin backend whose labels all map to one id
        name = "same"

        def single_token_id(self, text):
            return 7
    with pytest.raises(ModelError, match=r"answer labels 1\.\.5 are not 5 different tokens .* \[7, 7, 7, 7, 7\]"):
        option_token_ids(SameToken(), 5)


def test_a_plugin_backends_own_value_error_about_a_label_is_bad_input():
    class TwoTokens:
        name = "two"

        def single_token_id(self, text):
            raise ValueError(f"{text!r} is two tokens here")
    with pytest.raises(ModelError, match="'1' is two tokens here"):
        option_token_ids(TwoTokens(), 5)


def test_digits_of_several_tokens_exit_2_in_one_line(monkeypatch):
    original = CausalLMBackend.encode
    monkeypatch.setattr(CausalLMBackend, "encode",
                        lambda self, text: [5, 6] if text.isdigit() else original(self, text))
    line = one_line_error(["evaluate", "--model", "tiny", "--country", "US"])
    assert "answer option '1' is 2 tokens for model 'tiny'" in line


def test_a_template_that_refuses_a_system_role_gets_the_system_text_in_the_first_user_turn(tmp_path):
    backend = load_pretrained(str(save_tiny(tmp_path / "nosys", chat_template=NO_SYSTEM_TEMPLATE)))
    assert backend.system_role is False and "folded into the first user turn" in backend.info["system_prompt"]
    text = backend.render_chat([{"role": "system", "content": "Answer as a typical adult."},
                                {"role": "user", "content": "Question 1"}])
    assert "<|im_start|>user\nAnswer as a typical adult.\n\nQuestion 1<|im_end|>" in text
    assert build_tiny().system_role is True   # a template that takes a system turn keeps it


def test_a_run_with_the_icl_baseline_works_on_a_model_that_refuses_a_system_role(tmp_path):
    model = save_tiny(tmp_path / "nosys", chat_template=NO_SYSTEM_TEMPLATE)
    code, _, err = invoke(["run", "--model", str(model), "--quiet", "--popsize", "4", "--generations", "1",
                           "--out", str(tmp_path / "run")])
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["icl_loss"] is not None and summary["icl_system_prompt"]


@pytest.mark.parametrize("model, needle", [
    ("/no/such/model", "model path /no/such/model does not exist"),
    ("missing.gguf", "model path missing.gguf does not exist"),
    ("nobody-xyz/no-such-model", "'nobody-xyz/no-such-model' is not a local path and not in the Hugging Face "
                                 "cache, and promptopt never downloads: fetch it first (`hf download "
                                 "nobody-xyz/no-such-model`)"),
    ("nosuchmodel", "unknown model 'nosuchmodel'"),
])
def test_a_model_that_is_not_there_says_which_kind_of_name_it_was_read_as(model, needle):
    line = one_line_error(["evaluate", "--model", model, "--country", "US"])
    assert needle in line
    if model == "nosuchmodel":
        assert "or give a saved model's directory, a .gguf file or a model id in the Hugging Face cache" in line


def test_validate_refuses_a_model_path_that_does_not_exist_without_loading_anything(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(f'model = "{tmp_path / "gone"}"\n')
    assert f"model path {tmp_path / 'gone'} does not exist" in one_line_error(["validate", str(config)])
    config.write_text(f'model = "{save_tiny(tmp_path / "mine")}"\n')
    code, out, err = invoke(["validate", str(config)])
    assert code == 0 and ": ok (" in out, err


def test_weights_cut_off_mid_file_are_one_line_not_a_safetensors_traceback(tmp_path):
    model = save_tiny(tmp_path / "cut")
    weights = model / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 100)
    line = one_line_error(["evaluate", "--model", str(model), "--country", "US"])
    assert "does not load with transformers" in line and "copy it again" in line


def test_a_directory_without_weights_or_tokenizer_is_named_as_a_directory(tmp_path):
    model = save_tiny(tmp_path / "noweights")
    (model / "model.safetensors").unlink()
    line = one_line_error(["evaluate", "--model", str(model), "--country", "US"])
    assert f"model '{model}' ({model}) does not load with transformers" in line
    assert "neither a local directory" not in line


def test_a_dtype_alias_in_a_config_reaches_the_run_as_its_full_name(tmp_path):
    assert build_config(None, dtype="bf16").dtype == "bfloat16"
    assert build_config(None, dtype="fp32").dtype == "float32"


def _hub_cache(root: Path, repo: str, model_dir: Path) -> None:
    """``model_dir`` laid out as the Hugging Face cache holds a downloaded repo."""
    entry = root / f"models--{repo.replace('/', '--')}"
    shutil.copytree(model_dir, entry / "snapshots" / "abc123")
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("abc123")


@pytest.mark.parametrize("repo", ["someone/tinychat", "tinychat"])
def test_a_model_in_the_hugging_face_cache_loads_without_a_network_request(tmp_path, repo):
    _hub_cache(tmp_path / "hub", repo, save_tiny(tmp_path / "model"))
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "OMP_NUM_THREADS": "1"}
    env.pop("HF_HUB_OFFLINE", None)
    env.pop("TRANSFORMERS_OFFLINE", None)
    child = subprocess.run([sys.executable, "-m", "promptopt", "evaluate", "--model", repo, "--country", "US",
                            "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    assert "huggingface.co" not in child.stderr and json.loads(child.stdout)["loss"] > 0


def _fake_converted(dest: Path) -> None:
    """An intact-looking converted folder (the tiny model's files), as a finished conversion leaves it."""
    save_tiny(dest)


def test_a_damaged_converted_cache_is_not_taken_as_done(tmp_path):
    dest = tmp_path / "cache"
    _fake_converted(dest)
    assert intact(dest)
    weights = dest / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 10)
    assert not intact(dest)
    (dest / "model.safetensors").unlink()
    assert not intact(dest)


def test_a_second_process_waits_for_the_first_conversion_and_uses_it(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a gguf")   # converting it would fail: only the wait can return a folder
    dest = tmp_path / "cache" / "m"
    held = threading.Event()

    def first_converter():
        with _converting(dest):
            held.set()
            time.sleep(0.5)
            _fake_converted(dest)
    other = threading.Thread(target=first_converter)
    other.start()
    held.wait()
    assert converted(gguf, dest) == dest and intact(dest)
    other.join()


def test_a_conversion_killed_midway_leaves_no_temp_folder_after_the_next_attempt(tmp_path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not a gguf")
    dest = tmp_path / "cache" / "m"
    stale = tmp_path / "cache" / ".convert-m-abc"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"partial")
    with pytest.raises(ModelError, match="cannot be read"):
        converted(gguf, dest)
    assert not stale.exists() and not dest.exists()

