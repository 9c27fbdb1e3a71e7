"""Losses between predicted dimension scores and a target country's published scores.

The reported objective is L1 = mean absolute difference over the six dimensions (the
reference paper's L1 loss), computed batched so a whole population is scored at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .errors import ObjectivesError

__all__ = ["L1_DESCRIPTION", "abs_errors", "l1_loss"]

L1_DESCRIPTION = "L1 = mean absolute difference over the six dimensions"


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
