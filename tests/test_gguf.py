"""A local .gguf file as --model: converted once, cached by content, bad files refused in one line."""

from __future__ import annotations

import os
from pathlib import Path
import shutil

import pytest
import torch

from conftest import invoke
from promptopt.models.gguf import converted, fingerprint


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_fingerprint_follows_the_content_not_the_path(tmp_path):
    data = os.urandom(9 << 20)  # larger than the two 4 MiB windows it reads
    a = _write(tmp_path / "a.gguf", data)
    moved = tmp_path / "elsewhere" / "b.gguf"
    moved.parent.mkdir()
    shutil.copy(a, moved)
    assert fingerprint(a) == fingerprint(moved)
    changed_tail = _write(tmp_path / "c.gguf", data[:-1] + bytes([data[-1] ^ 1]))
    changed_head = _write(tmp_path / "d.gguf", bytes([data[0] ^ 1]) + data[1:])
    longer = _write(tmp_path / "e.gguf", data + b"\0")
    assert len({fingerprint(p) for p in (a, changed_tail, changed_head, longer)}) == 4


def test_a_missing_gguf_file_is_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        converted(tmp_path / "none.gguf")
    code, _, err = invoke(["evaluate", "--model", str(tmp_path / "none.gguf"), "--country", "US"])
    assert code == 2 and "none.gguf does not exist" in err


def test_a_file_that_is_not_gguf_is_refused_in_one_line_without_a_traceback_and_nothing_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTOPT_CACHE", str(tmp_path / "cache"))
    bad = _write(tmp_path / "bad.gguf", b"not a gguf file at all")
    code, _, err = invoke(["evaluate", "--model", str(bad), "--country", "US"])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"Error: GGUF file {bad} cannot be read (") and "not a GGUF file" in lines[0]
    cached = tmp_path / "cache" / "gguf"
    assert not cached.exists() or not any(p.name.startswith("bad") for p in cached.iterdir())


@pytest.mark.slow
def test_the_embedded_gguf_loaded_by_path_matches_the_embedded_model(tmp_path, monkeypatch):
    """The same weights either way: the generic GGUF path and the embedded loader agree to the logit."""
    from promptopt.models import load_pretrained, load_smollm2
    from promptopt.models.smollm2 import gguf_path

    embedded = load_smollm2()  # from the usual cache, before the variable moves it
    monkeypatch.setenv("PROMPTOPT_CACHE", str(tmp_path / "cache"))
    by_path = load_pretrained(str(gguf_path()))
    assert by_path.info["safetensors_cache"].startswith(str(tmp_path / "cache" / "gguf"))
    assert by_path.source == str(gguf_path()) and by_path.dtype == torch.float32
    again = load_pretrained(str(gguf_path()))  # the cache, not a second conversion
    assert again.info["safetensors_cache"] == by_path.info["safetensors_cache"]
    ids = torch.tensor([embedded.encode(embedded.render_chat([{"role": "user", "content": "Hello"}]))])
    with torch.no_grad():
        assert torch.equal(by_path.model(ids).logits, embedded.model(ids).logits)
    weights = Path(by_path.info["safetensors_cache"]) / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == 0o644   # a shared cache is readable by its other users
    # a cache cut off (a full disk, a partial copy) is converted again, not a crash mid-load
    os.truncate(weights, weights.stat().st_size // 2)
    mended = load_pretrained(str(gguf_path()))
    with torch.no_grad():
        assert torch.equal(mended.model(ids).logits, embedded.model(ids).logits)
