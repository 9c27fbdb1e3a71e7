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


def _blend(a: Tensor, b: Tensor, m: Tensor, out: Tensor | None = None) -> Tensor:
    """``a`` where ``m == 1`` else ``b``, for ``m`` in {0, 1}.

    ``torch.lerp(b, a, m)`` is exact at the end points (it evaluates ``a - (a-b)*(1-m)``
    for m >= 0.5), and on CPU several times faster than ``torch.where`` with a random
    boolean mask (branch mispredictions). The tests check the exactness.
    """
    return torch.lerp(b, a, m) if out is None else torch.lerp(b, a, m, out=out)


def crossover_mask(cr: Tensor, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                   out: Tensor | None = None) -> Tensor:
    """Binomial crossover mask [n, dim] with values in {0, 1} (1 = take the mutant gene).

    Gene j of row i is 1 with probability ``round(256 * cr[i]) / 256`` (8 random bits per
    gene: a quarter of the generator work of ``torch.rand``) and one random gene per row
    (``jrand``) is always 1, so a trial never equals its target even at ``CR = 0``.
    ``out``: optional preallocated [n, dim] tensor of ``dtype`` to write into.
    """
    n, dev = cr.shape[0], cr.device
    words = torch.randint(-(2**63), 2**63 - 1, (n, (dim + 7) // 8), generator=generator, device=dev, dtype=torch.int64)
    b = words.view(torch.uint8)[:, :dim]  # uniform integers 0..255
    m = b.to(dtype) if out is None else out.copy_(b)
    t = torch.round(cr.to(torch.float64) * 256).to(dtype)[:, None]
    m.neg_().add_(t).clamp_(0, 1)  # t - b > 0  <=>  b < t
    jrand = torch.randint(0, dim, (n,), generator=generator, device=dev)
    m[torch.arange(n, device=dev), jrand] = 1
    return m


def binomial_crossover(target: Tensor, mutant: Tensor, cr: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Binomial crossover of ``target``/``mutant`` ([n, dim]) with per-row rate ``cr`` [n].

    Returns ``(trial, mask)``, ``mask`` boolean: True where the trial took the mutant's
    gene; at least one such gene per row (see :func:`crossover_mask`).
    """
    m = crossover_mask(cr, target.shape[1], generator, target.dtype)
    return _blend(mutant, target, m), m.bool()


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
    - ``init_radius`` [1.0]: the initial population is uniform over the points of the bounds
      within ``init_radius`` x the bounds' width of ``x0`` (of the box's centre without one), per
      coordinate; 1 is the whole box. Below 1 the search starts near a start point worth keeping
      (``--init screen``).
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
        init_radius: float = 1.0,
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
        if not (0.0 < init_radius <= 1.0):
            raise ValueError(f"init_radius must be in (0, 1] (got {init_radius})")
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
        self.init_radius = float(init_radius)

        fd = dict(device=self.device, dtype=self.fitness_dtype)
        # Population and archive share one buffer: rows [0, n) are the population, rows
        # [n, n + archive_size) the archive, so "population + archive" is a view (no cat).
        self._buf: Tensor | None = None  # None until the initial population is told
        self._n = popsize
        self._archive_size = 0
        self._fit: Tensor | None = None  # [n]
        h = memory_size if strategy == "shade" else 1  # jade keeps one mean: a memory of size 1
        self._mem_F = torch.full((h,), self.F, **fd)
        self._mem_CR = torch.full((h,), self.CR, **fd)
        self._mem_k = 0
        self._trial_F: Tensor | None = None  # F/CR used for the pending trials
        self._trial_CR: Tensor | None = None

    def _archive_capacity(self, n: int) -> int:
        return round(self.archive_rate * n) if self.strategy in _ADAPTIVE else 0

    def _set_buffer(self, pop: Tensor, archive: Tensor) -> None:
        n = pop.shape[0]
        buf = torch.empty(n + self._archive_capacity(n), self.dim, device=self.device, dtype=self.dtype)
        buf[:n] = pop
        buf[n:n + archive.shape[0]] = archive
        self._buf, self._n, self._archive_size = buf, n, archive.shape[0]

    # ------------------------------------------------------------------ read-only views
    @property
    def population(self) -> Tensor | None:
        """Current population [N, dim] (None before the initial population is told)."""
        return None if self._buf is None else self._buf[: self._n]

    @property
    def population_fitness(self) -> Tensor | None:
        """Fitness [N] of :attr:`population`."""
        return self._fit

    @property
    def archive(self) -> Tensor:
        """External archive of replaced parents (jade/shade), [A, dim]."""
        if self._buf is None:
            return torch.empty(0, self.dim, device=self.device, dtype=self.dtype)
        return self._buf[self._n: self._n + self._archive_size]

    # ------------------------------------------------------------------ ask
    def _ask(self) -> Tensor:
        if self._buf is None:
            return self._initial_population()
        pop = self.population
        F, CR = self._sample_parameters(self._n)
        ws = self._workspace()
        u = self._mutate(pop, F, ws[0])  # fresh tensor: it is handed to the host
        m = crossover_mask(CR, self.dim, self.generator, self.dtype, out=ws[1])
        torch.lerp(pop, u, m, out=u)  # exact blend: torch.lerp returns end/start exactly at weight 1/0
        self._repair(u, pop, ws)  # only mutant genes can be outside: parents are inside
        self._trial_F, self._trial_CR = F, CR
        return u

    def _initial_population(self) -> Tensor:
        """Uniform in the bounds, or in their part within ``init_radius`` x their width of x0
        (uniform there too: no points piled on a face); row 0 is x0 exactly."""
        z = self._uniform(self.popsize)
        if self.init_radius < 1.0:
            centre = (self.lower + self.upper) / 2 if self.x0 is None else self.x0
            reach = self.init_radius * (self.upper - self.lower)
            lo, hi = torch.maximum(centre - reach, self.lower), torch.minimum(centre + reach, self.upper)
            z = torch.minimum(torch.maximum(lo + (z - self.lower) / (self.upper - self.lower) * (hi - lo), lo), hi)
        if self.x0 is not None:
            z[0] = self.x0
        return z

    def _workspace(self) -> tuple[Tensor, Tensor]:
        """Two scratch [n, dim] tensors reused across generations: on CPU, fresh large
        tensors cost page faults that dominate the arithmetic."""
        ws = getattr(self, "_ws", None)
        if ws is None or ws[0].shape[0] != self._n:
            ws = tuple(torch.empty(self._n, self.dim, device=self.device, dtype=self.dtype) for _ in range(2))
            self._ws = ws
        return ws

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

    def _mutate(self, pop: Tensor, F: Tensor, scratch: Tensor) -> Tensor:
        g, dev = self.generator, self.device
        n = pop.shape[0]
        i = torch.arange(n, device=dev)
        Fd = F.to(self.dtype)[:, None]
        sel = torch.index_select  # much faster than pop[idx] on CPU
        if self.strategy == "rand1bin":
            r1 = sample_distinct(n, [i], g, dev)
            r2 = sample_distinct(n, [i, r1], g, dev)
            r3 = sample_distinct(n, [i, r1, r2], g, dev)
            return sel(pop, 0, r2).sub_(sel(pop, 0, r3, out=scratch)).mul_(Fd).add_(sel(pop, 0, r1, out=scratch))
        if self.strategy == "best1bin":
            best = torch.argmin(self._fit).expand(n)
            r1 = sample_distinct(n, [i], g, dev)
            r2 = sample_distinct(n, [i, r1], g, dev)
            return sel(pop, 0, r1).sub_(sel(pop, 0, r2, out=scratch)).mul_(Fd).add_(sel(pop, 0, best, out=scratch))
        # current-to-pbest/1 with archive: v = x + F (x_pbest - x + x_r1 - x~_r2)
        m = min(n, max(2, round(self.p * n)))
        order = torch.sort(self._fit, stable=True).indices
        pbest = order[torch.randint(0, m, (n,), generator=g, device=dev)]
        r1 = sample_distinct(n, [i], g, dev)
        union = self._buf[: n + self._archive_size]
        r2 = sample_distinct(union.shape[0], [i, r1], g, dev)
        v = sel(pop, 0, pbest).sub_(pop).add_(sel(pop, 0, r1, out=scratch)).sub_(sel(union, 0, r2, out=scratch))
        return torch.addcmul(pop, v, Fd, out=v)

    def _repair(self, u: Tensor, parent: Tensor, ws: tuple[Tensor, Tensor]) -> None:
        """Bring trial ``u`` back into the bounds, in place."""
        c = torch.clamp(u, self.lower, self.upper, out=ws[0])
        k = torch.sub(u, c, out=ws[1]).sign_().abs_()  # 1 where u was outside, else 0 (no bool op)
        if self.bound_handling == "bounce_back":
            # c is the violated bound there; c + (parent - c)/2 lies in [bound, parent].
            torch.sub(parent, c, out=u)
            torch.addcmul(c, u, k, value=0.5, out=u)
        else:
            _blend(self._uniform(u.shape[0]), c, k, out=u)

    # ------------------------------------------------------------------ tell
    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        if self._buf is None:
            self._set_buffer(z, z[:0])
            self._fit = fitness.clone()
            return
        n, fit = self._n, self._fit
        replace = fitness <= fit  # per index; ties move the population across plateaus
        if self.strategy in _ADAPTIVE:
            better = fitness < fit
            self._adapt(better, fit - fitness)
            if self.archive_rate > 0:
                self._add_to_archive(torch.index_select(self._buf[:n], 0, better.nonzero().squeeze(1)))
        idx = replace.nonzero().squeeze(1)
        self._buf.index_copy_(0, idx, torch.index_select(z, 0, idx))
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

    def _add_to_archive(self, parents: Tensor) -> None:
        """Append replaced parents; when full, they overwrite random archive members
        (the JADE rule "remove random members until |A| <= capacity")."""
        n, cap, size, k = self._n, self._archive_capacity(self._n), self._archive_size, parents.shape[0]
        if k == 0 or cap == 0:
            return
        if k > cap:  # more new parents than room: keep a random subset of them
            parents = parents[torch.randperm(k, generator=self.generator, device=self.device)[:cap]]
            k = cap
        free = cap - size
        pos = torch.arange(size, size + min(k, free), device=self.device)
        if k > free:  # overwrite distinct random old members
            old = torch.randperm(size, generator=self.generator, device=self.device)[: k - free]
            pos = torch.cat([pos, old])
        self._buf.index_copy_(0, n + pos, parents)
        self._archive_size = min(cap, size + k)

    def _reduce_population(self, evaluations: int) -> None:
        frac = min(1.0, evaluations / self.max_evaluations)
        target = max(self.final_popsize, round(self.popsize + (self.final_popsize - self.popsize) * frac))
        if target >= self._n:
            return
        keep = torch.sort(torch.sort(self._fit, stable=True).indices[:target]).values  # best, in old order
        pop, archive = self.population[keep], self.archive
        cap = self._archive_capacity(target)
        if archive.shape[0] > cap:
            archive = archive[torch.randperm(archive.shape[0], generator=self.generator, device=self.device)[:cap]]
        self._fit = self._fit[keep]
        self._set_buffer(pop, archive)

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, Any]:
        cpu = lambda t: None if t is None else t.detach().cpu().clone()  # noqa: E731
        return {
            "strategy": self.strategy,
            "pop": cpu(self.population),
            "fit": cpu(self._fit),
            "archive": cpu(self.archive),
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
        if state["pop"] is None:
            self._buf, self._fit, self._archive_size, self._n = None, None, 0, self.popsize
        else:
            self._set_buffer(dev(state["pop"]), dev(state["archive"]))
            self._fit = dev(state["fit"])
        self._mem_F, self._mem_CR = dev(state["mem_F"]), dev(state["mem_CR"])
        self._mem_k = int(state["mem_k"])
        self._trial_F, self._trial_CR = dev(state["trial_F"]), dev(state["trial_CR"])
