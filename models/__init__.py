"""Model backends: frozen causal LMs behind one small interface (CausalLMBackend)."""

from .backend import CausalLMBackend, load_pretrained, resolve_dtype
from .random_llama import LLAMA3_8B, build_random_llama
from .smollm2 import load_smollm2
from .tiny import build_tiny

__all__ = ["CausalLMBackend", "LLAMA3_8B", "build_random_llama", "build_tiny", "load_pretrained", "load_smollm2",
           "resolve_dtype"]
