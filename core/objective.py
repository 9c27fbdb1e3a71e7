"""Survey objective: soft prompts -> answer distributions -> dimension scores -> loss vs target."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from promptopt.objectives import l1_loss

from .evaluator import AnswerDistribution, SoftPromptEvaluator


@dataclass
class SurveyResult:
    loss: torch.Tensor      # [P] L1: mean absolute difference over the dimensions
    scores: torch.Tensor    # [P, D]
    answers: AnswerDistribution


class SurveyObjective:
    """Everything between a population of soft prompts and its fitness, batched."""

    def __init__(self, evaluator: SoftPromptEvaluator, scorer, target, respondents: int = 1) -> None:
        if evaluator.n_items % respondents:
            raise ValueError(f"{evaluator.n_items} prompts do not split into {respondents} respondents")
        self.evaluator = evaluator
        self.respondents = respondents
        self.scorer = scorer
        self.target = target
        self.dimensions = tuple(scorer.dimensions)
        self.target_scores = target.scores_tensor(self.dimensions, device=evaluator.backend.device)

    def __call__(self, soft: torch.Tensor | None, mass: bool = True) -> SurveyResult:
        """``mass=False``: leave out the option mass (a diagnostic), as the optimisation loop does."""
        answers = self.evaluator.evaluate(soft, mass=mass)
        # prompts are respondent-major: [P, R * Q] -> item means over respondents [P, Q]
        means = answers.expected.view(answers.expected.shape[0], self.respondents, -1).mean(1)
        scores = self.scorer.score(means)
        return SurveyResult(l1_loss(scores, self.target_scores), scores, answers)
