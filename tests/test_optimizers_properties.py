"""Property tests (hypothesis) of the optimizer layer; the invariant is in each test name."""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptopt.optimizers import DifferentialEvolution, RandomSearch, STRATEGIES
from promptopt.optimizers.de import binomial_crossover, crossover_mask, sample_distinct
from promptopt.testing import assert_same_trajectory, run_trajectory

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GRID = 2.0 ** -10


def quantised_sphere(z: torch.Tensor) -> torch.Tensor:
    """Sphere rounded to a 2^-10 grid (values < 2^8): then f -> a*f + b with a a power of
    two and b a multiple of the grid is exact in float64, so invariance can be tested
    with torch.equal instead of a tolerance that could hide a real dependence on scale."""
    shift = torch.linspace(-0.4, 0.9, z.shape[1], dtype=torch.float64)
    return torch.round((z.double() - shift).pow(2).sum(1) / GRID) * GRID


strategy_st = st.sampled_from(STRATEGIES)


@FAST
@given(strategy=strategy_st, bound_handling=st.sampled_from(["bounce_back", "resample"]),
       dim=st.integers(1, 9), popsize=st.integers(4, 10), seed=st.integers(0, 2**31),
       lo=st.floats(-100, 100), width=st.floats(1e-3, 1e3), lpsr=st.booleans())
def test_every_asked_point_lies_in_the_bounds(strategy, bound_handling, dim, popsize, seed, lo, width, lpsr):
    hi = lo + width
    kw = {"lpsr": True, "max_evaluations": popsize * 6} if lpsr else {}
    opt = DifferentialEvolution(dim, bounds=(lo, hi), popsize=popsize, seed=seed, strategy=strategy,
                                bound_handling=bound_handling, **kw)
    far = torch.full((dim,), hi + 10 * width, dtype=torch.float64)  # optimum outside: pushes at the bound
    for _ in range(8):
        z = opt.ask()
        assert (z >= opt.lower).all() and (z <= opt.upper).all()
        opt.tell((z.double() - far).pow(2).sum(1))


@FAST
@given(dim=st.integers(1, 9), popsize=st.integers(4, 10), seed=st.integers(0, 2**31), lo=st.floats(-100, 100),
       width=st.floats(1e-3, 1e3), radius=st.floats(0.01, 1.0), where=st.lists(st.floats(0, 1), min_size=9, max_size=9),
       use_x0=st.booleans())
def test_initial_population_lies_in_the_bounds_within_init_radius_of_x0(dim, popsize, seed, lo, width, radius, where,
                                                                         use_x0):
    hi = lo + width
    x0 = torch.tensor([lo + w * width for w in where[:dim]], dtype=torch.float64).clamp(lo, hi)
    opt = DifferentialEvolution(dim, bounds=(lo, hi), popsize=popsize, seed=seed, init_radius=radius,
                                x0=x0 if use_x0 else None, dtype=torch.float64)
    z = opt.ask()
    centre = x0 if use_x0 else torch.full((dim,), lo + width / 2, dtype=torch.float64)
    assert ((z >= lo) & (z <= hi)).all()
    assert ((z - centre).abs() <= radius * width * (1 + 1e-9)).all()
    if use_x0:
        assert torch.equal(z[0], x0)
    # uniform in the box's share of the bounds: not piled onto a face (ties have probability 0)
    assert all(len(set(z[int(use_x0):, j].tolist())) == popsize - int(use_x0) for j in range(dim))


@FAST
@given(strategy=strategy_st, seed=st.integers(0, 2**31))
def test_same_seed_same_trajectory(strategy, seed):
    make = lambda: DifferentialEvolution(5, bounds=(-2.0, 2.0), popsize=6, seed=seed, strategy=strategy)  # noqa: E731
    assert_same_trajectory(run_trajectory(make(), 8, quantised_sphere), run_trajectory(make(), 8, quantised_sphere))


@FAST
@given(strategy=strategy_st, seed=st.integers(0, 2**31), split=st.integers(0, 6), lpsr=st.booleans(),
       pending=st.booleans())
