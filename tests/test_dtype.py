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


@pytest.mark.parametrize("seconds, expected", [({torch.float32: 1.0, torch.float16: 10.0}, 10.0),
                                               ({torch.float32: 1.0, torch.bfloat16: 0.5}, None),
                                               ({torch.float32: 1.0, torch.float16: 3.9}, None)])
def test_a_cpu_dtype_is_slow_only_from_the_ratio_on_and_float32_never(monkeypatch, seconds, expected):
    from promptopt.models import backend

    monkeypatch.setattr(backend, "matmul_seconds", lambda dtype: seconds[dtype])
    backend.slow_cpu_dtype.cache_clear()
    try:
        dtype = next(d for d in seconds if d != torch.float32)
        assert backend.slow_cpu_dtype(dtype) == expected
        assert backend.slow_cpu_dtype(torch.float32) is None
    finally:
        backend.slow_cpu_dtype.cache_clear()


@pytest.mark.parametrize("ratio", [12.0, None])
def test_a_model_loaded_in_a_slow_cpu_dtype_says_so_in_one_warning_line(monkeypatch, capsys, ratio):
    from promptopt.models import backend

    monkeypatch.setattr(backend, "slow_cpu_dtype", lambda dtype: ratio)
    build_tiny(dtype="float16")
    err = capsys.readouterr().err.strip().splitlines()
    if ratio is None:
        assert err == []
    else:
        assert err == ["warning: float16 is slower than float32 on this CPU (a matrix product 12x); "
                       "give --dtype float32 (the CPU default) unless you need float16"]


def test_the_matmul_probe_times_a_real_product_in_each_dtype():
    from promptopt.models.backend import matmul_seconds

    assert all(0 < matmul_seconds(d, size=64, repeats=2) < 5 for d in (torch.float32, torch.bfloat16, torch.float16))
