"""benchmarks/next_tokens.py on the tiny model: where an aligned prompt's next token goes."""

from __future__ import annotations

from conftest import load_benchmark
from promptopt.config import build_config
from promptopt.evaluator import SoftPromptEvaluator
from promptopt.host import PluginHost
from promptopt.objectives import load_vsm13
from promptopt.runner import run

next_tokens = load_benchmark("next_tokens")


def test_the_digit_share_it_prints_is_the_evaluators_option_mass(tmp_path, capsys):
    host = PluginHost(load_entrypoints=False)
    run_dir = tmp_path / "run"
    run(build_config(None, model="tiny", popsize=4, generations=2, icl_baseline=False), host, run_dir,
        progress=False, echo=lambda _: None)
    assert next_tokens.main([str(run_dir), "--items", "2", "--new-tokens", "3"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| bare model", "|   item 2", "| run (reply, K=1)", "|   item 2"]
    # the full forward's digit share matches the fast evaluator's option mass, bare and aligned
    backend = host.create_model("tiny")
    survey = load_vsm13()
    ev = SoftPromptEvaluator(backend, survey.prompts("main"), list(survey.n_options), position="reply")
    soft, _ = next_tokens.load_soft_prompt(run_dir)
    for row, candidate in ((rows[0], None), (rows[2], soft[None])):
        printed = float(row.split(" | ")[1].rstrip("%")) / 100
        assert abs(printed - float(ev.evaluate(candidate).mass.mean())) < 1e-3


def test_a_missing_run_dir_is_a_usage_error(tmp_path, capsys):
    assert next_tokens.main([str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
