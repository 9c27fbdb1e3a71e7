"""The Python API refuses, at the public constructor or function, the bad input the CLI refuses:
one line saying what was wrong and what would be right, not a ZeroDivisionError, a torch error or a
silent truncation later."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from promptopt.evaluator import SoftPromptEvaluator
from promptopt.objective import SurveyObjective
from promptopt.objectives import (InstrumentError, LinearScorer, ObjectivesError, ScorerError, l1_loss,
                                  load_vsm13, resolve_target, vsm13_scorer)
from promptopt.optimizers.cma import CMAES
from promptopt.optimizers.de import DifferentialEvolution
from promptopt.optimizers.random_search import RandomSearch

QUESTION = "Yes (1) or no (2)?"


@pytest.fixture(scope="module")
def evaluator(tiny_backend):
    """24 two-option items: one block of VSM13's item count, so its scorer applies."""
    return SoftPromptEvaluator(tiny_backend, [QUESTION] * 24, [2] * 24)


@pytest.fixture(scope="module")
def target():
    return resolve_target("US")


# ------------------------------------------------------------------------------ SurveyObjective

@pytest.mark.parametrize("kwargs, error, message", [
    ({"respondents": 0}, ValueError, "respondents must be an int >= 1, the blocks of one answer per item the prompts hold (got 0)"),
    ({"respondents": True}, TypeError, "respondents must be an int >= 1, the blocks of one answer per item the prompts hold (got bool True)"),
    ({"respondents": 1.5}, TypeError, "respondents must be an int >= 1"),
    ({"min_mass": 5}, ValueError, "min_mass must be a share of probability in [0, 1), e.g. 0.1, or 0 for no floor, or None for off (got 5)"),
    ({"min_mass": 1.0}, ValueError, "min_mass must be a share of probability in [0, 1)"),
    ({"min_mass": -0.1}, ValueError, "min_mass must be a share of probability in [0, 1)"),
    ({"min_mass": math.nan}, ValueError, "min_mass must be a share of probability in [0, 1), e.g. 0.1, or 0 for no floor, or None for off (got nan)"),
    ({"min_mass": "0.1"}, TypeError, "min_mass must be a share of probability in [0, 1), e.g. 0.1, or 0 for no floor, or None for off (got str '0.1')"),
    ({"max_entropy": 0}, ValueError, "max_entropy must be in (0, 1], a share of the largest entropy, e.g. 0.6, or None for off (got 0)"),
    ({"shift_weight": -1}, ValueError, "shift_weight must be >= 0 L1 points per answer point, e.g. 5, or 0 for none, or None for off (got -1)"),
    ({"shift_weight": math.inf}, ValueError, "shift_weight must be >= 0 L1 points per answer point"),
])
def test_survey_objective_refuses_what_the_cli_refuses(evaluator, target, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SurveyObjective(evaluator, vsm13_scorer(), target, **kwargs)


def test_survey_objective_refuses_a_country_string_for_a_target(evaluator):
    with pytest.raises(TypeError, match=re.escape("target must be a Target, e.g. promptopt.objectives.resolve_target('US') "
                                                  "or PluginHost().target('US') (got str 'US')")):
        SurveyObjective(evaluator, vsm13_scorer(), "US")


def test_survey_objective_takes_the_values_the_cli_takes(evaluator, target):
    objective = SurveyObjective(evaluator, vsm13_scorer(), target, respondents=np.int64(1), min_mass=0,
                                max_entropy=1, shift_weight=0)
    assert (objective.respondents, objective.min_mass, objective.max_entropy, objective.shift_weight) == (1, None, 1, None)
    assert objective(None).loss.shape == (1,)


def test_survey_objective_refuses_a_scorer_built_for_another_item_count(tiny_backend, target):
    twelve = SoftPromptEvaluator(tiny_backend, [QUESTION] * 12, [2] * 12)
    with pytest.raises(ValueError, match=re.escape("scorer 'vsm13' cannot score 12 item means (ScorerError: scorer 'vsm13': means must have "
                                                   "last dimension 24")) as e:
        SurveyObjective(twelve, vsm13_scorer(), target)
    assert "give a scorer built for this instrument's 12 content items" in str(e.value)


class _OneColumnScorer:
    """A plugin scorer that names six dimensions and returns one score."""
    name = "one-column"
    dimensions = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")

    def score(self, means):
        return means.sum(-1, keepdim=True)


def test_survey_objective_refuses_a_scorer_whose_scores_miss_its_dimensions(evaluator, target):
    with pytest.raises(ValueError, match=re.escape("scorer 'one-column' turned means [1, 24] into scores [1, 1]; "
                                                   "it must give [1, 6], one per dimension ['PDI', ")):
        SurveyObjective(evaluator, _OneColumnScorer(), target)


# ------------------------------------------------------------------------------ SoftPromptEvaluator

@pytest.mark.parametrize("prompts, n_options, kwargs, error, message", [
    ([QUESTION], [0], {}, ValueError, "n_options[0] must be an int >= 2, the item's number of answer options (got 0)"),
    ([QUESTION, QUESTION], [2, 1], {}, ValueError, "n_options[1] must be an int >= 2, the item's number of answer options (got 1)"),
    ([QUESTION], [True], {}, TypeError, "n_options[0] must be an int >= 2, the item's number of answer options (got bool True)"),
    ([QUESTION], [2.5], {}, TypeError, "n_options[0] must be an int >= 2, the item's number of answer options (got float 2.5)"),
    ([QUESTION], 2, {}, TypeError, "n_options must be a list of int, one per item (got int 2)"),
    ("abc", [2, 2, 2], {}, TypeError, "prompts must be a list of str, one per item (got str 'abc')"),
    ([QUESTION, 7], [2, 2], {}, TypeError, "prompts must be a list of str, one per item (got int 7 among them)"),
    ([QUESTION], [2], {"batch_rows": -1}, ValueError,
     "batch_rows must be an int >= 1, the rows per forward; None sizes them by memory (got -1)"),
    ([QUESTION], [2], {"batch_rows": 0}, ValueError, "batch_rows must be an int >= 1"),
    ([QUESTION], [2], {"batch_rows": 4.0}, TypeError, "batch_rows must be an int >= 1, the rows per forward; "
                                                        "None sizes them by memory (got float 4.0)"),
    ([QUESTION, QUESTION], [2, 2], {"reversed_scales": [1, 0]}, TypeError,
     "reversed_scales must be a list of bool, True where the prompt numbers its scale the other way round "
     "(got int 1 among them)"),
    ([QUESTION], [2], {"reversed_scales": True}, TypeError, "reversed_scales must be a list of bool, one per item"),
    ([QUESTION, QUESTION], [2, 2], {"reversed_scales": [True]}, ValueError,
     "need one reversed_scales flag per prompt (2; got 1)"),
])
def test_evaluator_refuses_bad_items_and_counts(tiny_backend, prompts, n_options, kwargs, error, message):
    with pytest.raises(error, match=re.escape(message)):
        SoftPromptEvaluator(tiny_backend, prompts, n_options, **kwargs)


def test_evaluator_takes_tuples_and_numpy_counts(tiny_backend):
    ev = SoftPromptEvaluator(tiny_backend, (QUESTION, QUESTION), np.array([2, 3]), batch_rows=np.int64(2))
    assert ev.option_mask.sum(-1).tolist() == [2, 3] and ev.batch_rows == 2


def test_evaluator_takes_numpy_reversed_scale_flags(tiny_backend):
    ev = SoftPromptEvaluator(tiny_backend, (QUESTION, QUESTION), [3, 3], reversed_scales=np.array([True, False]))
    assert ev.option_values.tolist() == [[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]]


def test_evaluator_takes_a_numpy_soft_prompt_as_the_tensor_it_holds(tiny_backend, evaluator):
    gen = np.random.default_rng(0)
    soft = gen.standard_normal((3, 2, tiny_backend.hidden_size))   # float64, as numpy makes it
    from_numpy = evaluator.evaluate(soft)
    from_tensor = evaluator.evaluate(torch.as_tensor(soft, dtype=tiny_backend.dtype))
    assert from_numpy.expected.device == tiny_backend.device
    torch.testing.assert_close(from_numpy.probs, from_tensor.probs)
    torch.testing.assert_close(from_numpy.expected, from_tensor.expected)


def test_evaluator_numpy_soft_prompt_keeps_the_shape_check(tiny_backend, evaluator):
    with pytest.raises(ValueError, match=re.escape(f"soft prompts must be [P, K, {tiny_backend.hidden_size}], got [3, 2]")):
        evaluator.evaluate(np.zeros((3, 2)))


# ------------------------------------------------------------------------------ LinearScorer

@pytest.mark.parametrize("terms, item_numbers, message", [
    ({"A": [(1.0, 7.9)]}, [7], "scorer 'x': item 7.9 in A's term (1.0, 7.9) must be an int item number, e.g. 7"),
    ({"A": [(1.0, True)]}, [1], "scorer 'x': item True in A's term (1.0, True) must be an int item number, e.g. 7"),
    ({"A": [(1.0, "7")]}, [7], "scorer 'x': item '7' in A's term (1.0, '7') must be an int item number, e.g. 7"),
    ({"A": [(True, 7)]}, [7], "scorer 'x': weight True in A's term (True, 7) must be a number, e.g. 35"),
    ({"A": [("35", 7)]}, [7], "scorer 'x': weight '35' in A's term ('35', 7) must be a number, e.g. 35"),
    ({"A": [(1.0, 7)]}, [7.9], "scorer 'x': item number 7.9 in item_numbers must be an int, e.g. 7"),
    ({"A": [(1.0, 7)]}, [True, 7], "scorer 'x': item number True in item_numbers must be an int, e.g. 7"),
])
def test_scorer_refuses_non_integer_items_and_non_numeric_weights(terms, item_numbers, message):
    with pytest.raises(ScorerError, match=re.escape(message)):
        LinearScorer("x", ["A"], terms, {"A": 0.0}, item_numbers)


@pytest.mark.parametrize("constant", ["50", True])
def test_scorer_refuses_non_numeric_constants(constant):
    with pytest.raises(ScorerError, match=re.escape(f"scorer 'x': constant for A is {constant!r}; it must be a number")):
        LinearScorer("x", ["A"], {"A": [(1.0, 7)]}, {"A": constant}, [7])


def test_scorer_takes_numpy_numbers():
    scorer = LinearScorer("x", ["A"], {"A": [(np.float64(35), np.int64(7))]}, {"A": np.float32(50)}, [np.int64(7)])
    assert scorer.terms == {"A": ((35.0, 7),)} and scorer.item_numbers == (7,)
    assert scorer.score(torch.tensor([[2.0]])).tolist() == [[120.0]]


# ------------------------------------------------------------------------------ l1_loss

def test_l1_loss_refuses_a_scores_mapping_naming_the_fix(target):
    with pytest.raises(ObjectivesError, match=re.escape(
            "loss target must be a tensor or sequence of scores in the scorer's dimension order, not a dict; "
            "pass target.scores_tensor(scorer.dimensions)")):
        l1_loss(torch.zeros(2, 6), target.scores)


def test_l1_loss_takes_the_target_tensor_the_message_names(target):
    dims = vsm13_scorer().dimensions
    assert l1_loss(target.scores_tensor(dims)[None], target.scores_tensor(dims)).tolist() == [0.0]


# ------------------------------------------------------------------------------ Optimizer.tell

OPTIMIZERS = [(DifferentialEvolution, {}), (DifferentialEvolution, {"strategy": "shade"}), (RandomSearch, {}), (CMAES, {})]


@pytest.mark.parametrize("cls, kw", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_fitness_counts_as_the_worst_and_never_wins(cls, kw, bad):
    opt = cls(2, bounds=(-1.0, 1.0), popsize=6, seed=0, **kw)
    opt.ask()
    opt.tell(torch.full((6,), bad))
    assert opt.best[1] == math.inf      # a failed generation: nothing to keep yet
    z = opt.ask()
    f = (z.double() ** 2).sum(1)
    f[0] = bad
    opt.tell(f)
    assert opt.best[1] == f[1:].min().item()   # the finite ones, not -inf forever


# ------------------------------------------------------------------------------ Instrument.item

@pytest.mark.parametrize("number, shown", [("7", "str '7'"), (7.0, "float 7.0"), (True, "bool True")])
def test_instrument_item_refuses_a_non_int_number(number, shown):
    with pytest.raises(InstrumentError, match=re.escape(f"instrument 'vsm13': item number must be an int, e.g. 7 (got {shown})")):
        load_vsm13().item(number)


def test_instrument_item_takes_an_int_and_still_names_a_missing_one():
    inst = load_vsm13()
    assert inst.item(np.int64(7)).number == 7
    with pytest.raises(InstrumentError, match=re.escape("instrument 'vsm13' has no content item 99; items: [1, 2,")):
        inst.item(99)
