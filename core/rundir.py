"""Run-directory files, each written atomically (temp file + rename): a crash leaves old or new, never half."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from safetensors.torch import save_file


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) for a temp file beside path, then rename it over path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be as readable as any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
    atomic_write(path, write)


def write_history(path: Path, rows: list[dict]) -> None:
    atomic_write(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))


def write_soft_prompt(directory: Path, embeddings: torch.Tensor, metadata: dict[str, Any]) -> None:
    """best/soft_prompt.safetensors ([K, H] float32) and best/metadata.json."""
    tensors = {"soft_prompt": embeddings.detach().float().cpu().contiguous()}
    meta = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()}
    atomic_write(directory / "soft_prompt.safetensors", lambda tmp: save_file(tensors, tmp, metadata=meta))
    write_json(directory / "metadata.json", metadata)
