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
since every chunk is a pure function of its z. An exception raised by the evaluation itself
(a bug, CUDA out of memory) is not retried: it is raised on the driver.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import PromptoptError, UsageError
from .evaluator import AnswerDistribution
from .objective import SurveyResult

EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = ("--executor ray needs Ray, which is not installed; "
                    "install it with: pip install 'promptopt[ray]'  (or: pip install 'ray>=2.9')")


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


def make_executor(config, session):
    """The executor a config asks for; ``close()`` it when the run stops."""
    kind = getattr(config, "executor", "local")
    if kind == "local":
        return LocalExecutor(session)
    if kind == "ray":
        return RayExecutor(config, session, address=getattr(config, "ray_address", None),
                           actors=getattr(config, "actors", None))
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


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """A ``HOST:PORT`` or ``ray://HOST:PORT`` cluster address must accept a TCP connection within
    ``timeout`` seconds: ray.init would otherwise retry its GCS connection for minutes, printing a
    warning every few seconds, before failing. ``auto``, ``local`` and None are Ray's to resolve."""
    if not address or address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address} is not an address Ray can join; give auto, HOST:PORT "
                         "(the head's GCS, default port 6379) or ray://HOST:PORT (Ray Client, default 10001)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise UsageError(f"cannot reach the Ray cluster at {address}: no connection within {timeout:g} s "
                         f"({exc.strerror or type(exc).__name__}); check that its head is up (`ray status` on "
                         "it) and the address and port, or run without --executor ray") from None


class RayExecutor:
    """Evaluate each generation on a pool of Ray actors; the driver keeps the optimizer.

    ``address``: a Ray cluster to join (``ray.init(address=...)``; None: the cluster in
    ``RAY_ADDRESS`` or an already initialised Ray, else a new local one). ``actors``: pool size
    (default: one per GPU of the cluster with ``--device cuda``, else one per CPU).
    ``cpus_per_actor``: CPU slots (and torch threads) per CPU actor. ``max_retries``: how many
    times one chunk may be resubmitted after its actor is lost before the run fails;
    ``max_restarts``: lost actors replaced per run before it fails (default 4 per actor).
    """

    kind = "ray"

    def __init__(self, config, session=None, address: str | None = None, actors: int | None = None,
                 cpus_per_actor: int = 1, max_retries: int = 3, max_restarts: int | None = None,
                 start_timeout: float = 900.0, init_kwargs: dict[str, Any] | None = None) -> None:
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
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(init_kwargs or {})}
            check_reachable(address or os.environ.get("RAY_ADDRESS"))
            try:
                ray.init(address=address, **kwargs)
            except ConnectionError as exc:
                raise UsageError(f"cannot reach the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: "
                                 f"{str(exc).splitlines()[0]}") from None
            self._owns_ray = True
        resources = ray.cluster_resources()
        if self.cuda:
            gpus = int(resources.get("GPU", 0))
            if gpus < 1:
                raise UsageError("--executor ray with --device cuda, but the Ray cluster has no GPU; "
                                 "use --device cpu or add GPU nodes")
            self.actor_options = {"num_gpus": 1, "num_cpus": 1}
            self.threads = None
            default = gpus
        else:
            self.actor_options = {"num_cpus": cpus_per_actor}
            self.threads = cpus_per_actor
            default = max(1, int(resources.get("CPU", 1)) // cpus_per_actor)
        self.n_actors = actors or default
        if self.n_actors < 1:
            raise UsageError(f"--actors must be >= 1 (got {self.n_actors})")
        self.max_restarts = 4 * self.n_actors if max_restarts is None else max_restarts
        self._remote_cls = ray.remote(SurveyWorker)
        self.stats = GenerationStats()
        self.restarts = 0
        self.actors: list[Any] = []
        self._infos: dict[Any, dict] = {}
        self._reference = space_fingerprint(session.space) if session is not None else None
        # x0's tokens as the driver chose them: an actor need not redo --init screen's scoring
        self._init_tokens = session.space.init_tokens if session is not None else None
        try:
            for _ in range(self.n_actors):
                self.actors.append(self._start_actor())
            self._await_ready(self.actors)
        except BaseException:
            self.close()
            raise

    # --- the pool -------------------------------------------------------------------------

    def _start_actor(self):
        actor = self._remote_cls.options(**self.actor_options).remote(self.config, self.threads, self._init_tokens)
        self._infos[actor] = {"ready": actor.info.remote()}
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
            if self._reference is not None and not _close(info["space"], self._reference):
                raise ExecutorError(f"Ray actor on {info['host']} built a different search space than the driver "
                                    "(different model weights, seed or promptopt version on that node)")

    def _replace(self, actor) -> None:
        """Drop a lost actor and start a replacement; later generations (and retries) may use it."""
        if actor not in self.actors:
            return
        if self.restarts >= self.max_restarts:
            raise ExecutorError(f"{self.restarts} Ray actors were lost and replaced in this run; giving up "
                                "(check the cluster: node failures, out-of-memory kills)")
        self.actors.remove(actor)
        self._infos.pop(actor, None)
        try:
            self._ray.kill(actor)
        except Exception:  # already gone
            pass
        self.actors.append(self._start_actor())
        self.restarts += 1

    def _submit(self, actor, z, span: tuple[int, int]):
        """Ask one actor for candidates span[0]:span[1] of z (a seam for tests: fault injection wraps it)."""
        return actor.evaluate.remote(z, *span)

    # --- one generation ---------------------------------------------------------------------

    def __call__(self, z: torch.Tensor) -> SurveyResult:
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
                self._replace(actor)
                load.pop(actor, None)
                retries += 1
                # prefer a live, already started actor with the least work queued; else the replacement
                ready = [a for a in self.actors if "pid" in self._infos.get(a, {})] or self.actors
                submit(i, min(ready, key=lambda a: load.get(a, 0)), attempt + 1)
        self._adopt_started()
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
                except ExecutorError:
                    self._replace(actor)

    def describe(self) -> dict[str, Any]:
        return {"executor": "ray", "actors": len(self.actors), "restarts": self.restarts,
                "actor_options": self.actor_options,
                "nodes": sorted({i["host"] for i in self._infos.values() if "host" in i})}

    def close(self) -> None:
        """Kill the actors; shut Ray down if this executor started it."""
        for actor in self.actors:
            try:
                self._ray.kill(actor)
            except Exception:
                pass
        self.actors = []
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
            self._owns_ray = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
