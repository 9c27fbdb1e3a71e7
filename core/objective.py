"""Survey objective: soft prompts -> answer distributions -> dimension scores -> loss vs target."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch

from promptopt.objectives import answer_entropy, check_scorer_fits, entropy_penalty, l1_loss, mass_penalty, shift_penalty

from .config import PENALTY_SETTINGS
from .evaluator import AnswerDistribution, SoftPromptEvaluator, check_int


@dataclass
class SurveyResult:
    loss: torch.Tensor      # [P] L1: mean absolute difference over the dimensions
    scores: torch.Tensor    # [P, D]
    answers: AnswerDistribution
    fitness: torch.Tensor = None  # [P] what the optimizer minimises: loss + any penalties (default: loss)
    entropy: torch.Tensor = None  # [P] how undecided the answers are, 0-1 (objectives.answer_entropy)

    def __post_init__(self) -> None:
        if self.fitness is None:
            self.fitness = self.loss


def _check_setting(name: str, value: Any) -> None:
    """None (off) passes; otherwise a finite number in the range `promptopt run` allows for it
    (config.PENALTY_SETTINGS), so the Python API refuses what the CLI refuses, for the same reason."""
    if value is None:
        return
    ok, allowed = PENALTY_SETTINGS[name]
    allowed += ", or None for off"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {allowed} (got {type(value).__name__} {value!r:.60})")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{name} must be {allowed} (got {value})")


class SurveyObjective:
    """Everything between a population of soft prompts and its fitness, batched.

    ``respondents``: the prompts are that many blocks of one answer per item (simulated
    respondents, the two scale orders of --counterbalance, presentations), averaged item by item.
    ``min_mass`` / ``max_entropy``: penalised floor on the option mass, cap on the answer entropy."""

    def __init__(self, evaluator: SoftPromptEvaluator, scorer, target, respondents: int = 1,
                 min_mass: float | None = None, max_entropy: float | None = None,
                 shift_weight: float | None = None) -> None:
        respondents = check_int("respondents", respondents, 1, "the blocks of one answer per item the prompts hold")
        for name, value in (("min_mass", min_mass), ("max_entropy", max_entropy), ("shift_weight", shift_weight)):
            _check_setting(name, value)
        if not callable(getattr(target, "scores_tensor", None)):
            raise TypeError(f"target must be a Target, e.g. promptopt.objectives.resolve_target('US') or "
                            f"PluginHost().target('US') (got {type(target).__name__} {target!r:.60})")
        if evaluator.n_items % respondents:
            raise ValueError(f"{evaluator.n_items} prompts do not split into {respondents} respondents")
        self.evaluator = evaluator
        self.respondents = respondents
        self.min_mass = min_mass or None  # floor on the mean option mass (0 or None: none), see objectives.mass_penalty
        self.max_entropy = max_entropy    # cap on the mean answer entropy (None: none), see objectives.entropy_penalty
        self.shift_weight = shift_weight or None  # L1 points per answer point moved from the bare model's
        self._bare_means = None
        self.n_options = evaluator.option_mask.sum(-1)  # [R * Q]
        self.scorer = scorer
        self.target = target
        self.dimensions = tuple(scorer.dimensions)
        self.target_scores = target.scores_tensor(self.dimensions, device=evaluator.backend.device)
        check_scorer_fits(scorer, evaluator.n_items // respondents, evaluator.backend.device)

    def __call__(self, soft: torch.Tensor | None, mass: bool = True) -> SurveyResult:
        """``mass=False``: leave out the option mass (a diagnostic), as the optimisation loop does,
        unless a ``min_mass`` floor needs it for the fitness."""
        answers = self.evaluator.evaluate(soft, mass=mass or self.min_mass is not None)
        means = self._item_means(answers)
        scores = self.scorer.score(means)
        loss = l1_loss(scores, self.target_scores)
        entropy = answer_entropy(answers.probs, self.n_options)
        fitness = loss if self.min_mass is None else loss + mass_penalty(answers.mass, self.min_mass)
        if self.max_entropy is not None:
            fitness = fitness + entropy_penalty(entropy, self.max_entropy)
        if self.shift_weight is not None:
            if self._bare_means is None:   # a run's naive baseline (soft None) comes first and is them
                bare = means if soft is None else self._item_means(self.evaluator.evaluate(None, mass=False))
                self._bare_means = bare[0]
            fitness = fitness + shift_penalty(means, self._bare_means, self.shift_weight)
        return SurveyResult(loss, scores, answers, fitness, entropy)

    def _item_means(self, answers: AnswerDistribution) -> torch.Tensor:
        """Prompts are respondent-major: [P, R * Q] -> item means over respondents [P, Q]."""
        return answers.expected.view(answers.expected.shape[0], self.respondents, -1).mean(1)
