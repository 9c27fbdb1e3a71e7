"""Built-in optimizers: batched torch DE, pycma CMA-ES, any Nevergrad optimizer, random search."""

import promptopt
from promptopt.optimizers import CMAES, DifferentialEvolution, RandomSearch, make_nevergrad


@promptopt.hookimpl
def promptopt_register_optimizers(register):
    register("de", DifferentialEvolution, description="batched, device-resident Differential Evolution")
    register("cma", CMAES, description="CMA-ES (pycma), whole population per ask")
    register("ng:*", make_nevergrad, description="any Nevergrad optimizer, e.g. ng:TwoPointsDE, ng:NGOpt")
    register("random", RandomSearch, description="uniform random search in the bounds (the floor)")
