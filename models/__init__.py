"""Model backends: frozen causal LMs behind one small interface (CausalLMBackend)."""

from .backend import (BF16_MIN_PARAMETERS, CausalLMBackend, ModelError, load_pretrained, locate, parameter_count,
                      resolve_dtype)
from .random_llama import LLAMA3_8B, build_random_llama
from .smollm2 import load_smollm2
from .tiny import build_tiny

__all__ = ["BF16_MIN_PARAMETERS", "CausalLMBackend", "LLAMA3_8B", "ModelError", "build_random_llama", "build_tiny",
           "load_pretrained", "load_smollm2", "locate", "parameter_count", "resolve_dtype"]
