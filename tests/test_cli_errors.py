"""Bad input exits 2 with one line, `Error: what was wrong; what would be right`, and writes no run."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import invoke

TINY = ["--model", "tiny", "--popsize", "4", "--generations", "2", "--quiet"]


def one_error_line(args: list[str], *needles: str) -> str:
    """Run `promptopt ARGS`; assert exit 2 and a single `Error:` line on stderr holding every needle."""
    code, stdout, stderr = invoke(args)
    assert code == 2, (stdout, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for needle in needles:
        assert needle in lines[0], stderr
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    (["run", "--popsize", "abc"], ["'--popsize'", "'abc' is not a valid integer", "run --help)"]),
    (["run", "--position", "middle"], ["'--position'", "'middle'", "reply", "run --help)"]),
    (["run", "--frobnicate"], ["No such option '--frobnicate'", "run --help)"]),
    (["frobnicate"], ["No such command 'frobnicate'", "--help)"]),
    (["report", "/no/such/run"], ["'/no/such/run' does not exist", "report --help)"]),
    (["list"], ["Missing argument", "models, instruments, scorers, optimizers, targets", "list --help)"]),
    (["list", "nosuch"], ["'nosuch' is not one of", "list --help)"]),
])
def test_click_usage_errors_are_one_line_with_a_help_hint(args, needles):
    one_error_line(args, *needles)


def test_a_directory_given_as_config_is_one_line(tmp_path):
    one_error_line(["run", "--config", str(tmp_path)], "'--config'", "is a directory", "run --help)")


def test_help_still_prints_the_full_usage():
    code, stdout, stderr = invoke(["run", "--help"])
    assert code == 0 and stdout.startswith("Usage: ") and "--popsize" in stdout and stderr == ""


@pytest.mark.parametrize("args, needles", [
    (["--seed", "99999999999999999999999"], ["--seed must be in 0..2**63-1", "99999999999999999999999"]),
    (["--seed", "-1"], ["--seed must be in 0..2**63-1 (got -1)"]),
    (["--radius", "inf"], ["--radius must be a finite number (got inf)"]),
    (["--radius", "nan"], ["--radius must be a finite number (got nan)"]),
    (["--shift-weight", "inf"], ["--shift-weight must be a finite number"]),
    (["--max-entropy", "nan"], ["--max-entropy must be a finite number"]),
    (["--min-mass", "nan"], ["--min-mass must be a finite number"]),
    (["--time-limit", "inf"], ["--time-limit must be a finite number"]),
    (["--target-loss", "-inf"], ["--target-loss must be a finite number"]),
    (["--device", "cudaX"], ["malformed --device 'cudaX'", "cpu or cuda[:N]"]),
    (["--device", "cuda:"], ["malformed --device 'cuda:'"]),
    (["--targets", "nosuch"], ["unknown target table 'nosuch'", "registered: hofstede"]),
])
def test_bad_run_values_are_rejected_before_anything_is_written(tmp_path, args, needles):
    one_error_line(["run", *TINY, *args, "--out", str(tmp_path / "r")], *needles)
    assert not (tmp_path / "r").exists()


def test_what_the_optimizer_refuses_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    import promptopt.runner as runner

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the optimizer's settings were checked")

    monkeypatch.setattr(runner, "open_session", no_model)
    config = tmp_path / "run.toml"
    config.write_text("[hyper]\nF = 5\n")   # the right type, a value only DE's constructor knows is wrong
    one_error_line(["run", *TINY, "--config", str(config), "--out", str(tmp_path / "r")],
                   "optimizer de", "F must be in (0, 2] (got 5)")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flag, make, needles", [
    ("--model", lambda d: d, ["model directory", "holds no config.json", "save_pretrained"]),
    ("--model", lambda d: (d / "weights.bin").write_text("x") and d / "weights.bin", ["is a file but not a .gguf"]),
    ("--instrument", lambda d: d, ["is a directory; give a TOML survey file or a registered instrument (vsm13)"]),
])
def test_a_directory_or_file_of_the_wrong_kind_is_named_as_such(tmp_path, flag, make, needles):
    path = make(tmp_path)
    one_error_line(["run", *TINY, flag, str(path), "--out", str(tmp_path / "r")], str(path), *needles)
    assert not (tmp_path / "r").exists()


def test_ctrl_c_while_the_cli_imports_exits_130_in_one_line():
    import subprocess
    import sys

    code = ("import os, signal, time\n"
            "from promptopt.launcher import exit_on_ctrl_c\n"
            "with exit_on_ctrl_c():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(30)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          start_new_session=True)   # a session of its own: SIGINT is not ignored
    assert done.returncode == 130 and done.stderr == "Aborted (SIGINT).\n", done.stderr
    import tomllib
    from pathlib import Path

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["promptopt"] == "promptopt.launcher:main"   # the console script starts under it


@pytest.mark.parametrize("caught, status", [(True, 130), (False, -2)])
def test_under_python_m_a_ctrl_c_caught_after_an_eval_exits_with_the_clis_status(tmp_path, caught, status):
    """A KeyboardInterrupt out of an eval'd string (a lazy import's namedtuple set-up) makes CPython end a
    `python -m` program by SIGINT even when the CLI caught it; one nobody caught still ends that way."""
    import subprocess
    import sys

    stop = "sys.exit(130)" if caught else "raise"
    (tmp_path / "ctrl_c_in_eval.py").write_text(
        "import sys\n"
        "import promptopt.cli\n"
        "def stopped(argv, restore_signals):\n"
        "    try:\n"
        "        eval('(_ for _ in ()).throw(KeyboardInterrupt)')\n"
        "    except KeyboardInterrupt:\n"
        f"        {stop}\n"
        "promptopt.cli.main = stopped\n"
        "from promptopt.launcher import main\n"
        "main()\n")
    done = subprocess.run([sys.executable, "-m", "ctrl_c_in_eval"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, start_new_session=True)
    assert done.returncode == status, done.stderr


def test_an_empty_out_is_an_error_not_the_default_run_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error_line(["run", *TINY, "--out", ""], "--out must be a directory path, not empty")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("text, needles", [
    ('seed = -1\n', ["--seed must be in 0..2**63-1 (got -1)", "(from seed = -1 in "]),
    ('dtype = "float64"\n', ["--dtype must be one of auto, float32", "'float64'", "(from dtype = 'float64' in "]),
    ('radius = inf\n', ["--radius must be a finite number", "(from radius = inf in "]),
    ('out = ""\n', ["--out must be a directory path", "(from out = '' in "]),
])
def test_validate_rejects_what_a_run_would_fail_on_naming_the_files_key(tmp_path, text, needles):
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny"\n' + text)
    assert one_error_line(["validate", str(path)], *needles).endswith(f" in {path})")


def test_a_bad_value_given_as_a_flag_is_not_blamed_on_the_config_file(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny"\nseed = 1\n')
    line = one_error_line(["run", "--config", str(path), "--seed", "-1", "--out", str(tmp_path / "r")], "--seed must be")
    assert str(path) not in line


def test_the_dtypes_a_config_accepts_are_the_backends():
    from promptopt.config import DTYPES
    from promptopt.models.backend import DTYPES as BACKEND_DTYPES

    assert DTYPES == ("auto", *BACKEND_DTYPES)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "x.toml"
    path.write_bytes(b"\xff\xfe bad")
    one_error_line(["validate", str(path)], f"config file {path} is not UTF-8 text")
    one_error_line(["run", *TINY, "--config", str(path), "--out", str(tmp_path / "r")], f"config file {path}")
    assert not (tmp_path / "r").exists()


def test_an_instrument_file_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "survey.toml"
    path.write_bytes(b"\xff\xfe bad")
    one_error_line(["run", *TINY, "--instrument", str(path), "--out", str(tmp_path / "r")],
                   f"instrument file {path} is not UTF-8 text")


def test_an_instrument_error_keeps_the_quotes_at_the_end_of_its_message(tmp_path):
    path = tmp_path / "survey.toml"
    path.write_text('[instrument]\nname = "x"\n')
    line = one_error_line(["run", *TINY, "--instrument", str(path), "--out", str(tmp_path / "r")],
                          "missing key 'blocks'")
    assert line.endswith("with an 'intro'"), line


def test_a_cuda_index_past_the_visible_gpus_is_named(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    one_error_line(["run", *TINY, "--device", "cuda:1", "--out", str(tmp_path / "r")],
                   "--device cuda:1 asked for, but this torch sees 1 CUDA GPU(s), cuda:0..cuda:0")
    assert not (tmp_path / "r").exists()


def test_a_negative_target_loss_is_refused_by_validate_and_run(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("target_loss = -5\n")
    for args in (["validate", str(config)], ["run", "--model", "tiny", "--target-loss", "-5", "--quiet"]):
        code, _, err = invoke(args)
        assert code == 2 and err.strip().count("\n") == 0 and "--target-loss must be >= 0" in err, err


@pytest.mark.parametrize("text, needles", [
    ('[hyper]\nFF = 0.5\n', ["[hyper] FF is not a parameter of optimizer de (DifferentialEvolution)",
                             "it takes strategy, F, CR"]),
    ('[hyper]\nF = "0.5"\n', ["[hyper] F = '0.5' must be a number"]),
    ('[hyper]\nlpsr = 1\n', ["[hyper] lpsr = 1 must be true or false"]),
    ('[hyper]\nmemory_size = 2.5\n', ["[hyper] memory_size = 2.5 must be an integer"]),
    ('[hyper]\npopsize = 4\n', ["[hyper] popsize is set by the run from --popsize"]),
    ('[hyper]\nmax_evaluations = 5\n', ["[hyper] max_evaluations is set by the run from --budget or --generations"]),
    ('optimizer = "ng:TwoPointsDE"\n[hyper]\nbudget = 5\n', ["[hyper] budget is set by the run from --budget"]),
    ('optimizer = "cma"\n[hyper]\nx0 = 1.0\n', ["[hyper] x0 is set by the run from the initial soft prompt"]),
    ('[hyper]\ndtype = "float64"\n', ["[hyper] dtype", "takes torch.dtype, which a config file cannot hold"]),
    ('[hyper]\nF = 5\n', ["optimizer de: F must be in (0, 2] (got 5)"]),
    ('[hyper]\nstrategy = "jad"\n', ["optimizer de: strategy must be one of", "'jad'"]),
    ('optimizer = "cma"\n[hyper]\nsigma0 = "big"\n', ["[hyper] sigma0 = 'big' must be a number", "cma (CMAES)"]),
    ('optimizer = "ng:TwoPointsDE"\n[hyper]\nF = 0.5\n', ["[hyper] F is not a parameter of optimizer ng:TwoPointsDE",
                                                         "it has none a config file sets; drop [hyper]"]),
])
def test_hyper_keys_and_values_are_checked_against_the_optimizer_by_validate_and_run(tmp_path, text, needles):
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny"\n' + text)
    one_error_line(["validate", str(path)], *needles)
    one_error_line(["run", *TINY, "--config", str(path), "--out", str(tmp_path / "r")], *needles)
    assert not (tmp_path / "r").exists()


def test_hyper_values_of_the_right_type_pass_validate(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('model = "tiny"\n[hyper]\nF = 1\nCR = 0.9\nlpsr = true\nstrategy = "jade"\nmemory_size = 3\n')
    code, out, err = invoke(["validate", str(path)])
    assert code == 0 and ": ok (de [DifferentialEvolution]" in out, err


def test_an_optimizer_taking_any_keyword_gets_its_hyper_unchecked():
    from promptopt.validation import check_hyper

    class Open:
        def __init__(self, dim, *, bounds, popsize=8, seed=0, device="cpu", **options):
            pass

    check_hyper("open", Open, {"anything": "goes", "rate": 0.1})
    with pytest.raises(ValueError, match=r"\[hyper\] seed is set by the run from --seed"):
        check_hyper("open", Open, {"seed": 3})


WORKVALUES = Path(__file__).parents[1] / "examples" / "promptopt-example-plugin" / "src" / "promptopt_example" / "data" / "workvalues.toml"


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("text, needles", [
    # a survey whose dimensions no country of the default table scores
    (f'instrument = "{WORKVALUES}"\n', ["target United States: no score for AUT, SEC", "available: PDI, IDV",
                                       "give --targets a table that scores these dimensions"]),
    # VSM13's formulas on a 6-item survey
    (f'instrument = "{WORKVALUES}"\nscorer = "vsm13"\n', ["scorer 'vsm13' cannot score 6 item means",
                                                         "means must have last dimension 24",
                                                         "(6 items in workvalues)"]),
])
def test_a_survey_that_does_not_fit_fails_before_the_model_loads(tmp_path, command, text, needles):
    path = tmp_path / "run.toml"
    path.write_text('model = "no-such-model"\n' + text)   # run fails on the survey, not on loading this
    args = ["validate", str(path)] if command == "validate" else ["run", "--config", str(path), "--out", str(tmp_path / "r")]
    one_error_line(args, *needles)
    assert not (tmp_path / "r").exists()
