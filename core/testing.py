"""Conformance kit for optimizers: pytest base classes that plugin authors subclass.

Usage, in your own test module::

    from promptopt.testing import OptimizerConformance

    class TestMyOptimizer(OptimizerConformance):
        optimizer_class = MyOptimizer
        hyper = {"my_param": 3}      # extra constructor keyword arguments

Every ``test_*`` method below then runs against ``MyOptimizer``. The base class name does
not start with ``Test``, so pytest only collects your subclasses. Each test is about the
contract of :class:`promptopt.optimizers.Optimizer`, not about optimisation quality.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import pytest
import torch

from promptopt.optimizers import Optimizer, run_arguments

__all__ = ["OptimizerConformance", "shifted_sphere", "run_trajectory", "assert_same_trajectory"]


def shifted_sphere(z: torch.Tensor) -> torch.Tensor:
    """Cheap deterministic objective (float64) whose optimum is off the box centre."""
    shift = torch.linspace(-0.7, 1.3, z.shape[1], dtype=torch.float64, device=z.device)
    return (z.double() - shift).pow(2).sum(1)


def run_trajectory(opt: Optimizer, generations: int, fitness=shifted_sphere) -> list[torch.Tensor]:
    """Run ``generations`` ask/tell rounds; return every asked batch (on CPU)."""
    out = []
    for _ in range(generations):
        z = opt.ask()
        out.append(z.detach().cpu().clone())
        opt.tell(fitness(z))
    return out


def assert_same_trajectory(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    """Bit-identical batches, generation by generation."""
    assert len(a) == len(b)
    for g, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape, f"generation {g}: shapes {list(x.shape)} != {list(y.shape)}"
        assert torch.equal(x, y), f"generation {g}: batches differ (max |diff| {(x - y).abs().max().item()})"


class OptimizerConformance:
    """Contract tests for one optimizer class. Subclass and set ``optimizer_class``."""

    optimizer_class: ClassVar[type[Optimizer]]
    hyper: ClassVar[dict[str, Any]] = {}
    """Extra constructor keyword arguments used by every test."""
    dim: ClassVar[int] = 6
    popsize: ClassVar[int] = 8
    generations: ClassVar[int] = 8
    """Rounds per trajectory; lower it for slow optimizers."""
    bounds: ClassVar[tuple[float, float]] = (-2.0, 3.0)

    def make(self, dim: int | None = None, popsize: int | None = None, seed: int = 0, **kw: Any) -> Optimizer:
        """Construct the optimizer under test as the host does (no ``dtype``: float32, the base's
        default; ``x0`` inside the bounds and the evaluation budget to a constructor that names
        them); keyword arguments override ``hyper``."""
        dim = self.dim if dim is None else dim
        popsize = self.popsize if popsize is None else popsize
        kw = {"bounds": self.bounds, "device": "cpu", **self.hyper, **kw}
        kw = {**run_arguments(self.optimizer_class, self.start_point(dim, kw["bounds"], 0.3),
                              popsize * self.generations), **kw}
        return self.optimizer_class(dim, popsize=popsize, seed=seed, **kw)

    @staticmethod
    def start_point(dim: int, bounds: Any, share: float) -> torch.Tensor | None:
        """x0 at ``share`` of the way from each lower bound to its upper one; None for bounds that
        are not a pair of numbers or tensors (the tests of bad arguments pass such)."""
        try:
            lo, hi = (torch.as_tensor(b, dtype=torch.float32).expand(dim) for b in bounds)
        except (TypeError, ValueError, RuntimeError):
            return None
        return lo + share * (hi - lo)

    # ------------------------------------------------------------------ declaration
    def test_declares_name_min_popsize_and_capabilities(self):
        cls = self.optimizer_class
        assert isinstance(cls.name, str) and cls.name, "set the class attribute `name` (registry name)"
        assert isinstance(cls.min_popsize, int) and cls.min_popsize >= 1
        assert isinstance(cls.capabilities, frozenset)
        assert all(isinstance(c, str) for c in cls.capabilities)

    # ------------------------------------------------------------------ ask
    def test_ask_returns_right_shape_dtype_device_inside_bounds(self):
        opt = self.make()
        shrinking = "shrinking_population" in opt.capabilities
        for _ in range(self.generations):
            z = opt.ask()
            assert isinstance(z, torch.Tensor)
            assert z.dtype == torch.float32 and z.device == torch.device("cpu")
            assert z.ndim == 2 and z.shape[1] == self.dim
            if shrinking:
                assert 1 <= z.shape[0] <= self.popsize
            else:
                assert z.shape[0] == self.popsize
            assert torch.isfinite(z).all()
            assert (z >= opt.lower).all() and (z <= opt.upper).all(), "ask() left the bounds"
            opt.tell(shifted_sphere(z))

    def test_ask_inside_per_dimension_tensor_bounds(self):
        lo = torch.linspace(-1.0, 0.5, self.dim)
        hi = lo + torch.linspace(0.01, 4.0, self.dim)
        opt = self.make(bounds=(lo, hi))
        assert torch.equal(opt.lower, lo) and torch.equal(opt.upper, hi)
        for _ in range(self.generations):
            z = opt.ask()
            assert (z >= lo).all() and (z <= hi).all(), "ask() left per-dimension bounds"
            opt.tell(shifted_sphere(z))

    def test_ask_inside_bounds_from_an_x0_near_a_corner(self):
        if "x0" not in inspect.signature(self.optimizer_class).parameters:
            pytest.skip("the constructor takes no x0")
        opt = self.make(x0=self.start_point(self.dim, self.bounds, 0.98))
        for _ in range(self.generations):
            z = opt.ask()
            assert (z >= opt.lower).all() and (z <= opt.upper).all(), "ask() left the bounds, starting from x0"
            opt.tell(shifted_sphere(z))

    def test_float64_dtype_is_respected(self):
        params = inspect.signature(self.optimizer_class).parameters
        if "dtype" not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            pytest.skip("the constructor takes no dtype (the host never passes one: float32)")
        opt = self.make(dtype=torch.float64)
        z = opt.ask()
        assert z.dtype == torch.float64
        opt.tell(shifted_sphere(z))

    # ------------------------------------------------------------------ misuse
    def test_tell_before_ask_raises(self):
        opt = self.make()
        with pytest.raises(RuntimeError):
            opt.tell(torch.zeros(self.popsize))

    def test_tell_twice_raises(self):
        opt = self.make()
        z = opt.ask()
        opt.tell(shifted_sphere(z))
        with pytest.raises(RuntimeError):
            opt.tell(shifted_sphere(z))

    def test_ask_twice_raises(self):
        opt = self.make()
        opt.ask()
        with pytest.raises(RuntimeError):
            opt.ask()

    @pytest.mark.parametrize("shape", ["short", "long", "column", "scalar"])
    def test_wrong_fitness_shape_raises(self, shape):
        opt = self.make()
        n = opt.ask().shape[0]
        bad = {"short": torch.zeros(n - 1), "long": torch.zeros(n + 1),
               "column": torch.zeros(n, 1), "scalar": torch.tensor(0.0)}[shape]
        with pytest.raises(ValueError):
            opt.tell(bad)
        opt.tell(torch.zeros(n))  # a rejected tell leaves the ask pending

    @pytest.mark.parametrize("kwargs", [{"dim": 0}, {"popsize": 0}, {"bounds": (1.0, 1.0)}, {"bounds": (2.0, -2.0)},
                                        {"bounds": (-math.inf, 1.0)}, {"bounds": (0.0, math.nan)}])
    def test_invalid_constructor_arguments_raise_value_error(self, kwargs):
        with pytest.raises(ValueError):
            self.make(**kwargs)

    def test_popsize_below_min_popsize_raises(self):
        m = self.optimizer_class.min_popsize
        if m <= 1:
            pytest.skip("min_popsize is 1")
        with pytest.raises(ValueError, match=f"popsize must be >= {m}"):
            self.make(popsize=m - 1)

    # ------------------------------------------------------------------ bookkeeping
    def test_best_is_none_inf_before_first_tell(self):
        opt = self.make()
        assert opt.best == (None, math.inf)
        assert opt.evaluations == 0 and opt.generation == 0

    def test_best_so_far_never_increases_and_counters_count(self):
        opt = self.make()
        seen, prev, evals = math.inf, math.inf, 0
        for g in range(self.generations):
            z = opt.ask()
            f = shifted_sphere(z)
            opt.tell(f)
            evals += z.shape[0]
            seen = min(seen, f.min().item())
            z_best, f_best = opt.best
            assert f_best <= prev and f_best == seen
            assert z_best.shape == (self.dim,)
            assert shifted_sphere(z_best[None])[0].item() == f_best
            assert opt.evaluations == evals and opt.generation == g + 1
            prev = f_best

    def test_fitness_any_float_dtype_and_sequence_accepted(self):
        opt = self.make()
        z = opt.ask()
        opt.tell(shifted_sphere(z).float())
        z = opt.ask()
        opt.tell(shifted_sphere(z).tolist())
        assert opt.generation == 2

    @pytest.mark.parametrize("failed", [math.nan, -math.inf, math.inf])
    def test_non_finite_fitness_counts_as_inf(self, failed):
        opt = self.make()
        z = opt.ask()
        opt.tell(torch.full((z.shape[0],), failed))
        assert opt.best[1] == math.inf
        for _ in range(self.generations - 1):
            z = opt.ask()
            f = shifted_sphere(z)
            f[::2] = failed
            opt.tell(f)
            assert not math.isnan(opt.best[1])
            assert (z >= opt.lower).all() and (z <= opt.upper).all()
        assert math.isfinite(opt.best[1])

    # ------------------------------------------------------------------ reproducibility
    def test_same_seed_same_trajectory(self):
        a = run_trajectory(self.make(seed=123), self.generations)
        b = run_trajectory(self.make(seed=123), self.generations)
        assert_same_trajectory(a, b)

    def test_different_seed_different_first_batch(self):
        a = run_trajectory(self.make(seed=1), 1)
        b = run_trajectory(self.make(seed=2), 1)
        assert not torch.equal(a[0], b[0])

    def test_does_not_touch_global_torch_rng(self):
        torch.manual_seed(0)
        before = torch.get_rng_state()
        run_trajectory(self.make(), 2)
        assert torch.equal(before, torch.get_rng_state())

    @pytest.mark.parametrize("pending", [False, True], ids=["between_generations", "between_ask_and_tell"])
    def test_state_dict_round_trip_continues_identically(self, pending):
        if "exact_resume" not in self.optimizer_class.capabilities:
            pytest.skip("optimizer does not declare exact_resume")
        half = max(1, self.generations // 2)
        ref = self.make(seed=7)
        run_trajectory(ref, half)
        if pending:
            z = ref.ask()
        state = ref.state_dict()
        fresh = self.make(seed=7)
        fresh.load_state_dict(state)
        assert fresh.evaluations == ref.evaluations and fresh.generation == ref.generation
        assert fresh.best[1] == ref.best[1]
        if pending:
            ref.tell(shifted_sphere(z))
            fresh.tell(shifted_sphere(z))
        assert_same_trajectory(run_trajectory(ref, half), run_trajectory(fresh, half))
        assert fresh.best[1] == ref.best[1]

    def test_state_dict_is_torch_saveable(self, tmp_path):
        if "exact_resume" not in self.optimizer_class.capabilities:
            pytest.skip("optimizer does not declare exact_resume")
        opt = self.make()
        run_trajectory(opt, 2)
        path = tmp_path / "opt.pt"
        torch.save(opt.state_dict(), path)
        state = torch.load(path, weights_only=False)
        fresh = self.make()
        fresh.load_state_dict(state)
        assert fresh.generation == 2

    def test_load_state_dict_rejects_other_dim(self):
        if "exact_resume" not in self.optimizer_class.capabilities:
            pytest.skip("optimizer does not declare exact_resume")
        opt = self.make()
        run_trajectory(opt, 1)
        other = self.make(dim=self.dim + 1)
        with pytest.raises(ValueError):
            other.load_state_dict(opt.state_dict())
