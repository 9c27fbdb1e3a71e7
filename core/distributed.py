"""Where a generation is evaluated: in this process (``local``) or on a Ray cluster (``ray``).

The runner's loop is ``result = executor(optimizer.ask())``: an executor takes the search
vectors z [P, d] the optimizer asked for and returns the population's
``SurveyResult(loss [P], scores [P, D], answers, fitness [P])``, candidates in the order they were asked.

``LocalExecutor`` is the in-process path (decode z, run the survey objective). ``RayExecutor``
keeps the optimizer on the driver and fans the population out to Ray actors, one per GPU (or
per CPU slot). Each actor builds the model, the search space and the survey objective ONCE,
from the run's config, through the same ``session.open_session`` the driver uses, so it keeps
its own prefix KV cache for every generation. Per generation only z (P x d floats, put in the
object store once and fetched once per actor) goes out, with each actor's slice of the
population, and loss, fitness, scores and the answer distributions of the slice come back; the soft
prompts are decoded inside the actor with the same seeded projection, and the model never
moves over the network.

A chunk whose actor dies (killed, crashed, node lost) is resubmitted to a live actor and a
replacement actor is started for later generations; the run goes on with the same numbers,
since every chunk is a pure function of its z; a warning line on stderr says so. An exception
raised by the evaluation itself (a bug, CUDA out of memory) is not retried: it is raised on the
driver.

``ray.init`` is wrapped (``_init_ray``) so that a Ray run stops on Ctrl-C, SIGTERM and SIGHUP as a
local one does: Ray's own SIGTERM handler (``sys.exit(15)``, a run ending in an error) is undone,
and a stop signal that arrives while ``ray.init`` starts its processes is held until it returns,
so the Ray this run started can be shut down rather than left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import PromptoptError, UsageError
from .evaluator import AnswerDistribution
from .objective import SurveyResult

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = ("--executor ray needs Ray, which is not installed; "
                    "install it with: pip install 'promptopt[ray]'  (or: pip install 'ray>=2.9')")
ADDRESS_FORMS = "give auto, HOST:PORT (the head's GCS, default port 6379) or ray://HOST:PORT (Ray Client, default 10001)"
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class ExecutorError(PromptoptError, RuntimeError):
    """The distributed executor could not evaluate a generation (exit status 1)."""

    exit_code = 1


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_INSTALL_HINT) from None
    return ray


def make_executor(config, session, progress: bool = False):
    """The executor a config asks for; ``close()`` it when the run stops. ``progress``: the run is
    not --quiet, so a slow start (Ray actors loading the model) may say what it is doing."""
    kind = getattr(config, "executor", "local")
    if kind == "local":
        return LocalExecutor(session)
    if kind == "ray":
        return RayExecutor(config, session, address=getattr(config, "ray_address", None),
                           actors=getattr(config, "actors", None), progress=progress)
    raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)} (got {kind!r})")


class LocalExecutor:
    """Decode and evaluate the whole population in this process (the default)."""

    kind = "local"

    def __init__(self, session) -> None:
        self.space, self.objective = session.space, session.objective

    def __call__(self, z: torch.Tensor) -> SurveyResult:
        return self.objective(self.space.decode(z), mass=False)   # the loop needs no option mass (unless --min-mass)

    def describe(self) -> dict[str, Any]:
        return {"executor": "local"}

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def space_fingerprint(space) -> list[float]:
    """A few sums that differ if two processes built different search spaces (weights, seed, code)."""
    parts = [space.x0, space.lower, space.upper] + ([space.projection] if space.projection is not None else [])
    return [float(p.double().sum()) for p in parts] + [float(space.dim), float(space.n_tokens)]


class SurveyWorker:
    """A Ray actor's state: one model, one search space, one survey objective, built once.

    Plain Python (``ray.remote`` wraps it in the driver), so it is importable and testable
    without Ray.
    """

    def __init__(self, config, threads: int | None = None, init_tokens: list[int] | None = None) -> None:
        import dataclasses

        from .host import PluginHost
        from .session import open_session

        if threads:
            torch.set_num_threads(threads)
        if any(f.name == "executor" for f in dataclasses.fields(config)):
            config = dataclasses.replace(config, executor="local")
        if str(config.device).startswith("cuda"):  # Ray shows a GPU actor only its own GPU, as cuda:0
            config = dataclasses.replace(config, device="cuda")
        started = time.perf_counter()
        self.session = open_session(PluginHost(), config, init_tokens)
        self.setup_seconds = time.perf_counter() - started
        self.evaluations = 0

    def info(self) -> dict[str, Any]:
        import platform

        backend = self.session.backend
        return {"pid": os.getpid(), "host": platform.node(), "device": str(backend.device),
                "threads": torch.get_num_threads(), "setup_seconds": round(self.setup_seconds, 3),
                "space": space_fingerprint(self.session.space)}

    def evaluate(self, z: torch.Tensor, start: int = 0, stop: int | None = None) -> dict[str, Any]:
        """Candidates start:stop of the population z [P, d] -> their loss, scores, answers (CPU tensors).

        The whole population is decoded (a [P, d] x [d, K*H] product, negligible next to the
        model) and then sliced, so each soft prompt is bit for bit the one the driver's
        ``space.decode(z)`` gives: a matmul over fewer rows may round differently.
        """
        started = time.perf_counter()
        session = self.session
        soft = session.space.decode(z)[start:stop]
        result = session.objective(soft, mass=False)   # the loop needs no option mass (unless --min-mass)
        self.evaluations += soft.shape[0]
        answers = result.answers
        return {"loss": result.loss.cpu(), "fitness": result.fitness.cpu(), "scores": result.scores.cpu(),
                "entropy": result.entropy.cpu(),
                "probs": answers.probs.cpu(), "expected": answers.expected.cpu(),
                "mass": None if answers.mass is None else answers.mass.cpu(),
                "seconds": time.perf_counter() - started, "pid": os.getpid()}


@dataclass
class GenerationStats:
    """Timing of the last generation on the executor, for benchmarks and logs."""

    wall: float = 0.0            # driver: ask -> results gathered
    actor_max: float = 0.0       # the slowest chunk's evaluation time inside its actor
    actor_sum: float = 0.0
    retries: int = 0
    chunks: list[int] = field(default_factory=list)

    @property
    def overhead(self) -> float:
        """Driver wall time not spent evaluating in the slowest actor: transfer, scheduling, gather."""
        return max(0.0, self.wall - self.actor_max)


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


def _ray_address(address: str | None) -> tuple[str | None, str]:
    """The address ray.init will use, and how a message names it: RAY_ADDRESS where none or ``auto``
    is given (as ray.init does; it ignores an empty one), else the --ray-address given."""
    env = os.environ.get("RAY_ADDRESS") or None
    if env and address in (None, "auto"):
        return env, f"RAY_ADDRESS={shlex.quote(env)}"
    return address, "" if address is None else f"--ray-address {shlex.quote(address)}"


@contextlib.contextmanager
def _stop_signals_held() -> Iterator[list[int]]:
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
            _deliver(signum)
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


def _deliver(signum: int) -> None:
    """Handle a held signal now, as the handler in place would have (Stopped, KeyboardInterrupt, exit)."""
    handler = signal.getsignal(signum)
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


class _SignalRelay:
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


class _HideTokenNotice(logging.Filter):
    """Ray 2.5x+ logs a WARNING on every new local instance that token authentication is on by
    default: a notice about Ray's defaults, not about this run (the 'disabled' warning stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _init_ray(ray, address: str | None, kwargs: dict[str, Any]) -> None:
    """ray.init(address, **kwargs) with this process's stop signals kept (see ``_stop_signals_held``);
    a stop signal during it shuts down what it started, then stops the run as the signal would have."""
    token_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _HideTokenNotice()
    token_logger.addFilter(notice)
    # Ray's C++ crash handler, installed while ray.init connects, takes SIGTERM too: a fake crash
    # report ("*** SIGTERM received ... PC: @") and an abort (exit 134) instead of a clean stop
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    held: list[int] = []
    try:
        with _stop_signals_held() as held:
            ray.init(address=address, **kwargs)
    except BaseException:
        if held:   # a second signal cut ray.init short: shut down what Ray can still reach
            ray.shutdown()
        raise
    finally:
        token_logger.removeFilter(notice)
    if held:
        ray.shutdown()   # the instance this run started; a joined cluster is only disconnected from
        _deliver(held[0])


