"""Every built-in optimizer passes the public conformance kit (promptopt.testing)."""

import pytest
import torch

from promptopt.optimizers import (CMAES, OPTIMIZERS, DifferentialEvolution, NevergradOptimizer, Optimizer, RandomSearch,
                                  get_optimizer, make_nevergrad)
from promptopt.testing import OptimizerConformance


class TestDEShade(OptimizerConformance):
    optimizer_class = DifferentialEvolution
    hyper = {"strategy": "shade"}


class TestDEJade(OptimizerConformance):
    optimizer_class = DifferentialEvolution
    hyper = {"strategy": "jade"}


class TestDERand1Bin(OptimizerConformance):
    optimizer_class = DifferentialEvolution
    hyper = {"strategy": "rand1bin"}


class TestDEBest1Bin(OptimizerConformance):
    optimizer_class = DifferentialEvolution
    hyper = {"strategy": "best1bin"}


class TestDELShadeResample(OptimizerConformance):
    optimizer_class = DifferentialEvolution
    hyper = {"strategy": "shade", "lpsr": True, "max_evaluations": 60, "bound_handling": "resample"}


class TestCMA(OptimizerConformance):
    optimizer_class = CMAES


class TestRandom(OptimizerConformance):
    optimizer_class = RandomSearch


class TestNevergradTwoPointsDE(OptimizerConformance):
    optimizer_class = make_nevergrad("ng:TwoPointsDE")


class TestNevergradNGOpt(OptimizerConformance):
    optimizer_class = NevergradOptimizer
    hyper = {"budget": 100_000}  # small budgets make NGOpt pick a metamodel that breaks on numpy 2
    dim = 12
    generations = 4


def test_registry_names():
    assert OPTIMIZERS == {"de": DifferentialEvolution, "cma": CMAES, "random": RandomSearch}
    for name, cls in OPTIMIZERS.items():
        assert cls.name == name and get_optimizer(name) is cls
    assert get_optimizer("ng:NGOpt") is NevergradOptimizer
    cls = get_optimizer("ng:TwoPointsDE")
    assert cls is make_nevergrad("ng:TwoPointsDE") and issubclass(cls, NevergradOptimizer)
    assert cls.name == "ng:TwoPointsDE"


def test_unknown_nevergrad_name_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean.*ng:TwoPointsDE"):
        make_nevergrad("ng:TwoPointDE")


def test_unknown_builtin_name_raises():
    with pytest.raises(ValueError, match="unknown optimizer 'dee'"):
        get_optimizer("dee")


def test_de_popsize_message():
    with pytest.raises(ValueError, match=r"^popsize must be >= 4 for de \(got 3\)$"):
        DifferentialEvolution(5, bounds=(-1.0, 1.0), popsize=3)


@pytest.mark.parametrize("name", ["de", "random", "cma", "ng:TwoPointsDE"])
def test_x0_is_evaluated_or_used(name):
    x0 = torch.linspace(-0.5, 0.5, 5)
    opt = get_optimizer(name)(5, bounds=(-1.0, 1.0), popsize=6, seed=0, x0=x0)
    z = opt.ask()
    if name in ("de", "random"):
        assert torch.equal(z[0], x0)  # exactly one member is the known point
    assert (z >= -1).all() and (z <= 1).all()


def test_x0_outside_bounds_rejected():
    with pytest.raises(ValueError, match="x0 must be finite and inside the bounds"):
        DifferentialEvolution(3, bounds=(-1.0, 1.0), popsize=5, x0=torch.tensor([0.0, 2.0, 0.0]))


def test_ngopt_checkpoint_refused_with_clear_error():
    opt = NevergradOptimizer(4, bounds=(-1.0, 1.0), popsize=4, seed=0)
    assert "exact_resume" not in opt.capabilities
    with pytest.raises(RuntimeError, match="cannot be checkpointed"):
        opt.state_dict()


@pytest.mark.parametrize("radius", [0.0, -0.5, 1.5, float("nan")])
def test_init_radius_outside_zero_to_one_rejected(radius):
    with pytest.raises(ValueError, match=r"init_radius must be in \(0, 1\]"):
        DifferentialEvolution(3, bounds=(-1.0, 1.0), popsize=5, init_radius=radius)


@pytest.mark.parametrize("name", [*sorted(OPTIMIZERS), "ng:TwoPointsDE"])
def test_every_seed_the_cli_accepts_is_reproducible(name):
    """--seed allows 0..2**63-1; numpy's RandomState (Nevergrad) takes only < 2**32 itself."""
    def first_batch(seed):
        return get_optimizer(name)(3, bounds=(-1.0, 1.0), popsize=6, seed=seed).ask()

    top = 2**63 - 1
    assert torch.equal(first_batch(top), first_batch(top))
    assert not torch.equal(first_batch(top), first_batch(top - 1))


def test_a_state_of_another_population_size_is_refused():
    saved = DifferentialEvolution(4, bounds=(-1.0, 1.0), popsize=6, seed=0)
    saved.ask()
    saved.tell(torch.rand(6))
    with pytest.raises(ValueError, match="state dict has popsize 6, this optimizer has popsize 8"):
        DifferentialEvolution(4, bounds=(-1.0, 1.0), popsize=8, seed=0).load_state_dict(saved.state_dict())


class _LeavesTheBoxFromX0(Optimizer):
    """Asks x0 scaled by 10: inside the bounds only when the host passes no x0."""
    name = "leaves-the-box"

    def __init__(self, dim, *, bounds, popsize=8, seed=0, device="cpu", x0=None, budget=None):
        super().__init__(dim, bounds=bounds, popsize=popsize, seed=seed, device=device)
        self.start = torch.zeros(dim) if x0 is None else torch.as_tensor(x0, dtype=torch.float32)
        self.budget = budget

    def _ask(self):
        return (self.start * 10).expand(self.popsize, -1).clone()

    def _tell(self, z, fitness):
        pass


class _KitOnTheBadOptimizer(OptimizerConformance):
    optimizer_class = _LeavesTheBoxFromX0


def test_the_kit_constructs_as_the_host_does_so_an_optimizer_that_misuses_x0_fails_it():
    kit = _KitOnTheBadOptimizer()
    assert kit.make().budget == kit.popsize * kit.generations   # the run's evaluation budget, as the host passes it
    with pytest.raises(AssertionError, match="ask\\(\\) left the bounds"):
        kit.test_ask_returns_right_shape_dtype_device_inside_bounds()
    with pytest.raises(AssertionError, match="starting from x0"):
        kit.test_ask_inside_bounds_from_an_x0_near_a_corner()
