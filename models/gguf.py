"""GGUF files as models: dequantised once by transformers, then cached as safetensors.

transformers can read a GGUF file directly but dequantises it on every load (20 s for the 135M
embedded model, minutes for larger ones); the cache makes later loads take seconds. Any
architecture transformers reads from GGUF works (Llama, Qwen2, Gemma 2/3, Phi-3, ...).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_model

from .backend import ModelError

# Dequantised weights are stored in fp32 below this size (the dtype the embedded model is measured
# in) and in bf16 from it on, so an 8B model's cache is 16 GB, not 32.
FP32_CACHE_MAX_PARAMETERS = 1_000_000_000
_FINGERPRINT_BYTES = 4 << 20


def cache_root() -> Path:
    """Where converted models live: $PROMPTOPT_CACHE, else $XDG_CACHE_HOME/promptopt, else ~/.cache/promptopt."""
    root = os.environ.get("PROMPTOPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "promptopt")
    return Path(root)


def fingerprint(gguf: Path) -> str:
    """A short content key: the file's size and its first and last 4 MiB (the header, which names
    every tensor and its quantisation, and the end of the data), so renaming or moving a file
    keeps its cache and replacing it does not, without reading gigabytes on every load."""
    digest = hashlib.sha256()
    size = gguf.stat().st_size
    digest.update(str(size).encode())
    with gguf.open("rb") as f:
        digest.update(f.read(_FINGERPRINT_BYTES))
        f.seek(max(0, size - _FINGERPRINT_BYTES))
        digest.update(f.read(_FINGERPRINT_BYTES))
    return digest.hexdigest()[:16]


def convert(gguf: Path, dest: Path) -> None:
    """Dequantise once and save model + tokenizer as safetensors; the rename makes it atomic."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if model.num_parameters() >= FP32_CACHE_MAX_PARAMETERS:
        model = model.to(torch.bfloat16)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(dest), dir=dest.parent))
    try:
        # save_pretrained refuses GGUF-loaded models; the weights are plain tensors after dequantising
        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf}\n")
        tmp.chmod(0o755)  # mkdtemp and safetensors make them private; the cache is an ordinary folder
        (tmp / "model.safetensors").chmod(0o644)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _temp_prefix(dest: Path) -> str:
    return f".convert-{dest.name}-"


def intact(dest: Path) -> bool:
    """Whether a converted folder is whole: config, tokenizer and a safetensors file whose header
    covers the file (safetensors checks the length; a cut-off copy fails here, not mid-load)."""
    if not all((dest / name).is_file() for name in ("config.json", "tokenizer_config.json", "model.safetensors")):
        return False
    try:
        with safe_open(str(dest / "model.safetensors"), "pt") as weights:
            weights.keys()
    except (SafetensorError, OSError):
        return False
    return True


@contextlib.contextmanager
def _converting(dest: Path):
    """Hold ``dest``'s conversion lock: one process converts, the others wait and find it done."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_readable(gguf: Path) -> None:
    """Parse the GGUF header and tensor table (memory-mapped, no data read; ~5 s for the embedded
    model's vocabulary), so a conversion that failed on a truncated or damaged file says so rather
    than transformers' own reason (a cut-off file's tensors do not fit the bytes left)."""
    from gguf import GGUFReader

    try:
        GGUFReader(gguf)
    except Exception as exc:   # the reader's own ValueError/struct.error/IndexError on bad bytes
        reason = (f"{type(exc).__name__}: {exc}".splitlines() or ["?"])[0]
        raise ModelError(f"GGUF file {gguf} cannot be read ({reason}): it is truncated, damaged or not a GGUF "
                         "file; download or copy it again") from None


def converted(gguf: Path, dest: Path | None = None) -> Path:
    """The safetensors + tokenizer folder of a GGUF file, converting it on first use (by default
    under ``cache_root()/gguf/<name>-<fingerprint>``); a damaged cache is converted again."""
    gguf = Path(gguf).expanduser().resolve()
    if not gguf.is_file():
        raise FileNotFoundError(f"GGUF file {gguf} does not exist")
    if dest is None:
        dest = cache_root() / "gguf" / f"{gguf.stem}-{fingerprint(gguf)}"
    if intact(dest):
        return dest
    with _converting(dest):
        if intact(dest):   # another process converted it while this one waited
            return dest
        for stale in dest.parent.glob(_temp_prefix(dest) + "*"):   # a conversion killed midway
            shutil.rmtree(stale, ignore_errors=True)
        if dest.exists():
            print(f"warning: the converted cache {dest} is incomplete or damaged; converting {gguf.name} again",
                  file=sys.stderr)
            shutil.rmtree(dest)
        # in a child process, so the dequantising peak (~2.2 GB RSS for 135M parameters) is not kept
        # by this one; a plain interpreter, not multiprocessing's spawn, which re-imports the caller's
        # script and so fails in any script that has no `if __name__ == "__main__"` guard. Its stderr
        # (the progress bar) is the user's; its stdout's last line says why it failed, if it does.
        code = (f"import sys\nfrom pathlib import Path\nfrom {__name__} import convert\n"
                "try:\n    convert(Path(sys.argv[1]), Path(sys.argv[2]))\n"
                "except Exception as exc:\n"
                "    print((f'{type(exc).__name__}: {exc}'.splitlines() or ['?'])[0])\n    sys.exit(1)\n")
        child = subprocess.run([sys.executable, "-c", code, str(gguf), str(dest)], stdout=subprocess.PIPE, text=True)
        if child.returncode != 0:
            lines = child.stdout.strip().splitlines()
            reason = lines[-1] if lines else f"exit code {child.returncode}"
            check_readable(gguf)   # a damaged file is named as such; a readable one transformers cannot convert:
            raise ModelError(f"cannot convert {gguf} with transformers: {reason}")
    return dest
