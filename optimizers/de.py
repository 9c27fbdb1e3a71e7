"""Differential Evolution, fully batched in torch on the optimizer's device.

One ``ask`` builds the whole trial population with a handful of tensor ops (no Python
loop over candidates), so on a GPU the optimizer never leaves the device and its cost
is negligible next to one forward pass of the language model.

Strategies (``strategy=``):

``"rand1bin"``  classic DE/rand/1/bin, fixed ``F``/``CR`` (Storn & Price 1997).
``"best1bin"``  DE/best/1/bin, fixed ``F``/``CR``.
``"jade"``      DE/current-to-pbest/1 + external archive, ``F``/``CR`` means adapted
               with learning rate ``c`` (Zhang & Sanderson 2009).
``"shade"``     current-to-pbest/1 + archive + success-history memory of ``F``/``CR``
               with improvement-weighted Lehmer means (Tanabe & Fukunaga 2013). Default:
               best median result on the benchmark in ``benchmarks/optimizers.py``.
               With ``lpsr=True`` it becomes L-SHADE (linear population size reduction).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor

from .base import Optimizer

__all__ = ["DifferentialEvolution", "STRATEGIES", "BOUND_HANDLING", "binomial_crossover", "sample_distinct"]

STRATEGIES = ("rand1bin", "best1bin", "jade", "shade")
BOUND_HANDLING = ("bounce_back", "resample")
_ADAPTIVE = ("jade", "shade")


def binomial_crossover(target: Tensor, mutant: Tensor, cr: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Binomial crossover of ``target``/``mutant`` ([n, dim]) with per-row rate ``cr`` [n].

    Returns ``(trial, mask)``; ``mask[i, j]`` is True where the trial takes the mutant's
    gene. One random gene per row (``jrand``) always comes from the mutant, so a trial
    never equals its target even at ``CR = 0``.
    """
    n, dim = target.shape
    u = torch.rand(n, dim, generator=generator, device=target.device, dtype=torch.float32)
    mask = u < cr.to(torch.float32)[:, None]
    jrand = torch.randint(0, dim, (n,), generator=generator, device=target.device)
    mask[torch.arange(n, device=target.device), jrand] = True
    return torch.where(mask, mutant, target), mask


def sample_distinct(n: int, excluded: list[Tensor], generator: torch.Generator, device: torch.device) -> Tensor:
    """Per row, one index uniform in ``[0, n)`` minus that row's ``excluded`` indices.

    ``excluded`` holds k index tensors [m]; in every row they must be distinct and < n.
    Draws from ``[0, n - k)`` then steps over the excluded indices in ascending order:
    uniform over the complement with no rejection loop.
    """
    m = excluded[0].shape[0]
    r = torch.randint(0, n - len(excluded), (m,), generator=generator, device=device)
    ex = torch.stack(excluded, 1).sort(1).values
    for k in range(ex.shape[1]):
        r = r + (r >= ex[:, k]).to(r.dtype)
    return r


