"""A run's live objects, built from its config: instrument, scorer and target checked to fit, the
objective on the loaded model, the soft-prompt space and the optimizer. The same on start, on resume
and on a Ray actor (distributed.py), so all three score alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from promptopt.objectives import (MissingDimensionsError, ScorerError, check_scorer_fits, simulated_respondents,
                                  word_dropout)
from promptopt.optimizers import run_arguments

from .config import RunConfig
from .errors import UsageError
from .evaluator import SoftPromptEvaluator
from .host import PluginHost
from .objective import SurveyObjective
from .softprompt import SoftPromptSpace, fittest_tokens, make_space, punctuation_ids
from .validation import check_hyper


@dataclass
class Session:
    """A run's live objects, rebuilt identically from the config on start and on resume."""

    backend: Any
    instrument: Any
    scorer: Any
    target: Any
    objective: SurveyObjective   # what the search minimises (with --augment's copies)
    space: SoftPromptSpace
    optimizer: Any
    plain: SurveyObjective   # the survey as asked: baselines and the result are scored on it


def check_survey(host: PluginHost, config: RunConfig):
    """Instrument, scorer and target of a config, checked to fit one another before any model loads
    (`validate` and `run` alike): the scorer scores the instrument's items, the target has a score
    for each of the scorer's dimensions."""
    instrument = host.create_instrument(config.instrument)
    scorer = host.create_scorer(instrument, config.scorer, config.constants or None)
    target = host.target(config.country, config.targets)
    try:
        check_scorer_fits(scorer, instrument.n_items)
        target.scores_tensor(tuple(scorer.dimensions))
    except MissingDimensionsError as exc:
        raise UsageError(f"target {exc}; give --targets a table that scores these dimensions, or an instrument "
                         f"and scorer that use the target's") from None
    except ScorerError as exc:
        raise UsageError(f"{exc} ({instrument.n_items} items in {instrument.name})") from None
    return instrument, scorer, target


def build_objective(host: PluginHost, config: RunConfig, backend, system_prompt: str | None = None,
                    wording: str = "main", train: bool = False):
    """Instrument, scorer, target and objective for a config, on an already loaded model; ``train``:
    the search's objective, with --augment's perturbed copies (everything else scores the survey as asked)."""
    instrument, scorer, target = check_survey(host, config)
    # blocks of one answer per item, averaged item by item: the scale as written and, counterbalanced,
    # reversed; augmented, word-dropped copies; then all of it once per simulated respondent
    orders = [False, True] if config.counterbalance else [False]
    prompts = [p for flip in orders for p in instrument.prompts(wording, reverse_scales=flip)]
    reversed_scales = [flip for flip in orders for _ in instrument.items]
    for copy in range(config.augment if train else 0):   # training only: perturbed copies of the wording (objectives.augment)
        prompts += instrument.prompts(wording, rewrite=word_dropout(f"{config.seed}:{copy}"))
        reversed_scales += [False] * instrument.n_items
    if config.respondents:
        personas = simulated_respondents(instrument, config.respondents, config.seed)
        prompts = [f"{persona}\n\n{prompt}" for persona in personas for prompt in prompts]
        reversed_scales = reversed_scales * config.respondents
    blocks = len(prompts) // instrument.n_items
    evaluator = SoftPromptEvaluator(backend, prompts, list(instrument.n_options) * blocks, position=config.position,
                                    system_prompt=system_prompt, batch_rows=config.batch_rows,
                                    reversed_scales=reversed_scales)
    try:
        objective = SurveyObjective(evaluator, scorer, target, respondents=blocks, min_mass=config.min_mass,
                                    max_entropy=config.max_entropy, shift_weight=config.shift_weight)
    except ValueError as exc:  # e.g. the target lacks one of the scorer's dimensions
        raise UsageError(str(exc)) from None
    return instrument, scorer, target, objective


def make_optimizer(host: PluginHost, config: RunConfig, space: SoftPromptSpace):
    cls = host.optimizer_class(config.optimizer)
    if config.popsize < getattr(cls, "min_popsize", 1):
        raise UsageError(f"--popsize must be >= {cls.min_popsize} for {config.optimizer} (got {config.popsize})")
    check_hyper(config.optimizer, cls, config.hyper)
    # the search starts at the initial soft prompt; check_hyper has refused these three in [hyper]
    hyper = {**run_arguments(cls, space.z0, config.total_evaluations), **config.hyper}
    try:
        return cls(space.dim, bounds=(space.lower, space.upper), popsize=config.popsize, seed=config.seed,
                   device=space.lower.device, **hyper)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"optimizer {config.optimizer}: {exc}") from None


def check_optimizer(host: PluginHost, config: RunConfig):
    """The run's optimizer built once on a stand-in space of the run's search dimension (direct search:
    8 values per token, the model's hidden size being unknown before it loads), so ``promptopt
    validate`` catches what the constructor refuses (F = 5, an unknown strategy) without a model."""
    dim = config.subspace or 8 * config.tokens
    ones = torch.ones(dim)
    stand_in = SoftPromptSpace("subspace", config.tokens, 1, torch.zeros(config.tokens, 1), -ones, ones,
                               torch.zeros(dim, config.tokens), [])
    return make_optimizer(host, config, stand_in)


def init_ids(backend, config: RunConfig, target, objective) -> list[int] | None:
    """Token ids x0 starts from: --init-text with {country} filled in, the fittest punctuation
    token (--init screen: one population scored before the search, not counted in its budget),
    or None: K random tokens."""
    if config.init_text is not None:
        return backend.encode(config.init_text.format(country=target.name))
    if config.init == "screen":
        return fittest_tokens(backend.embedding_matrix, punctuation_ids(backend.tokenizer), config.tokens,
                              lambda soft: objective(soft, mass=False).fitness)
    return None


def open_session(host: PluginHost, config: RunConfig, init_tokens: list[int] | None = None) -> Session:
    """``init_tokens``: x0's token ids when already known (a Ray actor gets the driver's, so it
    does not redo --init screen's scoring); else from the config (init_ids)."""
    backend = host.create_model(config.model, device=config.device, dtype=config.dtype)
    instrument, scorer, target, objective = build_objective(host, config, backend, config.system_prompt, train=True)
    plain = build_objective(host, config, backend, config.system_prompt)[3] if config.augment else objective
    if init_tokens is None:
        init_tokens = init_ids(backend, config, target, objective)
    try:
        space = make_space(backend.embedding_matrix, config.tokens, config.subspace, config.seed,
                           set(backend.tokenizer.all_special_ids), config.radius, init_tokens, config.basis)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Session(backend, instrument, scorer, target, objective, space, make_optimizer(host, config, space), plain)
