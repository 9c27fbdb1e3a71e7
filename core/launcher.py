"""The `promptopt` console script. The CLI imports torch and transformers (about a second on a CPU)
before main() handles Ctrl-C; an interrupt then exits as a later one does: one line, status 130,
not a traceback from inside torch."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def exit_on_ctrl_c() -> Iterator[None]:
    """While only imports run and nothing is written, Ctrl-C exits at once: a KeyboardInterrupt raised
    inside a lazy import (transformers) comes out as an unrelated ImportError, or a torch traceback."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is signal.SIG_IGN:   # a background job's Ctrl-C stays ignored
        yield
        return
    previous = signal.signal(signal.SIGINT, _exit_now)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _exit_now(signum: int, frame) -> None:
    sys.stderr.write("Aborted (SIGINT).\n")
    sys.stderr.flush()
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> None:
    try:
        with exit_on_ctrl_c():
            from .cli import main as cli_main
        cli_main(argv, restore_signals=False)   # the process ends with it
    finally:
        _forget_caught_ctrl_c()


def _forget_caught_ctrl_c() -> None:
    """A Ctrl-C that lands while a string is being eval'd (namedtuple's set-up inside a lazy import:
    pandas' pyarrow at the first generation, matplotlib at the report) sets CPython's "unhandled
    KeyboardInterrupt" flag although the CLI caught it and chose its exit status. Under
    `python -m promptopt` the interpreter then kills itself with SIGINT on the way out (status -2,
    not the 130 the stop message promised). Running any string resets that flag; a KeyboardInterrupt
    that is still propagating sets it again, so a Ctrl-C nobody caught keeps its exit by SIGINT."""
    exec("")
