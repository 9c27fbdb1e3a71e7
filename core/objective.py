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

    def __init__(self, evaluator: SoftPromptEvaluator, scorer, target) -> None:
        self.evaluator = evaluator
        self.scorer = scorer
        self.target = target
        self.dimensions = tuple(scorer.dimensions)
        self.target_scores = target.scores_tensor(self.dimensions, device=evaluator.backend.device)

    def __call__(self, soft: torch.Tensor | None) -> SurveyResult:
        answers = self.evaluator.evaluate(soft)
        scores = self.scorer.score(answers.expected)
        return SurveyResult(l1_loss(scores, self.target_scores), scores, answers)