def test_state_dict_round_trip_mid_run_gives_identical_continuation(strategy, seed, split, lpsr, pending):
    kw = dict(bounds=(-2.0, 2.0), popsize=8, seed=seed, strategy=strategy)
    if lpsr:
        kw.update(lpsr=True, max_evaluations=80)
    ref = DifferentialEvolution(4, **kw)
    run_trajectory(ref, split, quantised_sphere)
    z = ref.ask() if pending else None
    state = ref.state_dict()
    fresh = DifferentialEvolution(4, **kw)
    fresh.load_state_dict(state)
    if pending:
        ref.tell(quantised_sphere(z))
        fresh.tell(quantised_sphere(z))
    assert_same_trajectory(run_trajectory(ref, 5, quantised_sphere), run_trajectory(fresh, 5, quantised_sphere))
    assert ref.best[1] == fresh.best[1] and torch.equal(ref.best[0], fresh.best[0])


@FAST
@given(strategy=strategy_st, seed=st.integers(0, 2**31), fseed=st.integers(0, 2**31), nan_rate=st.floats(0, 0.5))
def test_de_per_index_selection_never_makes_any_member_worse(strategy, seed, fseed, nan_rate):
    opt = DifferentialEvolution(3, bounds=(-1.0, 1.0), popsize=6, seed=seed, strategy=strategy)
    g = torch.Generator().manual_seed(fseed)
    z = opt.ask()
    opt.tell(torch.rand(6, generator=g, dtype=torch.float64))
    for _ in range(8):
        pop, fit = opt.population.clone(), opt.population_fitness.clone()
        u = opt.ask()
        f = torch.rand(u.shape[0], generator=g, dtype=torch.float64)  # arbitrary fitness
        f[torch.rand(u.shape[0], generator=g) < nan_rate] = math.nan
        opt.tell(f)
        new_pop, new_fit = opt.population, opt.population_fitness
        assert (new_fit <= fit).all()  # member i never gets worse
        f_inf = torch.nan_to_num(f, nan=math.inf)
        for i in range(6):  # member i is its old self or exactly trial i, never another row
            took = bool(f_inf[i] <= fit[i])
            assert torch.equal(new_pop[i], u[i] if took else pop[i])
            assert new_fit[i] == (f_inf[i] if took else fit[i])


@FAST
@given(cls_kw=st.sampled_from([(DifferentialEvolution, {"strategy": s}) for s in STRATEGIES] + [(RandomSearch, {})]),
       seed=st.integers(0, 2**31), values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True)),
                                                     min_size=30, max_size=30))
def test_best_so_far_never_increases(cls_kw, seed, values):
    cls, kw = cls_kw
    opt = cls(2, bounds=(-1.0, 1.0), popsize=5, seed=seed, **kw)
    prev = math.inf
    for g in range(6):
        opt.ask()
        f = torch.tensor(values[5 * g: 5 * g + 5], dtype=torch.float64)
        opt.tell(f)
        best = opt.best[1]
        assert not math.isnan(best) and best <= prev
        prev = best
    finite = [v for v in values if math.isfinite(v)]  # nan and -inf count as +inf
    assert prev == (min(finite) if finite else math.inf)


MONOTONE = {
    # strictly increasing *in floating point* on the quantised grid: slope >= 1 keeps grid
    # neighbours (2^-10 apart) at least 2^-10 apart, far above the rounding error of g.
    "cubic": lambda f: f ** 3 + f,
    "exp_then_shift": lambda f: torch.exp(f / 64) * 64 + 3 * f,
}


@FAST
@given(strategy=st.sampled_from(["rand1bin", "best1bin"]), g_name=st.sampled_from(sorted(MONOTONE)),
       seed=st.integers(0, 2**31), lpsr=st.booleans())
def test_classic_strategies_are_comparison_based_invariant_under_strictly_increasing_transform(strategy, g_name, seed,
                                                                                               lpsr):
    g = MONOTONE[g_name]
    kw = dict(bounds=(-2.0, 2.0), popsize=7, seed=seed, strategy=strategy)
    if lpsr:
        kw.update(lpsr=True, max_evaluations=70)
    a = run_trajectory(DifferentialEvolution(4, **kw), 10, quantised_sphere)
    b = run_trajectory(DifferentialEvolution(4, **kw), 10, lambda z: g(quantised_sphere(z)))
    assert_same_trajectory(a, b)


