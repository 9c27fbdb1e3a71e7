"""The ask/tell contract every optimizer in promptopt follows.

The host (the soft-prompt search loop) owns evaluation; an optimizer only proposes
points and learns from their fitness. The public ``ask``/``tell`` live here, once, so
every optimizer validates input, handles NaN and inf and tracks best-so-far the same way;
subclasses implement the protected hooks ``_ask``/``_tell``/``_state``/``_load_state``.

This module is plain Python + torch on purpose: it must not import promptopt core.
"""

from __future__ import annotations

import inspect
import math
import secrets
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor

__all__ = ["Optimizer", "BatchError", "STATE_FORMAT", "run_arguments"]

STATE_FORMAT = 1
"""Version of the dict layout written by :meth:`Optimizer.state_dict`."""


class BatchError(RuntimeError):
    """``_ask`` returned a batch of the wrong type, shape, dtype or device: the base class refused
    it, the optimizer did not raise (so the host says which of the two it was)."""


def _fitness_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps comparisons of close fitness values exact; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


class Optimizer:
    """Base class of a minimising, population-based black-box optimizer.

    Constructed as ``Cls(dim, bounds=(lo, hi), popsize=P, seed=s, device=..., dtype=...,
    **hyper)``. The host then loops ``z = opt.ask(); opt.tell(fitness(z))``.

    Subclasses set the class attributes below and implement ``_ask``, ``_tell`` and, if
    they hold state beyond ``self.generator``, ``_state``/``_load_state``.
    """

    name: ClassVar[str] = ""
    """Registry name (``"de"``, ``"ng:NGOpt"``...); written into state dicts."""

    min_popsize: ClassVar[int] = 1
    """Smallest ``popsize`` the algorithm is defined for."""

    capabilities: ClassVar[frozenset[str]] = frozenset()
    """What the host may rely on; check these, not names. Known flags:

    ``"batched"``: one ``ask`` proposes the whole population (one batched model call).
    ``"device_resident"``: ask/tell run as torch ops on ``device``, no host round-trip.
    ``"exact_resume"``: ``load_state_dict(state_dict())`` continues bit-identically.
    ``"pickle_state"``: the state dict contains pickled bytes of a third-party object;
    such checkpoints may only be loaded from trusted (your own) run directories.
    ``"shrinking_population"``: ``ask`` may return fewer than ``popsize`` rows.
    """

    def __init__(
        self,
        dim: int,
        *,
        bounds: Any,
        popsize: int = 32,
        seed: int | None = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int):
            raise TypeError(f"dim must be an int >= 1 (got {type(dim).__name__})")
        if dim < 1:
            raise ValueError(f"dim must be >= 1 (got {dim})")
        if isinstance(popsize, bool) or not isinstance(popsize, int):
            raise TypeError(f"popsize must be an int (got {type(popsize).__name__})")
        if popsize < self.min_popsize:
            raise ValueError(
                f"popsize must be >= {self.min_popsize} for {self.name or type(self).__name__}"
                f" (got {popsize})"
            )
        if seed is None:
            seed = secrets.randbits(63)  # recorded, so the run can still be replayed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None (got {seed!r})")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype such as torch.float32 (got {dtype!r})")

        self.dim = dim
        self.popsize = popsize
        self.seed = seed
        self.device = torch.device(device)
        self.dtype = dtype
        self.fitness_dtype = _fitness_dtype(self.device)
        self.lower, self.upper = self._normalise_bounds(bounds)

        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

        self._pending: Tensor | None = None
        self._best_z: Tensor | None = None
        self._best_f: Tensor | None = None
        self._evaluations = 0
        self._generation = 0

    # ------------------------------------------------------------------ validation
    def _normalise_bounds(self, bounds: Any) -> tuple[Tensor, Tensor]:
        if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
            raise ValueError("bounds must be a pair (lower, upper) of floats or of Tensors[dim]")
        out = []
        for which, b in zip(("lower", "upper"), bounds):
            t = torch.as_tensor(b, dtype=torch.float64).detach().cpu()
            if t.ndim == 0:
                t = t.expand(self.dim)
            if t.shape != (self.dim,):
                raise ValueError(f"{which} bound must be a float or a Tensor of shape [{self.dim}] (got shape {list(t.shape)})")
            if not torch.isfinite(t).all():
                raise ValueError(f"{which} bound must be finite everywhere (got {t[~torch.isfinite(t)][0].item()})")
            out.append(t.to(self.dtype))
        lo, hi = out
        bad = ~(lo < hi)  # compared after the cast to dtype: that is what ask() must respect
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"bounds need lower < upper in every dimension (dim {i}: {lo[i].item()} >= {hi[i].item()})")
        return lo.to(self.device), hi.to(self.device)

    # ------------------------------------------------------------------ public API
    def ask(self) -> Tensor:
        """Propose the next batch. Called once per generation, before evaluation.

        Returns ``Tensor[n, dim]`` on ``device`` with every entry inside the bounds;
        ``n == popsize`` unless the optimizer has the ``"shrinking_population"``
        capability. Each ``ask`` must be answered by exactly one ``tell``.
        """
        if self._pending is not None:
            raise RuntimeError("ask() called twice without tell(); tell() the fitness of the last batch first")
        z = self._ask()
        self._check_batch(z)
        self._pending = z
        return z

    def _check_batch(self, z: Any) -> None:
        """What ``_ask`` returned, checked on its metadata only (no host sync): a wrong shape or
        dtype would otherwise surface deep in the host's evaluation, or not at all. Whether the
        values are finite and inside the bounds is the host's check, once per generation."""
        where = f"{type(self).__name__}._ask returned"
        if not isinstance(z, Tensor):
            raise BatchError(f"{where} a {type(z).__name__}, expected a torch.Tensor [n, {self.dim}]")
        shrinking = "shrinking_population" in self.capabilities
        n = z.shape[0] if z.ndim == 2 else 0
        if z.ndim != 2 or z.shape[1] != self.dim or not (1 <= n <= self.popsize if shrinking else n == self.popsize):
            rows = "n <= popsize" if shrinking else f"n = popsize = {self.popsize}"
            raise BatchError(f"{where} shape {list(z.shape)}, expected [n, {self.dim}] with {rows}")
        on_device = z.device.type == self.device.type and self.device.index in (None, z.device.index)
        if z.dtype != self.dtype or not on_device:
            raise BatchError(f"{where} {str(z.dtype).removeprefix('torch.')} on {z.device}, expected "
                               f"{str(self.dtype).removeprefix('torch.')} on {self.device} (self.dtype, self.device)")

    def tell(self, fitness: Any) -> None:
        """Report the fitness (lower is better) of the batch from the last ``ask``.

        Called once per generation, after the host evaluated every row of the batch.
        ``fitness``: Tensor[n] (any device, any real dtype) or a sequence of floats;
        NaN, +inf and -inf all count as +inf: a non-finite value is a failed evaluation, which
        never wins (a kept -inf would be a best that nothing can beat, for the rest of the run).
        """
        if self._pending is None:
            raise RuntimeError("tell() without a pending ask(); call ask() first and tell its fitness once")
        z = self._pending
        if not isinstance(fitness, Tensor):
            fitness = torch.as_tensor(fitness)
        if fitness.is_complex() or fitness.dtype == torch.bool:
            raise TypeError(f"fitness must be a real-valued Tensor (got dtype {fitness.dtype})")
        if fitness.shape != (z.shape[0],):
            raise ValueError(f"fitness must have shape [{z.shape[0]}] matching the last ask() (got {list(fitness.shape)})")
        f = fitness.detach().to(device=self.device, dtype=self.fitness_dtype)
        f = torch.nan_to_num(f, nan=math.inf, posinf=math.inf, neginf=math.inf)

        self._tell(z, f)

        # Best-so-far without a host sync: torch.where keeps it device resident.
        i = torch.argmin(f)
        f_min = f[i]
        if self._best_f is None:
            self._best_z, self._best_f = z[i].clone(), f_min.clone()
        else:
            better = f_min < self._best_f
            self._best_z = torch.where(better, z[i], self._best_z)
            self._best_f = torch.where(better, f_min, self._best_f)
        self._evaluations += z.shape[0]
        self._generation += 1
        self._pending = None

    @property
    def best(self) -> tuple[Tensor | None, float]:
        """``(z_best, f_best)`` over everything told so far; ``(None, inf)`` before the first tell."""
        if self._best_f is None:
            return None, math.inf
        return self._best_z, float(self._best_f)

    @property
    def evaluations(self) -> int:
        """Number of fitness values told so far."""
        return self._evaluations

    @property
    def generation(self) -> int:
        """Number of completed ask/tell rounds."""
        return self._generation

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly. Called by the host when checkpointing.

        May be called between generations or between an ``ask`` and its ``tell``.
        Values are tensors (on CPU), ints, floats, strings, bytes and one nested dict
        ``"impl"`` with the subclass' own state.
        """
        cpu = lambda t: None if t is None else t.detach().cpu().clone()  # noqa: E731
        return {
            "format": STATE_FORMAT,
            "optimizer": self.name,
            "dim": self.dim,
            "popsize": self.popsize,
            "seed": self.seed,
            "generation": self._generation,
            "evaluations": self._evaluations,
            "best_z": cpu(self._best_z),
            "best_f": math.inf if self._best_f is None else float(self._best_f),
            "has_best": self._best_f is not None,
            "pending": cpu(self._pending),
            "generator": self.generator.get_state(),
            "impl": self._state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`. Called by the host on resume, on a fresh
        object built with the same constructor arguments, before any ``ask``."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state dict format must be {STATE_FORMAT} (got {state.get('format')!r})")
        if state.get("optimizer") != self.name:
            raise ValueError(f"state dict was written by optimizer {state.get('optimizer')!r}, not {self.name!r}")
        if state.get("dim") != self.dim:
            raise ValueError(f"state dict has dim {state.get('dim')}, this optimizer has dim {self.dim}")
        if "popsize" in state and state["popsize"] != self.popsize:
            raise ValueError(f"state dict has popsize {state['popsize']}, this optimizer has popsize {self.popsize}; "
                             "build it with the popsize the state was saved with")
        dev = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        self._generation = int(state["generation"])
        self._evaluations = int(state["evaluations"])
        if state["has_best"]:
            self._best_z = dev(state["best_z"]).to(self.dtype)
            self._best_f = torch.tensor(state["best_f"], dtype=self.fitness_dtype, device=self.device)
        else:
            self._best_z = self._best_f = None
        self._pending = dev(state["pending"])
        self.generator.set_state(state["generator"])
        self._load_state(state["impl"])

    # ------------------------------------------------------------------ subclass hooks
    def _ask(self) -> Tensor:
        """Return the next batch ``Tensor[n, dim]`` (dtype, device, inside bounds).

        Called by :meth:`ask` once per generation; never twice without a ``_tell``.
        """
        raise NotImplementedError

    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        """Learn from ``fitness`` (``Tensor[n]``, ``fitness_dtype`` on device, NaN and -inf
        already +inf) of the batch ``z`` returned by the last ``_ask``. Called by :meth:`tell`."""
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        """Subclass state for :meth:`state_dict` (the generator is saved by the base)."""
        return {}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of :meth:`_state`; called by :meth:`load_state_dict`."""

    # ------------------------------------------------------------------ helpers
    def _uniform(self, n: int) -> Tensor:
        """``n`` points uniform in the bounds, drawn from ``self.generator``."""
        r = torch.rand(n, self.dim, generator=self.generator, device=self.device, dtype=self.dtype)
        z = self.lower + r * (self.upper - self.lower)
        # Guard against round-off only (lo + r*(hi-lo) can land one ulp past hi).
        return torch.minimum(torch.maximum(z, self.lower), self.upper)

    def _check_x0(self, x0: Any) -> Tensor | None:
        """Validate an optional start point; returns it on device/dtype or None."""
        if x0 is None:
            return None
        t = torch.as_tensor(x0).detach().to(device=self.device, dtype=self.dtype).reshape(-1)
        if t.shape != (self.dim,):
            raise ValueError(f"x0 must have {self.dim} elements (got shape {list(torch.as_tensor(x0).shape)})")
        if not torch.isfinite(t).all() or (t < self.lower).any() or (t > self.upper).any():
            raise ValueError("x0 must be finite and inside the bounds (lower <= x0 <= upper)")
        return t

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(dim={self.dim}, popsize={self.popsize}, seed={self.seed}, "
                f"device={str(self.device)!r}, generation={self._generation})")


def run_arguments(cls: type, x0: Any, evaluations: int) -> dict[str, Any]:
    """What a run passes an optimizer only if its constructor names it: the start point ``x0`` and
    the evaluation budget (``budget``: Nevergrad picks its algorithm by it; ``max_evaluations``: DE's
    population-size reduction plans over it). One rule for the host and the conformance kit."""
    accepted = inspect.signature(cls).parameters
    offered = {"x0": x0, "budget": evaluations, "max_evaluations": evaluations}
    return {name: value for name, value in offered.items() if name in accepted}
