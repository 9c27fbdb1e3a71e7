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

Which cluster a run joins is checked in ``ray_address``, how stop signals reach a Ray run in
``ray_signals``, and what each actor runs in ``ray_worker``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import ExecutorError, UsageError, first_line
from .evaluator import AnswerDistribution
from .objective import SurveyResult
from .ray_address import check_address, check_reachable, init_error, resolve_address
from .ray_signals import SignalRelay, init_ray
from .ray_worker import SurveyWorker, space_fingerprint

__all__ = ["EXECUTORS", "RAY_INSTALL_HINT", "ExecutorError", "GenerationStats", "LocalExecutor", "RayExecutor",
           "SurveyWorker", "check_reachable", "make_executor", "ray_available", "space_fingerprint"]

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = ("--executor ray needs Ray, which is not installed; "
                    "install it with: pip install 'promptopt[ray]'  (or: pip install 'ray>=2.9')")


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
        self.address, label = resolve_address(address)
        self.stats = GenerationStats()
        self.restarts = self.retries = 0
        self.actors: list[Any] = []
        self._infos: dict[Any, dict] = {}
        self._numbers: dict[Any, int] = {}   # actor -> its number in warnings: 0.., replacements after
        self._nodes: set[str] = set()
        self._lost: list[dict[str, Any]] = []
        self._signals: SignalRelay | None = None
        check_address(self.address, label)
        try:
            if not ray.is_initialized():
                kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING,
                          **(init_kwargs or {})}
                check_reachable(self.address, label=label)
                self._owns_ray = True   # before ray.init: a stop during it shuts down what it started
                try:
                    init_ray(ray, address, kwargs)
                except (ConnectionError, ValueError) as exc:
                    error = init_error(exc, self.address, label)
                    if error is None:
                        raise
                    raise error from None
            self._signals = SignalRelay()
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
            raise ExecutorError(f"a Ray actor failed to build the model and objective: {first_line(exc)}") from None
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
                                        f"(last: {first_line(exc)}); giving up") from None
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
    return f"{type(exc).__name__}: {first_line(exc)}"


def _spans(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous (start, stop) slices of n candidates over at most `parts` actors, sizes within 1."""
    parts = max(1, min(parts, n))
    sizes = [n // parts + (i < n % parts) for i in range(parts)]
    ends = [sum(sizes[:i + 1]) for i in range(parts)]
    return [(end - size, end) for size, end in zip(sizes, ends)]


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 * max(1.0, abs(y)) for x, y in zip(a, b))
