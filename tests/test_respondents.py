"""Simulated respondents: seeded personas, item means averaged over them as the VSM prescribes."""

from __future__ import annotations

import torch

from conftest import invoke
from promptopt.evaluator import SoftPromptEvaluator
from promptopt.objective import SurveyObjective
from promptopt.objectives import load_vsm13, resolve_target, simulated_respondents, vsm13_scorer


def test_personas_are_seeded_and_cover_each_demographic_evenly():
    vsm = load_vsm13()
    a, b = simulated_respondents(vsm, 8, seed=1), simulated_respondents(vsm, 8, seed=1)
    assert a == b and a != simulated_respondents(vsm, 8, seed=2)
    assert sum("gender: female" in p for p in a) == 4 and sum("gender: male" in p for p in a) == 4
    assert len(set(a)) == 8 and all("nationality" not in p for p in a)


def test_item_means_are_averaged_over_respondents(tiny_backend):
    vsm = load_vsm13()
    personas = simulated_respondents(vsm, 2, seed=0)
    prompts = [f"{p}\n\n{q}" for p in personas for q in vsm.prompts()]
    target = resolve_target("US")
    joint = SurveyObjective(SoftPromptEvaluator(tiny_backend, prompts, [5] * 48), vsm13_scorer(), target, respondents=2)
    soft = torch.randn(3, 2, tiny_backend.hidden_size, generator=torch.Generator().manual_seed(0))
    result = joint(soft)
    per_person = [SoftPromptEvaluator(tiny_backend, prompts[r * 24:(r + 1) * 24], [5] * 24).evaluate(soft).expected
                  for r in range(2)]
    expected_scores = vsm13_scorer().score((per_person[0] + per_person[1]) / 2)
    assert torch.allclose(result.scores, expected_scores, atol=1e-4)
    assert result.loss.shape == (3,)


def test_run_with_respondents_and_bad_counts(tmp_path):
    code, _, err = invoke(["run", "--model", "tiny", "--popsize", "4", "--generations", "1", "--respondents", "2",
                           "--no-icl", "--quiet", "--out", str(tmp_path / "r")])
    assert code == 0, err
    code, _, err = invoke(["run", "--model", "tiny", "--respondents", "-1", "--quiet", "--out", str(tmp_path / "s")])
    assert code == 2 and "--respondents must be >= 0" in err


def test_validate_checks_a_config_file_without_loading_the_model(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('optimizer = "cma"\ncountry = "India"\npopsize = 8\n')
    code, out, err = invoke(["validate", str(good)])
    assert code == 0 and "ok" in out and "India" in out, err
    bad = tmp_path / "bad.toml"
    for text, needle in [('country = "Atlantis"', "Atlantis"), ('optimizer = "dee"', "unknown optimizer"),
                         ("popsize = 2", "--popsize must be >= 4"), ('colour = "red"', "unknown key 'colour'")]:
        bad.write_text(text)
        code, _, err = invoke(["validate", str(bad)])
        assert code == 2 and needle in err, (text, err)