def _ray_init_error(exc: BaseException, address: str | None, flag: str) -> PromptoptError | None:
    """ray.init's refusal of an address as one line naming where it came from (``flag``: the
    --ray-address flag or RAY_ADDRESS), or None for an error that is not about the address."""
    text = _first_line(exc).replace("setting `--address` flag", "giving --ray-address").replace(
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


class RayExecutor:
    """Evaluate each generation on a pool of Ray actors; the driver keeps the optimizer.

    ``address``: a Ray cluster to join (``ray.init(address=...)``; None: an already initialised
    Ray, else the cluster in ``RAY_ADDRESS``, else one started on this node with ``ray start``,
    else a new local one). ``actors``: pool size (default: one per GPU of the cluster with
    ``--device cuda``, else one per CPU); more than the cluster has is refused at once.
    ``cpus_per_actor``: CPU slots (and torch threads) per CPU actor. ``max_retries``: how many
    times one chunk may be resubmitted after its actor is lost before the run fails;
    ``max_restarts``: lost actors replaced per run before it fails (default 4 per actor).
    ``progress``: say on stderr that the actors are starting (not with --quiet); ``warn``: where
    a lost actor is reported (default: stderr, above any progress bar).
    """

    kind = "ray"

    def __init__(self, config, session=None, address: str | None = None, actors: int | None = None,
                 cpus_per_actor: int = 1, max_retries: int = 3, max_restarts: int | None = None,
                 start_timeout: float = 900.0, init_kwargs: dict[str, Any] | None = None,
                 progress: bool = False, warn: Callable[[str], None] | None = None) -> None:
        ray = _import_ray()
        self._ray = ray
        from ray import exceptions as rex

        self._lost_errors = tuple(getattr(rex, n) for n in (
            "RayActorError", "WorkerCrashedError", "ObjectLostError", "NodeDiedError") if hasattr(rex, n))
        self._task_error = rex.RayTaskError
        self.config = config
        self.cuda = str(config.device).startswith("cuda")
        self.max_retries = max_retries
        self.start_timeout = start_timeout
        self._warn = warn or _warn_above_bar
        self._owns_ray = False
        self.address, label = _ray_address(address)
        self.stats = GenerationStats()
        self.restarts = self.retries = 0
        self.actors: list[Any] = []
        self._infos: dict[Any, dict] = {}
        self._numbers: dict[Any, int] = {}   # actor -> its number in warnings: 0.., replacements after
        self._nodes: set[str] = set()
        self._lost: list[dict[str, Any]] = []
        self._signals: _SignalRelay | None = None
        check_address(self.address, label)
        try:
            if not ray.is_initialized():
                kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                          **(init_kwargs or {})}
                check_reachable(self.address, label=label)
                self._owns_ray = True   # before ray.init: a stop during it shuts down what it started
                try:
                    _init_ray(ray, address, kwargs)
                except (ConnectionError, ValueError) as exc:
                    error = _ray_init_error(exc, self.address, label)
                    if error is None:
                        raise
                    raise error from None
            self._signals = _SignalRelay()
            self._plan_pool(ray.cluster_resources(), actors, cpus_per_actor)
            self.max_restarts = 4 * self.n_actors if max_restarts is None else max_restarts
            self._remote_cls = ray.remote(SurveyWorker)
            self._reference = space_fingerprint(session.space) if session is not None else None
            # x0's tokens as the driver chose them: an actor need not redo --init screen's scoring
            self._init_tokens = session.space.init_tokens if session is not None else None
            if progress:
                print(f"starting {self.n_actors} Ray actor{'s' * (self.n_actors != 1)} (each loads the model) ...",
                      file=sys.stderr, flush=True)
            for _ in range(self.n_actors):
                self.actors.append(self._start_actor())
            with self._signals.kept():
                self._await_ready(self.actors)
        except BaseException:
            self.close()
            raise

    # --- the pool -------------------------------------------------------------------------

    def _plan_pool(self, resources: dict[str, float], actors: int | None, cpus_per_actor: int) -> None:
        """The actors' resources and count; more actors than the cluster's current total could ever
        place is refused now, instead of waiting start_timeout for actors that never start."""
        cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
        if self.cuda:
            if gpus < 1:
                raise UsageError("--executor ray with --device cuda, but the Ray cluster has no GPU; "
                                 "use --device cpu or add GPU nodes")
            self.actor_options = {"num_gpus": 1, "num_cpus": 1}
            self.threads = None
            default = max(1, int(min(gpus, cpus)))
        else:
            self.actor_options = {"num_cpus": cpus_per_actor}
            self.threads = cpus_per_actor
            default = max(1, int(cpus) // cpus_per_actor)
        self.n_actors = actors or default
        if self.n_actors < 1:
            raise UsageError(f"--actors must be >= 1 (got {self.n_actors})")
        for option, name, have in (("num_gpus", "GPU", gpus), ("num_cpus", "CPU", cpus)):
            each = self.actor_options.get(option, 0)
            if each and self.n_actors * each > have:
                fits = int(have // each)
                fix = f"give --actors {fits} or fewer" if fits else f"give a cluster with {name}s"
                raise UsageError(f"--actors {self.n_actors} needs {self.n_actors * each} {name}s but the Ray cluster "
                                 f"has {have:g}; {fix} (or join a larger cluster with --ray-address)")

    def _start_actor(self):
        actor = self._remote_cls.options(**self.actor_options).remote(self.config, self.threads, self._init_tokens)
        self._infos[actor] = {"ready": actor.info.remote()}
        self._numbers[actor] = len(self._numbers)
        return actor

    def _await_ready(self, actors) -> None:
        """Wait for the actors' model loads; a mismatched search space is a hard error."""
        refs = [self._infos[a]["ready"] for a in actors]
        try:
            infos = self._ray.get(refs, timeout=self.start_timeout)
        except self._ray.exceptions.GetTimeoutError:
            raise ExecutorError(f"Ray actors did not start within {self.start_timeout:.0f} s (is the cluster "
                                f"short of {'GPUs' if self.cuda else 'CPUs'} for {len(actors)} actors?)") from None
        except (self._task_error, *self._lost_errors) as exc:
            raise ExecutorError(f"a Ray actor failed to build the model and objective: {_first_line(exc)}") from None
        for actor, info in zip(actors, infos):
            self._infos[actor].update(info)
            self._nodes.add(info["host"])
            if self._reference is not None and not _close(info["space"], self._reference):
                raise ExecutorError(f"Ray actor on {info['host']} built a different search space than the driver "
                                    "(different model weights, seed or promptopt version on that node)")

    def _replace(self, actor, reason: str) -> Any:
        """Drop a lost actor and start a replacement; later generations (and retries) may use it.
        Returns the replacement, or None if the actor was already replaced."""
        if actor not in self.actors:
            return None
        if self.restarts >= self.max_restarts:
            raise ExecutorError(f"{self.restarts} Ray actors were lost and replaced in this run; giving up "
                                f"(the last: {reason}; check the cluster: node failures, out-of-memory kills)")
        self.actors.remove(actor)
        self._infos.pop(actor, None)
        self._lost.append({"actor": self._numbers.get(actor), "reason": reason})
        try:
            self._ray.kill(actor)
        except Exception:  # already gone
            pass
        replacement = self._start_actor()
        self.actors.append(replacement)
        self.restarts += 1
        return replacement

    def _submit(self, actor, z, span: tuple[int, int]):
        """Ask one actor for candidates span[0]:span[1] of z (a seam for tests: fault injection wraps it)."""
        return actor.evaluate.remote(z, *span)

    # --- one generation ---------------------------------------------------------------------

    def __call__(self, z: torch.Tensor) -> SurveyResult:
        with self._signals.kept() if self._signals is not None else contextlib.nullcontext():
            return self._generation(z)

    def _generation(self, z: torch.Tensor) -> SurveyResult:
        started = time.perf_counter()
        device = z.device
        z_cpu = z.detach().to("cpu", copy=True).contiguous()
        z_ref = self._ray.put(z_cpu)  # stored once, fetched once per actor: P x d floats
        chunks = _spans(z_cpu.shape[0], len(self.actors))
        results: list[dict | None] = [None] * len(chunks)
        pending: dict[Any, tuple[int, Any, int]] = {}
        load: dict[Any, int] = {}

        def submit(i: int, actor, attempt: int) -> None:
            pending[self._submit(actor, z_ref, chunks[i])] = (i, actor, attempt)
            load[actor] = load.get(actor, 0) + 1

        for i in range(len(chunks)):
            submit(i, self.actors[i % len(self.actors)], 0)
        retries = 0
        while pending:
            done, _ = self._ray.wait(list(pending), num_returns=1)
            i, actor, attempt = pending.pop(done[0])
            load[actor] -= 1
            try:
                results[i] = self._ray.get(done[0])
            except self._task_error as exc:
                # the evaluation raised: deterministic, so not retried; re-raise the actor's error here
                for ref in pending:
                    try:
                        self._ray.cancel(ref)
                    except Exception:  # cancelling is best effort
                        pass
                cause = exc.as_instanceof_cause()
                raise cause from None
            except self._lost_errors as exc:
                if attempt >= self.max_retries:
                    raise ExecutorError(f"chunk {i} of the population was lost {attempt + 1} times "
                                        f"(last: {_first_line(exc)}); giving up") from None
                reason = _death_reason(exc)
                replacement = self._replace(actor, reason)
                load.pop(actor, None)
                retries += 1
                # prefer a live, already started actor with the least work queued; else the replacement
                ready = [a for a in self.actors if "pid" in self._infos.get(a, {})] or self.actors
                target = min(ready, key=lambda a: load.get(a, 0))
                submit(i, target, attempt + 1)
                if replacement is not None:   # once per lost actor, not per chunk it held
                    self._warn_lost(actor, reason, target, replacement)
        self._adopt_started()
        self.retries += retries
        parts = results  # type: ignore[assignment]
        cat = lambda key: torch.cat([p[key] for p in parts]).to(device)  # noqa: E731
        mass = None if parts[0]["mass"] is None else cat("mass")   # measured when a --min-mass floor needs it
        answers = AnswerDistribution(probs=cat("probs"), mass=mass, expected=cat("expected"))
        result = SurveyResult(loss=cat("loss"), scores=cat("scores"), answers=answers, fitness=cat("fitness"),
                              entropy=cat("entropy"))
        seconds = [p["seconds"] for p in parts]
        self.stats = GenerationStats(wall=time.perf_counter() - started, actor_max=max(seconds),
                                     actor_sum=sum(seconds), retries=retries, chunks=[b - a for a, b in chunks])
        return result

    def _warn_lost(self, actor, reason: str, target, replacement) -> None:
        """One line per lost actor: the run goes on with the same numbers, but the user should know."""
        number, new = self._numbers.get(actor), self._numbers[replacement]
        went = (f"its slice went to its replacement, actor {new}, which is starting" if target is replacement else
                f"its slice went to actor {self._numbers[target]}, a replacement (actor {new}) is starting")
        self._warn(f"warning: Ray actor {number} died ({reason}); {went} "
                   f"(restart {self.restarts} of at most {self.max_restarts})")

    def _adopt_started(self) -> None:
        """Record replacement actors whose start has finished (without waiting for the others)."""
        waiting = [a for a in self.actors if "pid" not in self._infos.get(a, {"pid": 0})]
        if not waiting:
            return
        refs = [self._infos[a]["ready"] for a in waiting]
        done, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for actor in waiting:
            if self._infos[actor]["ready"] in done:
                try:
                    self._await_ready([actor])
                except ExecutorError as exc:
                    reason = str(exc)
                    replacement = self._replace(actor, reason)
                    self._warn(f"warning: replacement Ray actor {self._numbers.get(actor)} failed to start ({reason}); "
                               f"starting actor {self._numbers[replacement]} instead "
                               f"(restart {self.restarts} of at most {self.max_restarts})")

    def describe(self) -> dict[str, Any]:
        """What ran the generations, for the run's records; still complete after close()."""
        return {"executor": "ray", "address": self.address, "actors": getattr(self, "n_actors", 0),
                "restarts": self.restarts, "max_restarts": getattr(self, "max_restarts", None),
                "retries": self.retries, "lost": list(self._lost),
                "actor_options": getattr(self, "actor_options", {}), "nodes": sorted(self._nodes)}

    def close(self) -> None:
        """Kill the actors; shut Ray down if this executor started it (one it joined is only left)."""
        for actor in self.actors:
            try:
                self._ray.kill(actor)
            except Exception:
                pass
        self.actors = []
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()
        if self._signals is not None:
            self._signals.close()
            self._signals = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _warn_above_bar(message: str) -> None:
    """A warning on stderr that does not tear the progress bar (tqdm.write clears and redraws it)."""
    try:
        from tqdm import tqdm
    except ImportError:
        print(message, file=sys.stderr, flush=True)
    else:
        tqdm.write(message, file=sys.stderr)


def _death_reason(exc: BaseException) -> str:
    """Why Ray says an actor died, short: 'its worker process has died', 'it was killed by `ray.kill`'."""
    text = str(exc)
    marker = "The actor is dead because "
    if marker in text:
        return re.split(r"\.(?:\s|$)", text.split(marker, 1)[1], maxsplit=1)[0].strip()
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _spans(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) slices of n candidates over at most `parts` actors, sizes within 1."""
    parts = max(1, min(parts, n))
    sizes = [n // parts + (i < n % parts) for i in range(parts)]
    ends = [sum(sizes[:i + 1]) for i in range(parts)]
    return [(end - size, end) for size, end in zip(sizes, ends)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(a, b))