class DifferentialEvolution(Optimizer):
    """Batched Differential Evolution (DE/rand/1/bin ... L-SHADE).

    The first ``ask`` returns the initial population (uniform in the bounds, row 0 =
    ``x0`` if given); every later ``ask`` returns one trial per population member, and
    ``tell`` replaces member ``i`` by trial ``i`` iff ``f_trial <= f_target``.

    Hyper-parameters (defaults in brackets):

    - ``strategy`` ["shade"]: one of ``STRATEGIES``.
    - ``F``, ``CR`` [None]: rand1bin/best1bin use them as fixed values (default 0.5 /
      0.9); jade/shade use them as the initial means of the adapted values (0.5 / 0.5).
    - ``p`` [0.11]: current-to-pbest picks among the best ``max(2, round(p*N))``.
    - ``archive_rate`` [1.0]: archive capacity = ``round(archive_rate * N)`` (jade/shade).
    - ``memory_size`` [6]: success-history size H (shade).
    - ``c`` [0.1]: learning rate of the F/CR means (jade).
    - ``lpsr`` [False], ``max_evaluations``, ``final_popsize`` [4]: linear population
      size reduction from ``popsize`` to ``final_popsize`` over ``max_evaluations``
      evaluations (counting the initial population). While it shrinks, ``ask`` returns
      fewer than ``popsize`` rows; the worst members are dropped.
    - ``bound_handling`` ["bounce_back"]: a mutant gene outside ``[lo, hi]`` becomes the
      midpoint of the violated bound and the target's gene (JADE/SHADE); ``"resample"``
      draws it uniformly in the bounds instead. Never clipping: clipping piles
      candidates onto the faces of the box.
    - ``x0`` [None]: Tensor[dim], put exactly into the initial population (row 0).
    """

    name = "de"
    min_popsize = 4
    capabilities = frozenset({"batched", "device_resident", "exact_resume", "shrinking_population"})

    def __init__(
        self,
        dim: int,
        *,
        bounds: Any,
        popsize: int = 50,
        seed: int | None = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        strategy: str = "shade",
        F: float | None = None,
        CR: float | None = None,
        p: float = 0.11,
        archive_rate: float = 1.0,
        memory_size: int = 6,
        c: float = 0.1,
        lpsr: bool = False,
        max_evaluations: int | None = None,
        final_popsize: int = 4,
        bound_handling: str = "bounce_back",
        x0: Any = None,
    ) -> None:
        super().__init__(dim, bounds=bounds, popsize=popsize, seed=seed, device=device, dtype=dtype)
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)} (got {strategy!r})")
        if bound_handling not in BOUND_HANDLING:
            raise ValueError(f"bound_handling must be one of {', '.join(BOUND_HANDLING)} (got {bound_handling!r})")
        adaptive = strategy in _ADAPTIVE
        F = 0.5 if F is None else F
        CR = (0.5 if adaptive else 0.9) if CR is None else CR
        if not (0.0 < F <= 2.0):
            raise ValueError(f"F must be in (0, 2] (got {F})")
        if not (0.0 <= CR <= 1.0):
            raise ValueError(f"CR must be in [0, 1] (got {CR})")
        if not (0.0 < p <= 1.0):
            raise ValueError(f"p must be in (0, 1] (got {p})")
        if not (archive_rate >= 0.0 and math.isfinite(archive_rate)):
            raise ValueError(f"archive_rate must be a finite number >= 0 (got {archive_rate})")
        if isinstance(memory_size, bool) or not isinstance(memory_size, int) or memory_size < 1:
            raise ValueError(f"memory_size must be an int >= 1 (got {memory_size!r})")
        if not (0.0 < c <= 1.0):
            raise ValueError(f"c must be in (0, 1] (got {c})")
        if lpsr:
            if max_evaluations is None or isinstance(max_evaluations, bool) or not isinstance(max_evaluations, int) or max_evaluations < popsize:
                raise ValueError(f"lpsr=True needs max_evaluations, an int >= popsize (got {max_evaluations!r})")
            if not (self.min_popsize <= final_popsize <= popsize):
                raise ValueError(f"final_popsize must be in [{self.min_popsize}, popsize={popsize}] (got {final_popsize})")

        self.strategy = strategy
        self.F, self.CR, self.p, self.c = float(F), float(CR), float(p), float(c)
        self.archive_rate = float(archive_rate)
        self.memory_size = memory_size
        self.lpsr, self.max_evaluations, self.final_popsize = bool(lpsr), max_evaluations, final_popsize
        self.bound_handling = bound_handling
        self.x0 = self._check_x0(x0)

        fd = dict(device=self.device, dtype=self.fitness_dtype)
        self._pop: Tensor | None = None  # [N, dim]; None until the initial population is told
        self._fit: Tensor | None = None  # [N]
        self._archive = torch.empty(0, dim, device=self.device, dtype=dtype)
        h = memory_size if strategy == "shade" else 1  # jade keeps one mean: a memory of size 1
        self._mem_F = torch.full((h,), self.F, **fd)
        self._mem_CR = torch.full((h,), self.CR, **fd)
        self._mem_k = 0
        self._trial_F: Tensor | None = None  # F/CR used for the pending trials
        self._trial_CR: Tensor | None = None

    # ------------------------------------------------------------------ read-only views
    @property
    def population(self) -> Tensor | None:
        """Current population [N, dim] (None before the initial population is told)."""
        return self._pop

    @property
    def population_fitness(self) -> Tensor | None:
        """Fitness [N] of :attr:`population`."""
        return self._fit

    @property
    def archive(self) -> Tensor:
        """External archive of replaced parents (jade/shade), [A, dim]."""
        return self._archive

    # ------------------------------------------------------------------ ask
    def _ask(self) -> Tensor:
        if self._pop is None:
            z = self._uniform(self.popsize)
            if self.x0 is not None:
                z[0] = self.x0
            return z
        F, CR = self._sample_parameters(self._pop.shape[0])
        v = self._mutate(F)
        v = self._repair(v, self._pop)
        u, _ = binomial_crossover(self._pop, v, CR, self.generator)
        self._trial_F, self._trial_CR = F, CR
        return u

    def _sample_parameters(self, n: int) -> tuple[Tensor, Tensor]:
        fd = dict(device=self.device, dtype=self.fitness_dtype)
        if self.strategy not in _ADAPTIVE:
            return torch.full((n,), self.F, **fd), torch.full((n,), self.CR, **fd)
        if self.strategy == "shade":
            r = torch.randint(0, self.memory_size, (n,), generator=self.generator, device=self.device)
            mu_F, mu_CR = self._mem_F[r], self._mem_CR[r]
        else:
            mu_F, mu_CR = self._mem_F.expand(n), self._mem_CR.expand(n)
        CR = (mu_CR + 0.1 * torch.randn(n, generator=self.generator, **fd)).clamp(0.0, 1.0)
        # F ~ Cauchy(mu_F, 0.1), redrawn where <= 0, truncated to 1 (JADE/SHADE).
        F = mu_F + torch.empty(n, **fd).cauchy_(0.0, 0.1, generator=self.generator)
        for _ in range(100):  # P(F <= 0) <= 1/2 per draw: ends after a few rounds
            bad = F <= 0
            if not bool(bad.any()):
                break
            F = torch.where(bad, mu_F + torch.empty(n, **fd).cauchy_(0.0, 0.1, generator=self.generator), F)
        F = torch.where(F <= 0, torch.full_like(F, 1e-3), F)  # unreachable in practice
        return F.clamp(max=1.0), CR

    def _mutate(self, F: Tensor) -> Tensor:
        pop, g, dev = self._pop, self.generator, self.device
        n = pop.shape[0]
        i = torch.arange(n, device=dev)
        Fd = F.to(self.dtype)[:, None]
        if self.strategy == "rand1bin":
            r1 = sample_distinct(n, [i], g, dev)
            r2 = sample_distinct(n, [i, r1], g, dev)
            r3 = sample_distinct(n, [i, r1, r2], g, dev)
            return pop[r1] + Fd * (pop[r2] - pop[r3])
        if self.strategy == "best1bin":
            best = torch.argmin(self._fit)
            r1 = sample_distinct(n, [i], g, dev)
            r2 = sample_distinct(n, [i, r1], g, dev)
            return pop[best] + Fd * (pop[r1] - pop[r2])
        # current-to-pbest/1 with archive: v = x + F (x_pbest - x) + F (x_r1 - x~_r2)
        m = min(n, max(2, round(self.p * n)))
        order = torch.sort(self._fit, stable=True).indices
        pbest = order[torch.randint(0, m, (n,), generator=g, device=dev)]
        r1 = sample_distinct(n, [i], g, dev)
        union = torch.cat([pop, self._archive]) if self._archive.shape[0] else pop
        r2 = sample_distinct(union.shape[0], [i, r1], g, dev)
        return pop + Fd * (pop[pbest] - pop) + Fd * (pop[r1] - union[r2])

    def _repair(self, v: Tensor, parent: Tensor) -> Tensor:
        lo, hi = self.lower, self.upper
        if self.bound_handling == "bounce_back":
            v = torch.where(v < lo, (lo + parent) / 2, v)
            return torch.where(v > hi, (hi + parent) / 2, v)
        out = (v < lo) | (v > hi)
        return torch.where(out, self._uniform(v.shape[0]), v)

    # ------------------------------------------------------------------ tell
    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        if self._pop is None:
            self._pop, self._fit = z.clone(), fitness.clone()
            return
        pop, fit = self._pop, self._fit
        replace = fitness <= fit  # per index; ties move the population across plateaus
        if self.strategy in _ADAPTIVE:
            better = fitness < fit
            self._adapt(better, fit - fitness)
            if self.archive_rate > 0:
                self._archive = self._truncate_archive(torch.cat([self._archive, pop[better]]), pop.shape[0])
        self._pop = torch.where(replace[:, None], z, pop)
        self._fit = torch.where(replace, fitness, fit)
        self._trial_F = self._trial_CR = None
        if self.lpsr:
            self._reduce_population(self.evaluations + z.shape[0])

    def _adapt(self, better: Tensor, delta: Tensor) -> None:
        SF, SCR, d = self._trial_F[better], self._trial_CR[better], delta[better]
        if SF.numel() == 0:
            return
        if self.strategy == "jade":
            lehmer = (SF * SF).sum() / SF.sum()
            self._mem_F = (1 - self.c) * self._mem_F + self.c * lehmer
            self._mem_CR = (1 - self.c) * self._mem_CR + self.c * SCR.mean()
            return
        # Improvement weights. Dividing by the largest improvement first makes them
        # exactly invariant to f -> a*f + b (a > 0) and immune to overflow; infinite
        # improvements (target was NaN/inf) share the weight equally.
        inf = torch.isinf(d)
        w = torch.where(inf.any(), inf.to(d.dtype), d / d.max())
        w = w / w.sum()
        k = self._mem_k
        self._mem_F[k] = (w * SF * SF).sum() / (w * SF).sum()
        self._mem_CR[k] = (w * SCR).sum()
        self._mem_k = (k + 1) % self.memory_size

    def _truncate_archive(self, archive: Tensor, n: int) -> Tensor:
        cap = round(self.archive_rate * n)
        if archive.shape[0] <= cap:
            return archive
        keep = torch.randperm(archive.shape[0], generator=self.generator, device=self.device)[:cap]
        return archive[keep]

    def _reduce_population(self, evaluations: int) -> None:
        frac = min(1.0, evaluations / self.max_evaluations)
        target = max(self.final_popsize, round(self.popsize + (self.final_popsize - self.popsize) * frac))
        n = self._pop.shape[0]
        if target >= n:
            return
        keep = torch.sort(torch.sort(self._fit, stable=True).indices[:target]).values  # best, in old order
        self._pop, self._fit = self._pop[keep], self._fit[keep]
        if self.strategy in _ADAPTIVE:
            self._archive = self._truncate_archive(self._archive, target)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        cpu = lambda t: None if t is None else t.detach().cpu().clone()  # noqa: E731
        return {
            "strategy": self.strategy,
            "pop": cpu(self._pop),
            "fit": cpu(self._fit),
            "archive": cpu(self._archive),
            "mem_F": cpu(self._mem_F),
            "mem_CR": cpu(self._mem_CR),
            "mem_k": self._mem_k,
            "trial_F": cpu(self._trial_F),
            "trial_CR": cpu(self._trial_CR),
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        if state["strategy"] != self.strategy:
            raise ValueError(f"state dict uses strategy {state['strategy']!r}, this optimizer {self.strategy!r}")
        dev = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        self._pop, self._fit = dev(state["pop"]), dev(state["fit"])
        self._archive = dev(state["archive"])
        self._mem_F, self._mem_CR = dev(state["mem_F"]), dev(state["mem_CR"])
        self._mem_k = int(state["mem_k"])
        self._trial_F, self._trial_CR = dev(state["trial_F"]), dev(state["trial_CR"])
