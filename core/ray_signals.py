"""Ctrl-C, SIGTERM and SIGHUP stop a Ray run as they stop a local one.

``init_ray`` wraps ``ray.init``: Ray's own SIGTERM handler (``sys.exit(15)``, a run ending in an
error) is undone, and a stop signal that arrives while ``ray.init`` starts its processes is held
until it returns, so the Ray this run started can be shut down rather than left behind.
``SignalRelay`` keeps what a SIGTERM or SIGHUP handler raised while the driver waits in a Ray call,
which would otherwise turn it into a plain KeyboardInterrupt (a Ctrl-C stop).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def stop_signals_held() -> Iterator[list[int]]:
    """Ctrl-C, SIGTERM and SIGHUP wait until the block ends, and the handlers in place before it are
    put back whatever it installed (ray.init sets its own SIGTERM handler). Yields the list of held
    signals; a second signal is handled at once (a user who insists gets an immediate stop)."""
    if threading.current_thread() is not threading.main_thread():
        yield []   # signal handlers belong to the main thread; Ray skips its own there too
        return
    saved = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    held: list[int] = []
    restored = []

    def restore() -> None:
        if not restored:
            restored.append(True)
            for sig, handler in saved.items():
                if handler is not None:   # None: set outside Python, cannot be put back from here
                    signal.signal(sig, handler)

    def hold(signum: int, frame) -> None:
        if held:   # the second: handled now, by the handler that was in place
            restore()
            deliver(signum)
            return
        held.append(signum)

    for sig, handler in saved.items():
        if handler is not None and handler is not signal.SIG_IGN:   # an ignored signal stays ignored
            signal.signal(sig, hold)
    # ray.init installs a SIGTERM handler of its own (sys.exit) before it starts the node's processes,
    # and the node one that kills them: neither while the signal is held (restored below either way)
    utils = sys.modules.get("ray._private.utils")
    setter = getattr(utils, "set_sigterm_handler", None)
    if setter is not None:
        utils.set_sigterm_handler = lambda handler: None
    try:
        yield held
    except SystemExit as exc:   # Ray's own handler, where the one above could not be kept out
        if exc.code != getattr(signal, "SIGTERM", None):
            raise
        held.append(exc.code)
    finally:
        if setter is not None:
            utils.set_sigterm_handler = setter
        restore()


def deliver(signum: int) -> None:
    """Handle a held signal now, as the handler in place would have (Stopped, KeyboardInterrupt, exit)."""
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


class SignalRelay:
    """Ray's blocking calls (ray.get, ray.wait) turn whatever a signal handler raises into a plain
    KeyboardInterrupt, so a SIGTERM or SIGHUP that arrives while the driver waits for its actors
    would end the run as Ctrl-C (exit 130, "stopped by Ctrl-C"). The relay wraps those signals'
    handlers to keep what they raised, and ``kept()`` raises that instead of Ray's substitute."""

    def __init__(self) -> None:
        self.raised: BaseException | None = None
        self._saved: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in STOP_SIGNALS:
            handler = signal.getsignal(sig)
            if sig != signal.SIGINT and callable(handler):   # Ctrl-C is a KeyboardInterrupt either way
                self._saved[sig] = handler
                signal.signal(sig, self._relay)

    def _relay(self, signum: int, frame) -> None:
        try:
            self._saved[signum](signum, frame)
        except BaseException as exc:
            self.raised = exc
            raise

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        try:
            yield
        except KeyboardInterrupt as exc:
            if self.raised is not None and exc is not self.raised:
                raise self.raised from None
            raise

    def close(self) -> None:
        """The handlers back, unless a handler has changed its own since (the CLI's ignores repeats)."""
        for sig, handler in self._saved.items():
            if signal.getsignal(sig) == self._relay:
                signal.signal(sig, handler)
        self._saved = {}


class HideTokenNotice(logging.Filter):
    """Ray 2.5x+ logs a WARNING on every new local instance that token authentication is on by
    default: a notice about Ray's defaults, not about this run (the 'disabled' warning stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def init_ray(ray, address: str | None, kwargs: dict[str, Any]) -> None:
    """ray.init(address, **kwargs) with this process's stop signals kept (see ``stop_signals_held``);
    a stop signal during it shuts down what it started, then stops the run as the signal would have."""
    token_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = HideTokenNotice()
    token_logger.addFilter(notice)
    # Ray's C++ crash handler, installed while ray.init connects, takes SIGTERM too: a fake crash
    # report ("*** SIGTERM received ... PC: @") and an abort (exit 134) instead of a clean stop
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    held: list[int] = []
    try:
        with stop_signals_held() as held:
            ray.init(address=address, **kwargs)
    except BaseException:
        if held:   # a second signal cut ray.init short: shut down what Ray can still reach
            ray.shutdown()
        raise
    finally:
        token_logger.removeFilter(notice)
    if held:
        ray.shutdown()   # the instance this run started; a joined cluster is only disconnected from
        deliver(held[0])
