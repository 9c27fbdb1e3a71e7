"""Which Ray cluster a run joins, checked before anything starts: a --ray-address (or RAY_ADDRESS)
Ray cannot parse or nothing listens on is one line and exit 2, not a traceback or minutes of
ray.init's retries; ray.init's own refusals of an address are put the same way."""

from __future__ import annotations

import os
import shlex
import socket

from .errors import ExecutorError, PromptoptError, UsageError, first_line

ADDRESS_FORMS = "give auto, HOST:PORT (the head's GCS, default port 6379) or ray://HOST:PORT (Ray Client, default 10001)"


def check_address(address: str | None, label: str | None = None) -> None:
    """A --ray-address that Ray cannot parse fails here in one line, instead of a ValueError traceback
    from ray.init (an empty one, a bad port) or minutes of retries (an http:// dashboard URL).
    ``label``: how the message names it (default ``--ray-address ADDRESS``; ``RAY_ADDRESS=...``)."""
    if address is None or address in ("auto", "local"):
        return
    flag = label or f"--ray-address {shlex.quote(address)}"
    if not address.strip():
        raise UsageError("--ray-address is empty; give auto, HOST:PORT or ray://HOST:PORT, "
                         "or leave it out for a local Ray")
    scheme, sep, rest = address.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        raise UsageError(f"{flag} is a URL (Ray's dashboard and job API, port 8265), not a cluster address; "
                         f"drop the {scheme}:// and give the head's GCS, HOST:6379 (or ray://HOST:10001 for Ray Client)")
    if sep and scheme != "ray":
        raise UsageError(f"{flag} has the scheme {scheme}://, which is not Ray's; {ADDRESS_FORMS}")
    host, _, port = (rest if sep else address).rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"{flag} is not an address Ray can join; {ADDRESS_FORMS}")
    if not 0 < int(port) < 65536:
        raise UsageError(f"{flag} has port {port}, outside 1-65535; {ADDRESS_FORMS}")


def check_reachable(address: str | None, timeout: float = 5.0, label: str | None = None) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` cluster address must accept a TCP connection within
    ``timeout`` seconds: ray.init would otherwise retry its GCS connection for minutes, printing a
    warning every few seconds, before failing. ``auto``, ``local`` and None are Ray's to resolve."""
    check_address(address, label)
    if address is None or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: no connection within {timeout:g} s "
                         f"({exc.strerror or type(exc).__name__}); check that its head is up (`ray status` on "
                         "it) and the address and port, or run without --executor ray") from None


def resolve_address(address: str | None) -> tuple[str | None, str]:
    """The address ray.init will use, and how a message names it: RAY_ADDRESS where none or ``auto``
    is given (as ray.init does; it ignores an empty one), else the --ray-address given."""
    env = os.environ.get("RAY_ADDRESS") or None
    if env and address in (None, "auto"):
        return env, f"RAY_ADDRESS={shlex.quote(env)}"
    return address, "" if address is None else f"--ray-address {shlex.quote(address)}"


def init_error(exc: BaseException, address: str | None, flag: str) -> PromptoptError | None:
    """ray.init's refusal of an address as one line naming where it came from (``flag``: the
    --ray-address flag or RAY_ADDRESS), or None for an error that is not about the address."""
    text = first_line(exc).replace("setting `--address` flag", "giving --ray-address").replace(
        "`--address` flag", "--ray-address")
    if address is None:   # ray.init() on its own: a local Ray that did not start (or a stale one on the node)
        if isinstance(exc, ConnectionError):
            return ExecutorError(f"Ray could not start (or join the one on this node): {text}")
        return None
    if isinstance(exc, ConnectionError):
        if "Could not find any running Ray instance" in text:
            return UsageError(f"{flag} found no Ray running on this node; start one there with `ray start --head`, "
                              "give HOST:PORT of a running cluster, or leave --ray-address out for a new local Ray")
        return UsageError(f"cannot reach the Ray cluster at {address} ({flag}): {text}")
    if isinstance(exc, ValueError):
        return UsageError(f"{flag} is not an address Ray can join ({text}); {ADDRESS_FORMS}")
    return None
