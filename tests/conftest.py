"""Shared fixtures: the tiny model is built once per session; runs go to tmp dirs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner


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
