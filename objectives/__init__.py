"""Objectives layer of promptopt: survey instruments, index scorers, target countries, losses.

Self-contained (plain Python, torch, pandas, pycountry); imports nothing from promptopt core.
"""

from .errors import (
    InstrumentError,
    MissingDimensionsError,
    ObjectivesError,
    ScorerError,
    TargetError,
    UnknownTargetError,
)
from .instrument import (
    BUILTIN_INSTRUMENTS,
    DEFAULT_ANSWER_INSTRUCTION,
    WORDINGS,
    AnswerScale,
    Block,
    Demographic,
    Instrument,
    Item,
    get_instrument,
    load_instrument,
    load_vsm13,
)
from .augment import WORD_DROPOUT, word_dropout
from .respondents import simulated_respondents
from .loss import (
    ENTROPY_PENALTY,
    L1_DESCRIPTION,
    l1_description,
    MASS_PENALTY,
    abs_errors,
    answer_entropy,
    entropy_penalty,
    l1_loss,
    mass_penalty,
    shift_penalty,
)
from .scorer import LinearScorer, check_scorer_fits, scorer_from_config, vsm13_scorer
from .targets import (
    DIMENSIONS,
    HOFSTEDE_2015_SOURCE,
    Target,
    TargetTable,
    hofstede_table,
    list_targets,
    load_estimates,
    load_hofstede_2015,
    resolve_target,
)

__all__ = [
    "ObjectivesError",
    "InstrumentError",
    "ScorerError",
    "TargetError",
    "UnknownTargetError",
    "MissingDimensionsError",
    "AnswerScale",
    "Block",
    "Demographic",
    "Item",
    "Instrument",
    "WORDINGS",
    "DEFAULT_ANSWER_INSTRUCTION",
    "BUILTIN_INSTRUMENTS",
    "load_instrument",
    "load_vsm13",
    "get_instrument",
    "LinearScorer",
    "check_scorer_fits",
    "scorer_from_config",
    "vsm13_scorer",
    "DIMENSIONS",
    "simulated_respondents",
    "WORD_DROPOUT",
    "word_dropout",
    "TargetTable",
    "hofstede_table",
    "HOFSTEDE_2015_SOURCE",
    "Target",
    "load_hofstede_2015",
    "load_estimates",
    "resolve_target",
    "list_targets",
    "L1_DESCRIPTION",
    "l1_description",
    "abs_errors",
    "answer_entropy",
    "entropy_penalty",
    "l1_loss",
    "mass_penalty",
    "shift_penalty",
    "ENTROPY_PENALTY",
    "MASS_PENALTY",
]
