"""Black-box optimizers behind one ask/tell contract (see :class:`Optimizer`).

``OPTIMIZERS`` maps the built-in names to classes; ``"ng:<Name>"`` names resolve to
Nevergrad optimizers through :func:`make_nevergrad`; :func:`get_optimizer` does both.
Nevergrad and pycma are imported only when such an optimizer is constructed.
"""

from __future__ import annotations

import difflib

from .base import BatchError, Optimizer, run_arguments
from .cma import CMAES
from .de import DifferentialEvolution, STRATEGIES
from .nevergrad import NevergradOptimizer, make_nevergrad, nevergrad_names
from .random_search import RandomSearch

__all__ = [
    "Optimizer", "BatchError", "DifferentialEvolution", "CMAES", "NevergradOptimizer", "RandomSearch",
    "OPTIMIZERS", "STRATEGIES", "make_nevergrad", "nevergrad_names", "get_optimizer", "run_arguments",
]

OPTIMIZERS: dict[str, type[Optimizer]] = {
    DifferentialEvolution.name: DifferentialEvolution,
    CMAES.name: CMAES,
    RandomSearch.name: RandomSearch,
}


def get_optimizer(name: str) -> type[Optimizer]:
    """Class for a registry name: a key of ``OPTIMIZERS`` or ``"ng:<Name>"``."""
    if isinstance(name, str) and name.startswith("ng:"):
        return make_nevergrad(name)
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    close = difflib.get_close_matches(str(name), list(OPTIMIZERS), n=3, cutoff=0.4)
    hint = f"did you mean {', '.join(map(repr, close))}?" if close else "use one of " + ", ".join(map(repr, OPTIMIZERS))
    raise ValueError(f"unknown optimizer {name!r}: {hint} (or 'ng:<Name>' for Nevergrad)")
