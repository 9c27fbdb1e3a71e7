"""The run loop: what it asks of the evaluator."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from promptopt.config import build_config
from promptopt.evaluator import SoftPromptEvaluator
from promptopt.host import PluginHost
from promptopt.objective import SurveyObjective
from promptopt.optimizers import DifferentialEvolution
from promptopt.runner import run
from promptopt.session import build_objective


def test_without_a_floor_the_loop_skips_the_option_mass_and_the_baselines_and_final_prompt_keep_it(tmp_path, monkeypatch):
    calls = []
    real = SoftPromptEvaluator.evaluate
    monkeypatch.setattr(SoftPromptEvaluator, "evaluate",
                        lambda self, soft, mass=True: calls.append((soft is None, mass)) or real(self, soft, mass))
    printed = []
    summary = run(build_config(None, model="tiny", popsize=4, generations=3, seed=0, icl_baseline=True, min_mass=0),
                  PluginHost(load_entrypoints=False), tmp_path / "run", progress=False, echo=printed.append)
    assert calls[:2] == [(True, True), (True, True)]          # naive, ICL: the bare model, with mass
    assert calls[2:-1] == [(False, False)] * 3                  # three generations: no mass
    assert calls[-1] == (False, True)                           # the best prompt re-scored, with mass
    assert 0 < summary["option_mass"] <= 1 and math.isfinite(summary["naive_option_mass"])
    assert 0 < summary["icl_option_mass"] <= 1
    # the ICL baseline's own text is kept with its numbers
    assert summary["icl_system_prompt"].startswith("You are a typical adult from the United States, ")
    # the closing table shows how much of the next token is an answer: naive, ICL, aligned
    row = next(line for line in printed[-1].splitlines() if line.startswith("answer p"))
    assert row.split()[2:] == [f"{summary[k]:.1%}" for k in ("naive_option_mass", "icl_option_mass", "option_mass")]
    # and how decided the answers are, the same three
    keys = ("naive_answer_entropy", "icl_answer_entropy", "answer_entropy")
    assert all(0 <= summary[k] <= 1 for k in keys) and summary["max_entropy"] is None
    row = next(line for line in printed[-1].splitlines() if line.startswith("answer H"))
    assert row.split()[2:] == [f"{summary[k]:.2f}" for k in keys]


def _record_loop(monkeypatch):
    """(every SurveyResult the run computes, every fitness DE is told), filled as the run goes."""
    results, told = [], []
    real_call, real_tell = SurveyObjective.__call__, DifferentialEvolution.tell
    monkeypatch.setattr(SurveyObjective, "__call__",
                        lambda self, soft, mass=True: results.append(r := real_call(self, soft, mass)) or r)
    monkeypatch.setattr(DifferentialEvolution, "tell", lambda self, f: told.append(f.clone()) or real_tell(self, f))
    return results, told


def test_a_mass_floor_makes_the_loop_measure_the_mass_and_the_optimizer_minimise_loss_plus_penalty(tmp_path, monkeypatch):
    results, told = _record_loop(monkeypatch)
    floor = 0.99   # far above what a random-weight model puts on the digits: every candidate pays
    run(build_config(None, model="tiny", popsize=4, generations=3, seed=0, icl_baseline=False, min_mass=floor),
        PluginHost(load_entrypoints=False), tmp_path / "run", progress=False, echo=lambda _: None)
    loop = results[1:-1]                                        # after the naive baseline, before the re-score
    assert len(loop) == len(told) == 3
    for result, fitness in zip(loop, told):
        assert result.answers.mass is not None                  # measured although the loop asks mass=False
        penalty = 1000 * (floor - result.answers.mass.mean(-1))
        assert torch.allclose(fitness, result.loss + penalty)
        assert (fitness > result.loss).all()


def test_an_entropy_cap_makes_the_optimizer_minimise_loss_plus_the_entropy_penalty(tmp_path, monkeypatch):
    results, told = _record_loop(monkeypatch)
    cap = 0.05   # far under a random-weight model's near-uniform answers: every candidate pays
    summary = run(build_config(None, model="tiny", popsize=4, generations=3, seed=0, icl_baseline=False, min_mass=0,
                               max_entropy=cap), PluginHost(load_entrypoints=False), tmp_path / "run",
                  progress=False, echo=lambda _: None)
    loop = results[1:-1]
    assert len(loop) == len(told) == 3
    for result, fitness in zip(loop, told):
        assert torch.allclose(fitness, result.loss + 300 * (result.entropy - cap))
        assert (fitness > result.loss).all()
    assert summary["max_entropy"] == cap and summary["answer_entropy"] > cap


def test_a_shift_weight_makes_the_optimizer_minimise_loss_plus_the_answers_mean_move_from_the_bare_model(
        tmp_path, monkeypatch):
    results, told = _record_loop(monkeypatch)
    weight = 7.0
    run(build_config(None, model="tiny", popsize=4, generations=3, seed=0, icl_baseline=False, min_mass=0,
                     shift_weight=weight), PluginHost(load_entrypoints=False), tmp_path / "run",
        progress=False, echo=lambda _: None)
    bare = results[0].answers.expected[0]          # the naive baseline: the bare model's item means
    loop = results[1:-1]
    assert len(loop) == len(told) == 3
    for result, fitness in zip(loop, told):
        moved = (result.answers.expected - bare).abs().mean(-1)
        assert (moved > 0).all()
        assert torch.allclose(fitness, result.loss + weight * moved)


def test_the_best_loss_is_the_l1_of_the_candidate_with_the_best_fitness(tmp_path):
    summary = run(build_config(None, model="tiny", popsize=4, generations=3, seed=0, icl_baseline=False,
                               min_mass=0.5), PluginHost(load_entrypoints=False), tmp_path / "run",
                  progress=False, echo=lambda _: None)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    # the run's best is chosen by fitness; its reported L1 is that prompt's own (re-scored alone)
    assert abs(history["best_loss"].iloc[-1] - summary["loss"]) < 1e-3


def _summary(naive_mass: float, aligned_mass: float, floor: float | None = None) -> dict:
    dims = {"PDI": 50.0}
    return {"target": {"name": "Testland", "code": "TL", "source": "test", "scores": {"PDI": 40.0}}, "min_mass": floor,
            "naive_dimensions": dims, "dimensions": dims, "icl_dimensions": None, "naive_loss": 10.0,
            "icl_loss": None, "loss": 5.0, "option_mass": aligned_mass, "naive_option_mass": naive_mass,
            "loss_definition": "L1", "evaluations": 8, "seconds": 1.0, "stop_reason": "budget", "run_dir": "r"}


def test_the_closing_table_warns_under_half_the_naive_option_mass_without_a_floor_or_under_the_floor():
    from promptopt.runner import format_comparison

    def warnings(**kw):
        return [line for line in format_comparison(_summary(**kw)).splitlines() if line.startswith("warning:")]

    collapsed = warnings(naive_mass=0.32, aligned_mass=0.02)
    assert len(collapsed) == 1 and "2.0%" in collapsed[0] and "32.0%" in collapsed[0] and "no floor" in collapsed[0]
    assert warnings(naive_mass=0.32, aligned_mass=0.20) == []
    assert warnings(naive_mass=0.32, aligned_mass=0.11, floor=0.1) == []       # held the floor: the row says it
    under = warnings(naive_mass=0.32, aligned_mass=0.08, floor=0.1)
    assert len(under) == 1 and "8.0%" in under[0] and "--min-mass 0.1" in under[0]


def test_the_closing_table_warns_when_the_answers_end_over_the_entropy_cap():
    from promptopt.runner import format_comparison

    def table(entropy, cap):
        return format_comparison({**_summary(0.32, 0.3), "answer_entropy": entropy, "naive_answer_entropy": 0.53,
                                  "max_entropy": cap}).splitlines()

    assert next(line for line in table(0.84, None) if line.startswith("answer H")).split()[2:] == ["0.53", "0.84"]
    assert not [line for line in table(0.84, None) if line.startswith("warning:")]
    assert not [line for line in table(0.6, 0.6) if line.startswith("warning:")]
    over = [line for line in table(0.7, 0.6) if line.startswith("warning:")]
    assert len(over) == 1 and "0.70" in over[0] and "--max-entropy 0.6" in over[0]


def test_the_shift_penalty_measures_from_the_bare_model_whether_or_not_the_naive_baseline_came_first():
    host = PluginHost(load_entrypoints=False)
    config = build_config(None, model="tiny", min_mass=0, shift_weight=5.0)
    backend = host.create_model("tiny")
    soft = torch.randn(2, config.tokens, backend.hidden_size) * 0.02
    prompt_first = build_objective(host, config, backend)[3]
    naive_first = build_objective(host, config, backend)[3]
    naive_first(None)
    assert torch.allclose(prompt_first(soft).fitness, naive_first(soft).fitness)
    assert torch.allclose(prompt_first._bare_means, naive_first._bare_means)


def test_a_run_config_built_in_python_is_checked_before_any_model_loads(tmp_path):
    from promptopt.config import RunConfig
    from promptopt.errors import UsageError
    import pytest

    with pytest.raises(UsageError, match="--generations must be >= 1"):
        run(RunConfig(model="tiny", generations=0, popsize=6), run_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_versions_record_every_distribution_the_numbers_depend_on_and_the_source_commit(monkeypatch):
    from importlib.metadata import version

    from promptopt import provenance

    found = provenance.versions()
    assert found["numpy"] == version("numpy") and found["cma"] == version("cma") and found["nevergrad"] == version("nevergrad")
    monkeypatch.setattr(provenance, "source_commit", lambda: "abc123+dirty")
    assert provenance.versions()["promptopt_commit"] == "abc123+dirty"
    monkeypatch.setattr(provenance, "source_commit", lambda: None)   # outside a git checkout: left out
    assert "promptopt_commit" not in provenance.versions()


def test_the_source_commit_is_head_with_dirty_marked():
    import subprocess

    from pathlib import Path

    from promptopt import provenance

    head = subprocess.run(["git", "-C", str(Path(provenance.__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("promptopt's source is not in a git checkout here")
    assert provenance.source_commit().removesuffix("+dirty") == head.stdout.strip()
