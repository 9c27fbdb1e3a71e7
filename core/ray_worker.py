"""What runs inside each Ray actor: the run's model, search space and survey objective, built once.

Plain Python (``ray.remote`` wraps ``SurveyWorker`` in the driver), so it is importable and
testable without Ray.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch


def space_fingerprint(space) -> list[float]:
    """A few sums that differ if two processes built different search spaces (weights, seed, code)."""
    parts = [space.x0, space.lower, space.upper] + ([space.projection] if space.projection is not None else [])
    return [float(p.double().sum()) for p in parts] + [float(space.dim), float(space.n_tokens)]


class SurveyWorker:
    """A Ray actor's state: one model, one search space, one survey objective, built once."""

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