@FAST
@given(strategy=st.sampled_from(["jade", "shade"]), log2a=st.integers(-4, 4), b_steps=st.integers(-2**12, 2**12),
       seed=st.integers(0, 2**31))
def test_adaptive_strategies_invariant_under_positive_affine_transform(strategy, log2a, b_steps, seed):
    # a a power of two and b on the fitness grid make a*f + b exact (see quantised_sphere),
    # so the trajectories must be bit-identical, not merely close.
    a, b = 2.0 ** log2a, b_steps * GRID
    kw = dict(bounds=(-2.0, 2.0), popsize=7, seed=seed, strategy=strategy)
    t1 = run_trajectory(DifferentialEvolution(4, **kw), 10, quantised_sphere)
    t2 = run_trajectory(DifferentialEvolution(4, **kw), 10, lambda z: a * quantised_sphere(z) + b)
    assert_same_trajectory(t1, t2)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), dim=st.integers(1, 40), seed=st.integers(0, 2**31),
       crs=st.lists(st.sampled_from([0.0, 1e-6, 0.1, 0.5, 0.9, 1.0]), min_size=12, max_size=12),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_crossover_always_keeps_at_least_one_gene_of_the_mutant(n, dim, seed, crs, dtype):
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(n, dim, generator=gen, dtype=dtype) * 1e3
    mutant = torch.randn(n, dim, generator=gen, dtype=dtype) * 1e-3
    cr = torch.tensor(crs[:n], dtype=torch.float64)
    trial, mask = binomial_crossover(target, mutant, cr, gen)
    assert mask.any(1).all()  # jrand: every row takes >= 1 mutant gene
    assert torch.equal(trial[mask], mutant[mask]) and torch.equal(trial[~mask], target[~mask])  # exact blend
    assert (mask.sum(1)[cr == 0] == 1).all()  # CR = 0: exactly the jrand gene
    assert mask[cr == 1].all()


def test_crossover_always_keeps_at_least_one_gene_of_the_mutant_inside_de():
    opt = DifferentialEvolution(30, bounds=(-1.0, 1.0), popsize=10, seed=3, strategy="rand1bin", CR=0.0)
    run_trajectory(opt, 1)
    for _ in range(5):
        pop = opt.population.clone()
        u = opt.ask()
        assert ((u != pop).sum(1) == 1).all()  # CR = 0: exactly one (mutant) gene differs
        opt.tell(u.double().pow(2).sum(1))


def test_crossover_mask_rate_matches_cr():
    gen = torch.Generator().manual_seed(0)
    cr = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    m = crossover_mask(cr, 20000, gen)
    rate = m.mean(1).double()
    assert torch.allclose(rate, cr, atol=0.01)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 30), k=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_sample_distinct_never_returns_an_excluded_index(n, k, seed):
    gen = torch.Generator().manual_seed(seed)
    i = torch.arange(n)
    ex = [i]
    for _ in range(k):
        ex.append(sample_distinct(n, ex, gen, torch.device("cpu")))
    stacked = torch.stack(ex, 1)
    assert (stacked >= 0).all() and (stacked < n).all()
    assert all(len(set(row.tolist())) == len(row) for row in stacked)


def test_lpsr_shrinks_population_to_final_size():
    opt = DifferentialEvolution(3, bounds=(-1.0, 1.0), popsize=20, seed=0, lpsr=True, max_evaluations=400)
    sizes = []
    while opt.evaluations < 400:
        z = opt.ask()
        sizes.append(z.shape[0])
        opt.tell(z.double().pow(2).sum(1))
    assert sizes[0] == 20 and sizes == sorted(sizes, reverse=True) and sizes[-1] >= 4
    assert opt.population.shape[0] == 4


def test_lpsr_requires_max_evaluations():
    with pytest.raises(ValueError, match="lpsr=True needs max_evaluations"):
        DifferentialEvolution(3, bounds=(-1.0, 1.0), popsize=8, lpsr=True)
