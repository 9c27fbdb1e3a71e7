"""A frozen causal language model with the few operations the soft-prompt evaluator needs."""

from __future__ import annotations

import functools
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


class ModelError(ValueError):
    """A model that cannot be loaded or cannot answer the survey (a missing path, a model not in the
    Hugging Face cache, damaged weights, no chat template, answer labels that are not one distinct
    token each): bad input, said in one line."""


# On CUDA, "auto" picks bf16 only for models this large or larger (or of unknown size). Below it a
# model is launch-bound, so fp32 costs little (a study cell on an H200: 9.0 s vs 5.7 s in bf16), and
# bf16 rounding cost DE 8 points of loss reduction on the 135M embedded model (docs/TUNING.md).
BF16_MIN_PARAMETERS = 1_000_000_000


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device, parameters: int | None = None) -> torch.dtype:
    """The dtype asked for; "auto"/None: fp32 on CPU (bf16 matmuls are slower there), on CUDA bf16
    for models of ``BF16_MIN_PARAMETERS`` or more (or of unknown size) and fp32 below that."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if torch.device(device).type != "cuda" or (parameters is not None and parameters < BF16_MIN_PARAMETERS):
            return torch.float32
        return torch.bfloat16
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(DTYPES)}") from None


# A CPU dtype this many times slower than float32 at a matrix product gets a warning at load: torch's
# float16 has no fast CPU kernels on most x86 CPUs (3 vs 196 GFLOP/s on this project's 2-core EPYC,
# `python benchmarks/matmul.py --dtypes float32 float16`; a run's loop 3.1x slower, docs/BENCHMARKS.md).
SLOW_DTYPE_RATIO = 4.0


def matmul_seconds(dtype: torch.dtype, size: int = 256, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of a size^3 matrix product in ``dtype`` on the CPU, after a warm-up."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return min(times)


@functools.lru_cache(maxsize=None)
def slow_cpu_dtype(dtype: torch.dtype) -> float | None:
    """How many times slower than float32 a matrix product in ``dtype`` runs on this CPU, where that
    is ``SLOW_DTYPE_RATIO`` or more (measured once per process, in ~0.1 s); else None."""
    if dtype == torch.float32:
        return None
    ratio = matmul_seconds(dtype) / max(matmul_seconds(torch.float32), 1e-9)
    return ratio if ratio >= SLOW_DTYPE_RATIO else None


def parameter_count(config) -> int:
    """Parameters of the causal LM a config describes, counted on the meta device (no weights made)."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config).num_parameters()


@dataclass
class CausalLMBackend:
    """A frozen Hugging Face causal LM and its tokenizer; nothing here ever changes the weights."""

    name: str
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model.eval()
        self.model.requires_grad_(False)
        if self.device.type == "cpu" and (ratio := slow_cpu_dtype(self.dtype)):
            name = str(self.dtype).removeprefix("torch.")
            print(f"warning: {name} is slower than float32 on this CPU (a matrix product {ratio:.0f}x); "
                  f"give --dtype float32 (the CPU default) unless you need {name}", file=sys.stderr, flush=True)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(f"model {self.name!r} has no chat template; use an instruction-tuned model")
        self.system_role = self._template_takes_system()
        if not self.system_role:
            self.info = {**self.info, "system_prompt": "folded into the first user turn (the chat template "
                                                       "refuses a system role)"}

    def _template_takes_system(self) -> bool:
        """Whether the chat template renders a system message; some (Gemma's) raise instead."""
        try:
            self.tokenizer.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
                                               tokenize=False, add_generation_prompt=True)
        except Exception:   # jinja2's TemplateError from the template's raise_exception, or its own
            return False
        return True

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @property
    def embedding_matrix(self) -> torch.Tensor:
        """The input embedding table [V, H], for initialising soft prompts and deriving bounds."""
        return self.model.get_input_embeddings().weight

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.get_input_embeddings()(ids.to(self.device))

    def render_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat template's text; a system message the template refuses is put before the first
        user message instead, as such models' own documentation asks."""
        if not self.system_role and messages and messages[0]["role"] == "system":
            system, rest = messages[0]["content"], list(messages[1:])
            first = next((i for i, m in enumerate(rest) if m["role"] == "user"), None)
            if first is None:
                raise ModelError(f"model {self.name!r}'s chat template refuses a system message and there is "
                                 "no user message to put it in")
            rest[first] = {**rest[first], "content": f"{system}\n\n{rest[first]['content']}"}
            messages = rest
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        """Token ids of text as written (special-token strings from the chat template included)."""
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def single_token_id(self, text: str) -> int:
        ids = self.encode(text)
        if len(ids) != 1:
            raise ModelError(f"answer option {text!r} is {len(ids)} tokens for model {self.name!r}; "
                             "the evaluator needs each option label to be one token")
        unknown = self.tokenizer.unk_token_id
        if unknown is not None and ids[0] == unknown and text != self.tokenizer.unk_token:
            raise ModelError(f"answer option {text!r} is the unknown token for model {self.name!r}: its "
                             "vocabulary lacks the label; use a model whose tokenizer has the digits")
        return ids[0]

    def describe(self) -> dict:
        cfg = self.model.config
        return {"name": self.name, "source": self.source, "architecture": type(self.model).__name__,
                "hidden_size": self.hidden_size, "layers": getattr(cfg, "num_hidden_layers", None),
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device), **self.info}


