"""Llama-3-8B's architecture with random weights: true-to-size timings without the weights.

The weights cannot be downloaded here, and timing, memory and FLOPs depend only on the shapes:
Llama-3-8B-Instruct's config (hidden 4096, 32 layers, 32 query / 8 key-value heads, MLP 14336,
vocabulary 128256) is built with random weights straight on the device, behind the embedded
SmolLM2 tokenizer (ChatML template; all its ids fit the 128k vocabulary). Scores from this
model mean nothing; its speed is the real model's. Used by ``benchmarks/evaluator.py --model
llama3-8b-random`` on a GPU: 16 GB of bf16 weights, far too slow to initialise on a small CPU.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from .backend import CausalLMBackend, parameter_count, resolve_dtype
from .smollm2 import tokenizer_dir

# meta-llama/Meta-Llama-3-8B-Instruct config.json (the fields that set shapes and numerics)
LLAMA3_8B: dict[str, Any] = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192, "rope_theta": 500000.0,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "hidden_act": "silu",
}


def build_random_llama(device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None, seed: int = 0,
                       **overrides: Any) -> CausalLMBackend:
    """Llama-3-8B's config (``overrides`` change fields, e.g. a 2-layer copy for tests), random weights."""
    device = torch.device(device)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir())
    config = LlamaConfig(**{**LLAMA3_8B, **overrides})
    if config.vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size {config.vocab_size} is smaller than the tokenizer's {len(tokenizer)} tokens")
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(seed)
        model = LlamaForCausalLM._from_config(config, dtype=resolve_dtype(dtype, device, parameter_count(config)),
                                              attn_implementation="sdpa")
    shape = ", ".join(f"{k} {config.to_dict()[k]}" for k in ("hidden_size", "num_hidden_layers", "vocab_size"))
    return CausalLMBackend(name="llama3-8b-random", model=model, tokenizer=tokenizer,
                           source=f"random-weight Llama-3-8B architecture ({shape}), seed {seed}",
                           info={"weights": "random (timings only)", "tokenizer": "SmolLM2-135M-Instruct"})
