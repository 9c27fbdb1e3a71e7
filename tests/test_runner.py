"""The run loop: what it asks of the evaluator."""

from __future__ import annotations

import math

from promptopt.config import build_config
from promptopt.evaluator import SoftPromptEvaluator
from promptopt.host import PluginHost
from promptopt.runner import run


def test_the_loop_skips_the_option_mass_and_the_baselines_and_final_prompt_keep_it(tmp_path, monkeypatch):
    calls = []
    real = SoftPromptEvaluator.evaluate
    monkeypatch.setattr(SoftPromptEvaluator, "evaluate",
                        lambda self, soft, mass=True: calls.append((soft is None, mass)) or real(self, soft, mass))
    summary = run(build_config(None, model="tiny", popsize=4, generations=3, seed=0, icl_baseline=True),
                  PluginHost(load_entrypoints=False), tmp_path / "run", progress=False, echo=lambda _: None)
    assert calls[:2] == [(True, True), (True, True)]          # naive, ICL: the bare model, with mass
    assert calls[2:-1] == [(False, False)] * 3                  # three generations: no mass
    assert calls[-1] == (False, True)                           # the best prompt re-scored, with mass
    assert 0 < summary["option_mass"] <= 1 and math.isfinite(summary["naive_option_mass"])
