"""CMA-ES through pycma (``cma.CMAEvolutionStrategy``), one whole population per ask.

pycma works in float64 numpy on the host; the batch is copied to ``device`` on ask.
Full covariance costs O(dim^2) memory and O(dim^3) per eigendecomposition: for
soft prompts (thousands of dims) pass ``options={"CMA_diagonal": True}``.
"""

from __future__ import annotations

import pickle
import warnings
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from .base import Optimizer

__all__ = ["CMAES"]


class _Randn:
    """pycma ``randn`` option backed by a private numpy Generator.

    pycma otherwise seeds and draws from the *global* numpy RNG (and treats seed 0 as
    "seed from the clock"); a private generator makes runs independent of other code,
    makes seed 0 an ordinary seed, and is pickled with the strategy for exact resume.
    """

    def __init__(self, seed: int) -> None:
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


def _import_cma():
    with warnings.catch_warnings():  # pycma warns when matplotlib is missing
        warnings.simplefilter("ignore")
        import cma
    return cma


class CMAES(Optimizer):
    """CMA-ES (pycma) with box bounds handled by pycma's ``BoundTransform``.

    Hyper-parameters: ``sigma0`` [0.3 * mean(hi - lo)] initial step size; ``x0``
    [centre of the box] initial mean; ``options`` [{}] extra pycma options (e.g.
    ``CMA_diagonal``). ``seed`` feeds a private numpy generator (see :class:`_Randn`),
    not pycma's ``seed`` option.

    State dicts hold the pickled pycma object (``"pickle_state"``): load them only from
    trusted run directories you wrote yourself.
    """

    name = "cma"
    min_popsize = 2
    capabilities = frozenset({"batched", "exact_resume", "pickle_state"})

    def __init__(self, dim, *, bounds, popsize=32, seed=0, device="cpu", dtype=torch.float32,
                 sigma0: float | None = None, x0: Any = None, options: Mapping[str, Any] | None = None):
        super().__init__(dim, bounds=bounds, popsize=popsize, seed=seed, device=device, dtype=dtype)
        cma = _import_cma()
        lo = self.lower.double().cpu().numpy()
        hi = self.upper.double().cpu().numpy()
        x0t = self._check_x0(x0)
        mean0 = (lo + hi) / 2 if x0t is None else x0t.double().cpu().numpy()
        if sigma0 is None:
            sigma0 = 0.3 * float(np.mean(hi - lo))
        if not (sigma0 > 0 and np.isfinite(sigma0)):
            raise ValueError(f"sigma0 must be a finite number > 0 (got {sigma0})")
        opts = {
            "popsize": popsize,
            "bounds": [lo.tolist(), hi.tolist()],
            "randn": _Randn(seed),
            "seed": float("nan"),  # nan: pycma leaves the global numpy RNG alone
            "verbose": -9,
            "verb_disp": 0,
            "verb_log": 0,
            "verb_filenameprefix": "",
            "tolfun": 0, "tolx": 0, "tolfunhist": 0, "tolstagnation": int(1e12),  # the host decides when to stop
        }
        opts.update(dict(options or {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.es = cma.CMAEvolutionStrategy(mean0, float(sigma0), opts)
        self._lo, self._hi = lo, hi
        self._solutions: list[np.ndarray] | None = None

    def _ask(self) -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._solutions = self.es.ask()
        x = np.asarray(self._solutions, dtype=np.float64)
        # BoundTransform already maps into [lo, hi] (0 of 50,000 coordinates outside in a
        # stress test with the optimum outside the box); the clip is a rounding guard.
        x = np.clip(x, self._lo, self._hi)
        z = torch.as_tensor(x).to(device=self.device, dtype=self.dtype)
        return torch.minimum(torch.maximum(z, self.lower), self.upper)

    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        f = fitness.detach().cpu().double().numpy()
        # pycma cannot rank inf; tell() made every non-finite value +inf, and a huge finite one keeps them last.
        f = np.where(np.isfinite(f), f, 1e300)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.es.tell(self._solutions, f.tolist())
        self._solutions = None

    def _state(self) -> dict[str, Any]:
        return {"pickle": pickle.dumps((self.es, self._solutions))}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.es, self._solutions = pickle.loads(state["pickle"])
