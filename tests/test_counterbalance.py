"""--counterbalance: every item also asked with its scale numbered the other way round, the two
answers mapped onto the instrument's scale and averaged, so answer-order bias cancels."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from conftest import invoke
from promptopt.evaluator import SoftPromptEvaluator
from promptopt.objectives import load_vsm13, vsm13_scorer

TINY = ["--model", "tiny", "--popsize", "4", "--generations", "2", "--no-icl", "--quiet"]


def test_a_reversed_scale_numbers_the_same_labels_the_other_way_round():
    vsm = load_vsm13()
    item = vsm.items[0]
    forward, backward = vsm.prompts()[0], vsm.prompts(reverse_scales=True)[0]
    labels = item.scale.labels
    assert f"1 = {labels[0]}" in forward and f"5 = {labels[-1]}" in forward
    assert f"1 = {labels[-1]}" in backward and f"5 = {labels[0]}" in backward
    assert backward.replace(item.scale.reversed().render(), item.scale.render()) == forward   # nothing else differs
    assert item.scale.reversed().reversed() == item.scale


def test_the_evaluator_reads_a_reversed_prompts_answer_on_the_instruments_scale(tiny_backend):
    prompts = load_vsm13().prompts()[:3]
    soft = torch.randn(2, 1, tiny_backend.hidden_size, generator=torch.Generator().manual_seed(0))
    plain = SoftPromptEvaluator(tiny_backend, prompts, [5] * 3).evaluate(soft)
    flipped = SoftPromptEvaluator(tiny_backend, prompts, [5] * 3, reversed_scales=[True, False, True]).evaluate(soft)
    torch.testing.assert_close(flipped.probs, plain.probs)            # the model's answers are what they were
    torch.testing.assert_close(flipped.expected[:, [0, 2]], 6 - plain.expected[:, [0, 2]])   # answer a means 6 - a
    torch.testing.assert_close(flipped.expected[:, 1], plain.expected[:, 1])
    with pytest.raises(ValueError, match="one reversed_scales flag per prompt"):
        SoftPromptEvaluator(tiny_backend, prompts, [5] * 3, reversed_scales=[True])


def test_a_counterbalanced_run_scores_the_mean_of_both_orders_and_writes_both_blocks(tmp_path, tiny_backend):
    out = tmp_path / "run"
    code, _, err = invoke(["run", *TINY, "--counterbalance", "--out", str(out)])
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["config"]["counterbalance"] is True
    # the naive loss by hand: the bare model on each order, the reversed answers mapped back, averaged
    vsm, scorer = load_vsm13(), vsm13_scorer()
    forward = SoftPromptEvaluator(tiny_backend, vsm.prompts(), [5] * 24).evaluate(None).expected
    backward = 6 - SoftPromptEvaluator(tiny_backend, vsm.prompts(reverse_scales=True), [5] * 24).evaluate(None).expected
    from promptopt.objectives import resolve_target
    target = resolve_target("US").scores_tensor(scorer.dimensions)
    naive = float((scorer.score((forward + backward) / 2) - target).abs().mean())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["naive_loss"] == pytest.approx(naive, abs=1e-4)
    answers = pd.read_csv(out / "best" / "item_answers.csv")
    assert list(answers["block"]) == [0] * 24 + [1] * 24 and list(answers["item"]) == list(range(1, 25)) * 2


def test_counterbalancing_and_respondents_combine_into_blocks_of_both_orders_per_respondent(tmp_path):
    out = tmp_path / "run"
    code, _, err = invoke(["run", *TINY, "--counterbalance", "--respondents", "2", "--out", str(out)])
    assert code == 0, err
    answers = pd.read_csv(out / "best" / "item_answers.csv")
    assert sorted(set(answers["block"])) == [0, 1, 2, 3] and len(answers) == 96
