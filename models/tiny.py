"""A random-weight Llama with a real (character-level) Hugging Face tokenizer, for fast tests.

Everything is built in memory from a config: no download, no file, loads in milliseconds,
yet it runs the exact code path of a real model (chat template, KV cache, SDPA).
"""

from __future__ import annotations

import string

import torch
from tokenizers import Tokenizer, models
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from .backend import CausalLMBackend, resolve_dtype

SPECIAL = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    chars = sorted(set(string.printable) | set("éüöäçñ’‘“”–—…"))
    vocab = {tok: i for i, tok in enumerate(SPECIAL + chars)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>",
                                  bos_token="<|im_start|>", eos_token="<|im_end|>")
    tok.add_special_tokens({"additional_special_tokens": SPECIAL[2:]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(vocab_size: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=False, initializer_range=0.4)


def build_tiny(device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None,
               seed: int = 0) -> CausalLMBackend:
    device = torch.device(device)
    tokenizer = tiny_tokenizer()
    config = tiny_config(len(tokenizer))
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(device=device, dtype=resolve_dtype(dtype, device, model.num_parameters()))
    return CausalLMBackend(name="tiny", model=model, tokenizer=tokenizer,
                           source=f"random-weight Llama (hidden 32, 2 layers), seed {seed}")
