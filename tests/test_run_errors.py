"""Bad input to `promptopt run`: exit 2, one `Error:` line, no traceback, nothing half-written on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import invoke
from promptopt import runner
from promptopt.config import build_config
from promptopt.distributed import LocalExecutor
from promptopt.host import PluginHost

TINY = ["--model", "tiny", "--quiet", "--popsize", "4", "--generations", "2"]

# two items and a PDI formula over them: the vsm13 scorer, which wants 24 items, fails on it during the baselines
MINI_SURVEY = """\
[instrument]
name = "mini"
[scales.s]
labels = ["a", "b", "c"]
[blocks.A]
intro = ""
[[items]]
number = 1
block = "A"
text = "Q one"
scale = "s"
[[items]]
number = 2
block = "A"
text = "Q two"
scale = "s"
[scorer]
formulas = {PDI = [[10, 1], [-10, 2]]}
"""


def one_error_line(code: int, stdout: str, stderr: str, needle: str) -> str:
    assert code == 2, (stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], stderr
    return lines[0]


@pytest.fixture
def mismatched(tmp_path) -> list[str]:
    """Flags that load the model and write config.json, then fail scoring the baselines."""
    survey = tmp_path / "mini.toml"
    survey.write_text(MINI_SURVEY)
    return ["--instrument", str(survey), "--scorer", "vsm13"]


def test_a_run_failing_before_its_first_checkpoint_leaves_no_directory_so_the_command_can_be_rerun(tmp_path, mismatched):
    out = tmp_path / "new" / "run"
    for _ in range(2):   # the second time must fail the same way, not with 'already holds a run'
        one_error_line(*invoke(["run", *TINY, *mismatched, "--out", str(out)]), "must have last dimension 24")
        assert not (tmp_path / "new").exists()


def test_a_failed_run_in_an_existing_directory_removes_only_the_files_it_wrote(tmp_path, mismatched):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    one_error_line(*invoke(["run", *TINY, *mismatched, "--out", str(out)]), "must have last dimension 24")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "mine"


def test_ctrl_c_after_the_config_is_written_keeps_the_directory_for_resume(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_baselines", interrupted)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        runner.run(build_config(None, model="tiny", popsize=4, generations=2), PluginHost(load_entrypoints=False),
                   out, progress=False, echo=lambda s: None)
    assert (out / "config.json").exists()


def test_a_failed_resume_does_not_touch_the_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert invoke(["run", *TINY, "--out", str(out)])[0] == 0
    before = sorted(p.name for p in out.iterdir())

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "_optimise", broken)
    with pytest.raises(RuntimeError):
        runner.resume(out, PluginHost(load_entrypoints=False), overrides={"generations": 3}, progress=False)
    assert sorted(p.name for p in out.iterdir()) == before


@pytest.mark.parametrize("where, needle", [
    ("afile", "is a file"),
    ("afile/sub", "which is a file"),
])
def test_an_out_that_cannot_be_a_directory_fails_in_one_line_before_the_model_loads(tmp_path, monkeypatch, where, needle):
    (tmp_path / "afile").write_text("not a directory")

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(PluginHost, "create_model", no_model)
    one_error_line(*invoke(["run", *TINY, "--out", str(tmp_path / where)]), needle)
    assert (tmp_path / "afile").read_text() == "not a directory"


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs, where nobody may make a directory")
def test_an_out_nobody_may_create_fails_in_one_line(monkeypatch):
    monkeypatch.setattr(PluginHost, "create_model", lambda *a, **k: pytest.fail("model loaded first"))
    one_error_line(*invoke(["run", *TINY, "--out", "/sys/promptopt-nope"]), "cannot be created")


def test_more_tokens_than_the_vocabulary_supplies_names_the_largest_allowed(tmp_path, tiny_backend):
    special = set(tiny_backend.tokenizer.all_special_ids)
    most = tiny_backend.embedding_matrix.shape[0] - len(special)
    line = one_error_line(*invoke(["run", *TINY, "--tokens", str(most + 1), "--out", str(tmp_path / "r")]),
                          f"use --tokens {most} or fewer")
    assert "not special" in line
    assert not (tmp_path / "r").exists()
    code, _, err = invoke(["run", *TINY, "--tokens", str(most), "--out", str(tmp_path / "r")])
    assert code == 0, err


def test_a_generation_without_one_finite_fitness_is_a_clear_error_and_leaves_nothing(tmp_path, monkeypatch):
    real = LocalExecutor.__call__

    def not_finite(self, z):
        result = real(self, z)
        result.fitness = torch.full_like(result.fitness, float("nan"))
        return result

    monkeypatch.setattr(LocalExecutor, "__call__", not_finite)
    one_error_line(*invoke(["run", *TINY, "--out", str(tmp_path / "r")]), "every candidate's fitness was not finite")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("content", ["[1, 2]", '{"config": null}', '{"config": [1]}', '"text"'])
def test_resume_of_a_config_json_of_the_wrong_shape_is_one_line(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    one_error_line(*invoke(["run", "--quiet", "--resume", str(tmp_path)]), "config.json is damaged")


def test_resume_refusals_name_the_flags_not_the_config_fields(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"config": {"model": "tiny"}}))
    line = one_error_line(*invoke(["run", "--quiet", "--resume", str(tmp_path), "--seed", "3",
                                   "--out", str(tmp_path / "x")]), "cannot change --out, --seed")
    assert "--time-limit" in line and "time_limit" not in line


def test_the_unreadable_checkpoint_warning_goes_to_stderr_not_stdout(tmp_path):
    out = tmp_path / "run"
    assert invoke(["run", *TINY, "--out", str(out)])[0] == 0   # two generations: two checkpoints
    newest = out / "checkpoint.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    code, stdout, stderr = invoke(["run", "--quiet", "--resume", str(out), "--generations", "3"])
    assert code == 0, stderr
    assert "is unreadable" in stderr and "checkpoint.prev" in stderr
    assert "Warning" not in stdout



def test_a_run_directory_in_use_by_another_process_is_refused_and_left_as_it_is(tmp_path):
    import os

    from promptopt.rundir import locked

    out = tmp_path / "run"
    code, _, err = invoke(["run", *TINY, "--out", str(out)])
    assert code == 0, err
    def files():
        return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name != ".lock"}

    before = files()
    with locked(out):   # as a second process running it would hold it
        one_error_line(*invoke(["run", "--resume", str(out), "--generations", "4", "--quiet"]),
                       f"{out} is in use by another promptopt process (pid {os.getpid()})")
        fresh = tmp_path / "fresh"
        fresh.mkdir()
        with locked(fresh):
            one_error_line(*invoke(["run", *TINY, "--out", str(fresh)]), f"{fresh} is in use")
            assert sorted(p.name for p in fresh.iterdir()) == [".lock"]
    assert files() == before
    code, _, err = invoke(["run", "--resume", str(out), "--generations", "4", "--quiet"])
    assert code == 0, err   # free again once the holder is done


def test_resuming_a_directory_that_holds_no_run_leaves_no_lock_file_in_it(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    one_error_line(*invoke(["run", "--resume", str(tmp_path), "--quiet"]), "is not a run directory (no config.json)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
