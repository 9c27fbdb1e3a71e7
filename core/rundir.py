"""Run-directory files, each written atomically (temp file + rename): a crash leaves old or new, never half.

The readers turn a damaged file into one CheckpointError line that names it (exit 2, no traceback).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, RunInUseError, one_line

# what a run finished writes, summary.json first (the others follow it); a finished run resumed to go
# further moves them to finished-at-N/, and `runs` names those a finished run lacks
FINISH_OUTPUTS = ("summary.json", "best", "history.parquet", "report.png", "report.md")
RESULT_FILES = (*FINISH_OUTPUTS, "scores.csv")   # with what `promptopt export` adds: set aside together


def atomic_write(path: Path, write: Callable[[str], None], before_rename: Callable[[], None] | None = None) -> None:
    """Call write(tmp_path) for a temp file beside path, then rename it over path; ``before_rename``
    runs in between (e.g. to move the old file aside only once the new one is complete)."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", dir=path.parent)
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results should be as readable as any file
        if before_rename is not None:
            before_rename()
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and isinstance(exc.filename, str) and Path(exc.filename).name.startswith(f".{path.name}."):
            exc.filename = str(path)  # the user knows the file, not its temp name (mkstemp's or ours)
        raise


# the temp file atomic_write makes beside NAME: ".NAME.PID." and mkstemp's 8 random characters
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}")


def remove_stale_temps(run_dir: Path, pid: int | None = None) -> list[Path]:
    """Temp files a killed process left in run_dir and run_dir/best (kill -9 runs no cleanup), or only
    those of process ``pid`` (a stop can leave one untracked); called with the lock held."""
    mine = re.compile(rf"\..+\.{pid}\.[a-z0-9_]{{8}}") if pid is not None else _TEMP
    stale = [p for d in (run_dir, run_dir / "best") if d.is_dir() for p in d.iterdir()
             if mine.fullmatch(p.name) and p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


LOCK = ".lock"


@contextlib.contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold run_dir's lock while a run writes into it, so a second `run --resume` of the same directory
    (or a study started twice) fails in one line instead of interleaving two runs' checkpoints. The
    kernel drops the lock when the process ends however it ends; the empty file stays."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before
        yield
        return
    with open(run_dir / LOCK, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunInUseError(f"{run_dir} is in use by another promptopt process (pid {holder}); wait for it to "
                                "finish, or stop it and continue with `promptopt run --resume`") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        remove_stale_temps(run_dir)
        try:
            yield
        finally:  # a stop signal can land where atomic_write has made its temp file but not yet named it
            remove_stale_temps(run_dir, os.getpid())   # (inside mkstemp); `report` or `export` may be writing theirs
            f.truncate(0)


def is_locked(run_dir: Path) -> bool:
    """Whether a process holds run_dir's lock now; only reads (a shared lock tried and let go)."""
    try:
        import fcntl

        with open(run_dir / LOCK) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
    except (ImportError, OSError):  # not POSIX, or no .lock (a run written before locks): not running
        pass
    return False


def write_json(path: Path, data: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
    atomic_write(path, write)


def json_text(data: Any) -> str:
    """`--json` output that any JSON parser reads: a non-finite number (a loss that diverged, a
    constant that overflowed) is null, not the Infinity or NaN that Python's json writes."""
    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: finite(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [finite(v) for v in value]
        return value

    return json.dumps(finite(data), indent=2, allow_nan=False, default=str)


def write_history(path: Path, rows: list[dict]) -> None:
    atomic_write(path, lambda tmp: pd.DataFrame(rows).to_csv(tmp, index=False))


def write_soft_prompt(directory: Path, embeddings: torch.Tensor, metadata: dict[str, Any]) -> None:
    """best/soft_prompt.safetensors ([K, H] float32) and best/metadata.json."""
    tensors = {"soft_prompt": embeddings.detach().float().cpu().contiguous()}
    meta = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in metadata.items()}
    atomic_write(directory / "soft_prompt.safetensors", lambda tmp: save_file(tensors, tmp, metadata=meta))
    write_json(directory / "metadata.json", metadata)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in path; a file that is unreadable, not JSON or not an object is a one-line error."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({one_line(exc)}); expected the JSON object "
                              "promptopt writes there (restore it or re-run)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object; expected the JSON object "
                              "promptopt writes there (restore it or re-run)")
    return data


def read_history(path: Path, columns: tuple[str, ...] = ("generation", "best_loss", "mean_loss")) -> pd.DataFrame:
    """history.csv as a DataFrame; an empty, corrupt or foreign CSV is one line, before anything is written."""
    right = "expected the history.csv promptopt run writes (a header, then one row per generation)"
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise CheckpointError(f"{path} is empty; {right}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise CheckpointError(f"{path} is not a readable CSV ({one_line(exc)}); {right}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CheckpointError(f"{path} has no {', '.join(missing)} column(s); {right}")
    wrong = [c for c in columns if len(frame) and not pd.api.types.is_numeric_dtype(frame[c])]
    if wrong:
        raise CheckpointError(f"{path} has non-numeric values in {', '.join(wrong)}; {right}")
    gaps = frame.isna().any(axis=1)
    if gaps.any():   # every value of a row is written at once: a gap is a cut-off or edited file
        row = int(gaps.to_numpy().nonzero()[0][0])
        missing = ", ".join(str(c) for c in frame.columns[frame.iloc[row].isna().to_numpy()])
        raise CheckpointError(f"{path} row {row + 1} has no value for {missing}: the file is cut off or "
                              f"edited; {right}")
    return frame


def read_soft_prompt(path: Path) -> torch.Tensor:
    """best/soft_prompt.safetensors as written above: a finite floating [K, H] tensor with K, H >= 1.

    Anything else (a batch [P, K, H], a flat vector, 0 tokens, ints, NaN) would be scored or exported
    as if it were a prompt, or fail deep inside the evaluator, so it is refused here in one line.
    """
    right = "expected a finite float tensor 'soft_prompt' of shape [K, H] (K >= 1 tokens x the model's hidden size)"
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - any corruption is the same user-facing problem
        raise CheckpointError(f"{path} is not a readable soft prompt ({one_line(exc)}); {right}") from None
    if "soft_prompt" not in tensors:
        held = ", ".join(map(repr, tensors)) or "none"
        raise CheckpointError(f"{path} has no tensor 'soft_prompt' (it holds {held}); {right}")
    soft = tensors["soft_prompt"]
    if not soft.is_floating_point():
        raise CheckpointError(f"{path} holds a tensor of dtype {str(soft.dtype).removeprefix('torch.')}; {right}")
    if soft.dim() == 2 and soft.shape[0] == 0:
        raise CheckpointError(f"{path} holds a soft prompt of 0 tokens (shape {list(soft.shape)}); {right}")
    if soft.dim() != 2 or 0 in soft.shape:
        raise CheckpointError(f"{path} holds a soft prompt of shape {list(soft.shape)}; {right}")
    bad = int((~torch.isfinite(soft)).sum())
    if bad:
        raise CheckpointError(f"{path} holds {bad} non-finite value(s) (NaN or inf); {right}")
    return soft