def locate(name_or_path: str) -> Path:
    """The local folder or .gguf file a model name means, without loading it: a path as given, or
    the snapshot of a model id in the Hugging Face cache. Never downloads, so the one-line error
    says what to do instead."""
    local = Path(name_or_path).expanduser()
    if local.exists():
        if local.is_file() and local.suffix.lower() != ".gguf":
            raise ModelError(f"model {name_or_path} is a file but not a .gguf; give a .gguf file or a "
                             "model directory saved by save_pretrained")
        if local.is_dir() and not (local / "config.json").is_file():
            raise ModelError(f"model directory {name_or_path} holds no config.json; give a directory saved by "
                             "save_pretrained (config.json, weights and tokenizer files) or a .gguf file")
        return local
    if local.is_absolute() or name_or_path.startswith((".", "~")) or local.suffix.lower() == ".gguf" \
            or name_or_path.count("/") > 1:
        raise ModelError(f"model path {name_or_path} does not exist; give an existing model directory or .gguf file")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name_or_path, local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError):
        raise ModelError(f"model {name_or_path!r} is not a local path and not in the Hugging Face cache, and "
                         "promptopt never downloads: fetch it first (`hf download "
                         f"{name_or_path}`), or give a saved model's directory or a .gguf file") from None


def load_pretrained(name_or_path: str, device: str | torch.device = "cpu",
                    dtype: str | torch.dtype | None = None, **kwargs) -> CausalLMBackend:
    """Load a local directory, a local GGUF file (dequantised once, then cached: `gguf.converted`)
    or a model id already in the Hugging Face cache (never downloads)."""
    device = torch.device(device)
    local, info = locate(name_or_path), {}
    if local.suffix.lower() == ".gguf":
        from .gguf import converted

        info = {"gguf": str(local.resolve()), "safetensors_cache": str(converted(local))}
        local = Path(info["safetensors_cache"])
    hf_logging.disable_progress_bar()   # a per-tensor bar is noise, and it splits an error's one line
    try:
        tokenizer = AutoTokenizer.from_pretrained(local, local_files_only=True, **kwargs)
        config = AutoConfig.from_pretrained(local, local_files_only=True, **kwargs)
        torch_dtype = resolve_dtype(dtype, device, parameter_count(config))
        model = AutoModelForCausalLM.from_pretrained(
            local, local_files_only=True, dtype=torch_dtype, attn_implementation="sdpa",
            adapter_kwargs={"local_files_only": True}, **kwargs)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"model {name_or_path!r} ({local}) does not load with transformers: {reason}; it needs "
                         "config.json, the weights and the tokenizer files, as save_pretrained writes them "
                         "(a damaged or partly copied file: copy it again)") from None
    return CausalLMBackend(name=name_or_path, model=model.to(device), tokenizer=tokenizer,
                           source=info.get("gguf", str(local)), info=info)
