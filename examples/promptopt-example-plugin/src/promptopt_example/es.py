"""A (1+lambda) evolution strategy, as a promptopt optimizer.

Each generation samples ``popsize`` children around one parent with a Gaussian step of
width ``sigma * (upper - lower)``, clipped to the bounds. The best child replaces the parent
if it is better; the step grows after a success and shrinks otherwise (a one-fifth-style
rule: at a success rate of about 1/5 the step stays constant on average).

All state lives in torch tensors on the optimizer's device, so ask/tell never sync with
the host, and ``state_dict``/``load_state_dict`` resume bit-identically.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import Tensor

from promptopt.optimizers import Optimizer

__all__ = ["OnePlusLambdaES"]


class OnePlusLambdaES(Optimizer):
    """(1+lambda)-ES with a success-based step size.

    Hyper-parameters: ``sigma0`` initial step as a fraction of the bounds' width (0.1),
    ``grow`` factor applied after a successful generation (1.5; after a failure the step is
    divided by ``grow ** 0.25``), ``x0`` optional start point (the host passes the soft
    prompt's natural start; it becomes the first parent's candidate).
    """

    name = "es"
    min_popsize = 1
    capabilities = frozenset({"batched", "device_resident", "exact_resume"})

    def __init__(self, dim, *, bounds, popsize=16, seed=0, device="cpu", dtype=torch.float32,
                 sigma0: float = 0.1, grow: float = 1.5, x0=None):
        super().__init__(dim, bounds=bounds, popsize=popsize, seed=seed, device=device, dtype=dtype)
        if not (isinstance(sigma0, (int, float)) and 0 < sigma0 <= 1):
            raise ValueError(f"sigma0 must be in (0, 1] (got {sigma0!r})")
        if not (isinstance(grow, (int, float)) and grow > 1):
            raise ValueError(f"grow must be > 1 (got {grow!r})")
        self.sigma0, self.grow = float(sigma0), float(grow)
        self.x0 = self._check_x0(x0)
        self.sigma = torch.tensor(self.sigma0, dtype=self.fitness_dtype, device=self.device)
        self.parent: Tensor | None = None
        self.parent_f = torch.tensor(math.inf, dtype=self.fitness_dtype, device=self.device)

    def _ask(self) -> Tensor:
        if self.parent is None:  # first generation: spread out, the start point included
            z = self._uniform(self.popsize)
            if self.x0 is not None:
                z[0] = self.x0
            return z
        noise = torch.randn(self.popsize, self.dim, generator=self.generator, device=self.device, dtype=self.dtype)
        step = self.sigma.to(self.dtype) * (self.upper - self.lower)
        return torch.minimum(torch.maximum(self.parent + noise * step, self.lower), self.upper)

    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        i = torch.argmin(fitness)
        if self.parent is None:
            self.parent, self.parent_f = z[i].clone(), fitness[i].clone()
            return
        better = fitness[i] < self.parent_f
        self.parent = torch.where(better, z[i], self.parent)
        self.parent_f = torch.where(better, fitness[i], self.parent_f)
        factor = torch.where(better, torch.tensor(self.grow, dtype=self.sigma.dtype, device=self.device),
                             torch.tensor(self.grow ** -0.25, dtype=self.sigma.dtype, device=self.device))
        self.sigma = (self.sigma * factor).clamp(1e-8, 1.0)

    def _state(self) -> dict[str, Any]:
        return {"parent": None if self.parent is None else self.parent.detach().cpu().clone(),
                "parent_f": float(self.parent_f), "sigma": float(self.sigma)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        parent = state["parent"]
        self.parent = None if parent is None else parent.to(device=self.device, dtype=self.dtype)
        self.parent_f = torch.tensor(state["parent_f"], dtype=self.fitness_dtype, device=self.device)
        self.sigma = torch.tensor(state["sigma"], dtype=self.fitness_dtype, device=self.device)
