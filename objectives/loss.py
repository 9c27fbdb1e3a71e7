"""Losses between predicted dimension scores and a target country's published scores.

The reported objective is L1 = mean absolute difference over the six dimensions (the
reference paper's L1 loss), computed batched so a whole population is scored at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from .errors import ObjectivesError

__all__ = ["ENTROPY_PENALTY", "L1_DESCRIPTION", "MASS_PENALTY", "abs_errors", "answer_entropy", "entropy_penalty",
           "l1_description", "l1_loss", "mass_penalty", "shift_penalty"]

_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def l1_description(n_dimensions: int) -> str:
    """What an L1 number means, for a scorer of ``n_dimensions`` (a plugin's survey need not have six)."""
    count = _COUNTS[n_dimensions] if n_dimensions < len(_COUNTS) else str(n_dimensions)
    return f"L1 = mean absolute difference over the {count} dimension{'' if n_dimensions == 1 else 's'}"


L1_DESCRIPTION = l1_description(6)
"""VSM13's: its six dimensions."""

MASS_PENALTY = 1000.0
"""L1 points per unit of option mass below the floor: 10 per percentage point."""

ENTROPY_PENALTY = 300.0
"""L1 points per unit of mean answer entropy above the cap: 3 per 0.01."""


def _align(scores: torch.Tensor, target: torch.Tensor | Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float tensors [..., D] and [D]. A mapping {dimension: score} (Target.scores) is
    refused: the loss has no dimension order to line it up with the scores' columns."""
    if isinstance(target, Mapping) or isinstance(scores, Mapping):
        which = "target" if isinstance(target, Mapping) else "scores"
        raise ObjectivesError(f"loss {which} must be a tensor or sequence of scores in the scorer's dimension order, "
                              f"not a dict; pass target.scores_tensor(scorer.dimensions)")
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


def answer_entropy(probs: torch.Tensor, n_options: torch.Tensor) -> torch.Tensor:
    """How undecided the answers are, ``[P, Q, O]`` -> ``[P]``: the mean over items of each item's
    entropy over its options divided by its maximum, log(options). 0: one option takes all the
    probability (a respondent who picks an answer); 1: every option equally likely.

    The answers are read off renormalised option probabilities, so a prompt can move the item
    means towards the middle of the scale by making the model indifferent between the options;
    this says how far that went. ``n_options`` ``[Q]``: each item's number of options.
    """
    if probs.dim() != 3 or n_options.shape != probs.shape[1:2]:
        raise ObjectivesError(f"answer_entropy needs probs [P, Q, O] and n_options [Q], got "
                              f"{tuple(probs.shape)} and {tuple(n_options.shape)}")
    per_item = -torch.special.xlogy(probs, probs).sum(-1) / n_options.to(probs).log()
    return per_item.mean(-1)


def entropy_penalty(entropy: torch.Tensor, cap: float) -> torch.Tensor:
    """Penalty ``[P]`` for candidates whose mean answer entropy ``[P]`` (see answer_entropy) is above
    ``cap``: keeps the aligned answers about as decided as the bare model's, so the scores cannot
    be moved by making every answer a near-uniform guess. Continuous, like mass_penalty."""
    return ENTROPY_PENALTY * (entropy - cap).clamp_min(0)


def shift_penalty(means: torch.Tensor, bare_means: torch.Tensor, weight: float) -> torch.Tensor:
    """Penalty ``[P]``: ``weight`` L1 points per answer point the item means ``[P, Q]`` move, on
    average over the items, from the bare model's ``[Q]``. Asks the search for the prompt that
    reaches the target while changing the answers least, so that what it changes is what the
    target needs and not a shift that another wording of the same items would not share."""
    return weight * (means - bare_means).abs().mean(dim=-1)
