"""The default dtype: fp32 on CPU; on CUDA bf16 only for models of 1B parameters or more."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from promptopt.models import (BF16_MIN_PARAMETERS, LLAMA3_8B, build_tiny, load_pretrained, parameter_count,
                              resolve_dtype)

CUDA = torch.device("cuda")   # a device object needs no GPU


@pytest.mark.parametrize("parameters, expected", [(135_000_000, torch.float32), (BF16_MIN_PARAMETERS - 1, torch.float32),
                                                  (BF16_MIN_PARAMETERS, torch.bfloat16), (8_030_000_000, torch.bfloat16),
                                                  (None, torch.bfloat16)])
def test_auto_on_cuda_is_bf16_only_for_large_or_unknown_models(parameters, expected):
    assert resolve_dtype(None, CUDA, parameters) == expected
    assert resolve_dtype("auto", CUDA, parameters) == expected


def test_cpu_default_is_fp32_and_an_explicit_dtype_always_wins():
    assert resolve_dtype(None, torch.device("cpu"), 8_030_000_000) == torch.float32
    assert resolve_dtype("bf16", CUDA, 135_000_000) == torch.bfloat16
    assert resolve_dtype("float32", CUDA, None) == torch.float32
    with pytest.raises(ValueError, match="choose one of auto"):
        resolve_dtype("float99", CUDA, 1)


def test_parameter_count_comes_from_the_config_without_building_weights():
    assert 8.0e9 < parameter_count(LlamaConfig(**LLAMA3_8B)) < 8.1e9   # Llama-3-8B: 8.03 B, on the meta device
    tiny = build_tiny()
    assert parameter_count(tiny.model.config) == tiny.model.num_parameters()


def test_load_pretrained_honours_the_dtype(tmp_path):
    tiny = build_tiny()
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    assert load_pretrained(str(tmp_path)).dtype == torch.float32
    assert load_pretrained(str(tmp_path), dtype="bfloat16").dtype == torch.bfloat16
