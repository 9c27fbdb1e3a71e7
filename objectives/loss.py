"""Losses between predicted dimension scores and a target country's published scores.

The reported objective is L1 = mean absolute difference over the six dimensions (the
reference paper's L1 loss), computed batched so a whole population is scored at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import ObjectivesError

__all__ = ["L1_DESCRIPTION", "MASS_PENALTY", "abs_errors", "l1_loss", "mass_penalty"]

L1_DESCRIPTION = "L1 = mean absolute difference over the six dimensions"

MASS_PENALTY = 1000.0
"""L1 points per unit of option mass below the floor: 10 per percentage point."""


def _align(scores: torch.Tensor, target: torch.Tensor | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(scores, torch.Tensor):
        scores = torch.as_tensor(scores, dtype=torch.float32)
    if not scores.is_floating_point():
        scores = scores.to(torch.float32)
    target_t = torch.as_tensor(target).to(device=scores.device, dtype=scores.dtype)
    if target_t.dim() != 1 or scores.dim() == 0 or scores.shape[-1] != target_t.shape[0]:
        raise ObjectivesError(
            f"loss needs scores [..., D] and target [D] with the same D, got {tuple(scores.shape)} and {tuple(target_t.shape)}"
        )
    return scores, target_t


def abs_errors(scores: torch.Tensor, target: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Per-dimension absolute errors ``|scores - target|``, shape ``[..., D]``."""
    scores, target_t = _align(scores, target)
    return (scores - target_t).abs()


def l1_loss(scores: torch.Tensor, target: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """Mean absolute difference over the D dimensions: ``[..., D]`` -> ``[...]``."""
    return abs_errors(scores, target).mean(dim=-1)


def mass_penalty(mass: torch.Tensor, floor: float) -> torch.Tensor:
    """Penalty ``[P]`` for candidates whose option mass ``[P, Q]`` averages below ``floor``.

    The option mass is the share of the model's next-token probability on the answer digits.
    The answers are renormalised over the options, so a search can lower the loss with prompts
    after which the model barely answers at all; a floor keeps the answers answers. Steep (10 L1
    points per percentage point short) but continuous, so the search is led back above it.
    """
    return MASS_PENALTY * (floor - mass.mean(dim=-1)).clamp_min(0)
