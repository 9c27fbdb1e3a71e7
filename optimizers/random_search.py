"""Uniform random search: the baseline every other optimizer must beat."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Optimizer

__all__ = ["RandomSearch"]


class RandomSearch(Optimizer):
    """Samples every batch uniformly in the bounds; ignores fitness.

    Hyper-parameters: ``x0`` (optional Tensor[dim]) is returned as the first row of the
    first batch, so the known starting point is always evaluated.
    """

    name = "random"
    min_popsize = 1
    capabilities = frozenset({"batched", "device_resident", "exact_resume"})

    def __init__(self, dim, *, bounds, popsize=32, seed=0, device="cpu", dtype=torch.float32, x0=None):
        super().__init__(dim, bounds=bounds, popsize=popsize, seed=seed, device=device, dtype=dtype)
        self.x0 = self._check_x0(x0)

    def _ask(self) -> Tensor:
        z = self._uniform(self.popsize)
        if self.x0 is not None and self.generation == 0:
            z[0] = self.x0
        return z

    def _tell(self, z: Tensor, fitness: Tensor) -> None:
        pass  # the base class tracks best-so-far; nothing to learn
