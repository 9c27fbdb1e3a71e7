"""Damaged run artifacts given to `evaluate`, `report` and `export`: exit 2, one `Error:` line, nothing written."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from conftest import finished_tiny_run, invoke


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run, copied and damaged by each test (never changed itself)."""
    return finished_tiny_run(tmp_path_factory.mktemp("artifacts") / "run")


@pytest.fixture
def run(finished, tmp_path):
    """A fresh copy of the finished run, without the history.parquet and best/peft/ the run wrote (so a test
    sees whether export writes them)."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    (copy / "history.parquet").unlink()
    shutil.rmtree(copy / "best" / "peft")
    return copy


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error:"), err
    for word in words:
        assert word in lines[0], (word, err)


def soft_prompt_file(tmp_path, tensor: torch.Tensor):
    path = tmp_path / "prompt.safetensors"
    save_file({"soft_prompt": tensor}, str(path))
    return path


def evaluate(path) -> tuple[int, str, str]:
    return invoke(["evaluate", "--model", "tiny", "--soft-prompt", str(path)])


# -- evaluate --soft-prompt FILE ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [[2, 3, 32], [1, 4, 32], [32], [3]])
def test_evaluate_refuses_a_soft_prompt_that_is_not_k_by_h_naming_both_shapes(tmp_path, shape):
    code, _, err = evaluate(soft_prompt_file(tmp_path, torch.zeros(shape)))
    assert_one_line_error(code, err, "prompt.safetensors", f"shape {shape}", "[K, H]")


def test_evaluate_refuses_a_soft_prompt_of_zero_tokens(tmp_path):
    code, _, err = evaluate(soft_prompt_file(tmp_path, torch.zeros(0, 32)))
    assert_one_line_error(code, err, "0 tokens", "[0, 32]", "K >= 1")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_evaluate_refuses_a_soft_prompt_with_non_finite_values(tmp_path, bad):
    soft = torch.zeros(4, 32)
    soft[1, 2] = bad
    code, out, err = evaluate(soft_prompt_file(tmp_path, soft))
    assert_one_line_error(code, err, "1 non-finite value", "finite")
    assert "nan" not in out


def test_evaluate_refuses_an_integer_soft_prompt(tmp_path):
    code, _, err = evaluate(soft_prompt_file(tmp_path, torch.zeros(4, 32, dtype=torch.int64)))
    assert_one_line_error(code, err, "dtype int64", "float")


def test_evaluate_names_the_shape_found_and_the_shape_the_model_takes(tmp_path):
    code, _, err = evaluate(soft_prompt_file(tmp_path, torch.zeros(2, 7)))
    assert_one_line_error(code, err, "[2, 7]", "[K, 32]", "model tiny")
    assert "(?)" not in err


@pytest.mark.parametrize("config", ["null", '"a string"', "[1, 2]"])
def test_evaluate_names_a_config_json_whose_config_is_not_a_table(run, config):
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(saved)[:-1] + f', "config": {config}}}')
    code, _, err = evaluate(run)
    assert_one_line_error(code, err, "config.json", "not a table of the run's options")


def test_evaluate_names_a_malformed_metadata_json(run):
    (run / "best" / "metadata.json").write_text("{bad")
    code, _, err = evaluate(run)
    assert_one_line_error(code, err, "metadata.json", "not valid JSON")


# -- report RUN --------------------------------------------------------------------------------------------------

def damage(run, name: str) -> None:
    """Break one file of a run the way the audit found them broken."""
    if name == "corrupt history":
        (run / "history.csv").write_text('garbage \n"unterminated\n')
    elif name == "empty history":
        (run / "history.csv").write_text("")
    elif name == "cut-off history":   # a copy or a disk that stopped mid-row
        text = (run / "history.csv").read_text()
        (run / "history.csv").write_text(text[:text.rstrip().rfind(",")])
    elif name == "summary list":
        (run / "summary.json").write_text("[1, 2]")
    elif name == "summary without naive_dimensions":
        text = (run / "summary.json").read_text()
        (run / "summary.json").write_text(text.replace('"naive_dimensions"', '"renamed"'))


REPORT_DAMAGE = {"corrupt history": ("history.csv", "not a readable CSV"),
                 "empty history": ("history.csv", "is empty"),
                 "cut-off history": ("history.csv", "has no value for", "cut off or edited"),
                 "summary list": ("summary.json", "JSON list, not an object"),
                 "summary without naive_dimensions": ("summary.json", "lacks naive_dimensions")}


@pytest.mark.parametrize("name", list(REPORT_DAMAGE))
def test_report_of_a_damaged_run_names_the_file_and_writes_nothing(run, tmp_path, name):
    damage(run, name)
    out = tmp_path / "report"
    code, _, err = invoke(["report", str(run), "--out", str(out)])
    assert_one_line_error(code, err, *REPORT_DAMAGE[name])
    assert not out.exists()


def test_report_out_under_a_file_is_a_one_line_error(run, tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    code, _, err = invoke(["report", str(run), "--out", str(afile / "sub")])
    assert_one_line_error(code, err, str(afile), "is a file, not a directory", "--out")


# -- export RUN --------------------------------------------------------------------------------------------------

def assert_nothing_exported(run) -> None:
    assert not (run / "history.parquet").exists(), "history.parquet written before the error"
    assert not (run / "scores.csv").exists(), "scores.csv written before the error"
    assert not (run / "best" / "peft").exists()
    assert not list(run.rglob(".*.*")), "temp file left behind"


@pytest.mark.parametrize("name", ["corrupt history", "empty history", "cut-off history", "summary list"])
def test_export_of_a_damaged_history_names_the_file_and_writes_nothing(run, name):
    damage(run, name)
    code, _, err = invoke(["export", str(run)])
    assert_one_line_error(code, err, *REPORT_DAMAGE[name])
    assert_nothing_exported(run)


def test_export_names_a_malformed_metadata_json_and_writes_nothing(run):
    (run / "best" / "metadata.json").write_text("{bad")
    code, _, err = invoke(["export", str(run)])
    assert_one_line_error(code, err, "metadata.json", "not valid JSON")
    assert_nothing_exported(run)


def test_export_of_an_unfinished_run_writes_nothing(run):
    shutil.rmtree(run / "best")
    code, _, err = invoke(["export", str(run)])
    assert_one_line_error(code, err, "best/soft_prompt.safetensors")
    assert_nothing_exported(run)


def test_export_of_a_non_finite_soft_prompt_writes_nothing(run):
    save_file({"soft_prompt": torch.full((4, 32), float("nan"))}, str(run / "best" / "soft_prompt.safetensors"))
    code, _, err = invoke(["export", str(run)])
    assert_one_line_error(code, err, "soft_prompt.safetensors", "non-finite")
    assert_nothing_exported(run)


def test_export_of_a_good_run_still_writes_history_and_adapter(run):
    code, out, err = invoke(["export", str(run)])
    assert code == 0, err
    assert (run / "history.parquet").is_file() and (run / "best" / "peft" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("command, right", [(["export"], "check its permissions"), (["report"], "give --out")])
def test_a_run_folder_that_cannot_be_written_is_one_line_naming_the_file(tmp_path, monkeypatch, command, right):
    import errno

    import pandas as pd

    run_dir = finished_tiny_run(tmp_path / "run")

    def read_only(self, path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", read_only)
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", read_only)
    code, _, err = invoke([*command, str(run_dir)])
    assert_one_line_error(code, err, str(run_dir), "Permission denied", right)


def test_a_full_disk_is_one_line_with_status_1(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    run_dir = finished_tiny_run(tmp_path / "run")

    def full(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    code, _, err = invoke(["export", str(run_dir)])
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "history.parquet: No space left on device" in err and "Traceback" not in err


def test_evaluate_of_an_unfinished_run_says_it_has_not_finished_and_how_to_finish_it(run):
    shutil.rmtree(run / "best")
    code, _, err = invoke(["evaluate", "--soft-prompt", str(run)])
    assert_one_line_error(code, err, f"the run in {run} has no best/ soft prompt yet: it has not finished",
                          f"`promptopt run --resume {run}`")
