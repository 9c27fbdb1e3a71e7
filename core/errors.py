"""Errors users see. Each inherits from the builtin it refines, so callers may catch either."""

from __future__ import annotations


def one_line(text: object, sep: str = " ") -> str:
    """A message on one line: pluggy, click, pandas and json messages may span several, and every
    error promptopt prints is one line."""
    return sep.join(line.strip() for line in str(text).splitlines() if line.strip())


def exception_line(exc: BaseException, sep: str = " ") -> str:
    """`Type: message` of a foreign exception, on one line."""
    return one_line(f"{type(exc).__name__}: {exc}", sep)


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type's name where it has no message (Ray's run to pages)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PromptoptError(Exception):
    """Base of every promptopt error."""

    exit_code = 1


class UsageError(PromptoptError, ValueError):
    """Bad usage or bad input: the CLI prints the one-line message and exits with status 2."""

    exit_code = 2


class PluginError(PromptoptError, RuntimeError):
    """A plugin failed to import, register, or validate."""

    exit_code = 1


class ExecutorError(PromptoptError, RuntimeError):
    """The distributed executor could not evaluate a generation (exit status 1)."""

    exit_code = 1


class CheckpointError(PromptoptError, OSError):
    """A run directory or checkpoint is missing, corrupt or from an incompatible run."""

    exit_code = 2


class Stopped(KeyboardInterrupt):
    """A termination signal (SIGTERM from a scheduler's preemption or `kill`, SIGHUP from a closed
    terminal) turned into the same clean stop as Ctrl-C: temp files removed, the run left resumable.
    The CLI exits with 128 + the signal's number, as the shell would for the bare signal."""

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class RunInUseError(UsageError):
    """Another process is running (or resuming) the same run directory right now."""
