"""Shared fixtures: the tiny model is built once per session; runs go to tmp dirs."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

# The tiny test model's matrices are far too small to gain from threads, and on a busy
# 2-core machine OpenMP threads spin against each other (seen: 11 s vs 1 s for one run).
# Subprocesses inherit the variable; the real-model tests raise the count again.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

import promptopt  # noqa: E402

torch.set_num_threads(1)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module; the scripts import each other by bare name, as when run from there."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def tiny_backend():
    from promptopt.models import build_tiny

    return build_tiny()


@pytest.fixture
def cli_runner():
    return CliRunner()


def invoke(args: list[str]):
    """Run `promptopt ARGS` in-process through main(), returning (exit code, stdout, stderr)."""
    import io
    import contextlib

    from promptopt import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(args)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def finished_tiny_run(out: Path, popsize: int = 4, generations: int = 2) -> Path:
    """A finished run of the tiny model in ``out``, for tests that read or damage its artifacts."""
    code, _, err = invoke(["run", "--model", "tiny", "--quiet", "--popsize", str(popsize),
                           "--generations", str(generations), "--out", str(out)])
    assert code == 0, err
    return out


class Crash(BaseException):
    """Like KeyboardInterrupt: not an Exception, so hook isolation does not swallow it."""


class CrashAt:
    """A plugin that raises after generation N's checkpoint, like a crash between generations."""

    def __init__(self, generation):
        self.generation = generation

    @promptopt.hookimpl
    def promptopt_generation_end(self, state, record):
        if record["generation"] == self.generation:
            raise Crash()
