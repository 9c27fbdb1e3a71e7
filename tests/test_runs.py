"""`promptopt runs`: what each run directory holds, so a user knows which to resume."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import Crash, CrashAt, finished_tiny_run, invoke
from promptopt.config import build_config
from promptopt.host import PluginHost
from promptopt.rundir import locked
from promptopt.runner import run


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """runs/done (finished, 2 x 4 evaluations), runs/cut (stopped after 2 of 5 generations)."""
    root = tmp_path_factory.mktemp("runs")
    finished_tiny_run(root / "done")
    with pytest.raises(Crash):
        run(build_config(None, model="tiny", popsize=4, generations=5, seed=1),
            PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(2),)), root / "cut",
            progress=False, echo=lambda s: None)
    return root


def rows_of(*paths) -> dict[str, dict]:
    code, out, err = invoke(["runs", "--json", *map(str, paths)])
    assert code == 0, err
    return {row["run"].rsplit("/", 1)[-1]: row for row in json.loads(out)}


def test_finished_and_stopped_runs_are_told_apart_with_their_progress_and_loss(folder):
    rows = rows_of(folder)
    done, cut = rows["done"], rows["cut"]
    summary = json.loads((folder / "done" / "summary.json").read_text())
    assert done["status"] == "finished" and done["stop_reason"] == "generations" and done["evaluations"] == done["of"] == 8
    assert done["loss"] == summary["loss"] and done["naive_loss"] == summary["naive_loss"]
    assert done["change"] == round(100 * (summary["loss"] / summary["naive_loss"] - 1), 1)
    assert cut["status"] == "stopped" and (cut["evaluations"], cut["of"], cut["seed"]) == (8, 20, 1)
    history = pd.read_csv(folder / "cut" / "history.csv")
    assert cut["naive_loss"] == done["naive_loss"] and cut["loss"] == history["best_loss"].iloc[-1]


def test_the_table_names_each_run_and_says_how_to_continue_the_stopped_ones(folder):
    code, out, err = invoke(["runs", str(folder)])
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["run", "status", "country", "optimizer", "seed", "evaluations", "naive", "L1",
                                "L1", "change"]
    assert any(str(folder / "cut") in line and "stopped" in line and "8/20" in line for line in lines)
    assert lines[-1] == "1 stopped: continue each with `promptopt run --resume RUN`"


def test_a_run_another_process_holds_is_running(folder):
    with locked(folder / "cut"):
        assert rows_of(folder / "cut")["cut"]["status"] == "running"
    assert rows_of(folder / "cut")["cut"]["status"] == "stopped"


def test_a_damaged_run_is_one_row_saying_why_and_the_others_are_still_listed(folder, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    rows = rows_of(folder, broken)
    assert rows["broken"]["status"].startswith(f"damaged: {broken}/config.json is not valid JSON")
    assert rows["done"]["status"] == "finished" and rows["cut"]["status"] == "stopped"
    code, out, err = invoke(["runs", str(folder), str(broken)])   # the table keeps its width; the reason is below it
    assert code == 0, err
    row = next(line for line in out.splitlines() if line.startswith(str(broken)))
    assert "damaged [1]" in row and "not valid JSON" not in row
    assert f"[1] {broken}: {broken}/config.json is not valid JSON" in out


def test_a_config_json_whose_config_is_not_a_table_is_a_damaged_row(folder, tmp_path):
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "config.json").write_text('{"config": ["not", "a", "table"]}')
    rows = rows_of(folder, odd)
    assert rows["odd"]["status"].startswith("damaged: ") and "not a table of the run's options" in rows["odd"]["status"]
    assert rows["done"]["status"] == "finished"


def test_a_folder_with_no_run_is_one_line_exit_2(tmp_path):
    code, _, err = invoke(["runs", str(tmp_path)])
    assert code == 2 and err.count("\n") == 1 and "no run directory (one holding config.json)" in err, err


def test_a_run_that_stopped_early_by_a_rule_says_which(tmp_path):
    code, _, err = invoke(["run", "--model", "tiny", "--popsize", "4", "--generations", "50", "--target-loss", "1000",
                           "--quiet", "--out", str(tmp_path / "early")])
    assert code == 0, err
    assert rows_of(tmp_path)["early"]["stop_reason"] == "target_loss"
    code, out, _ = invoke(["runs", str(tmp_path)])
    assert "finished (target_loss)" in out and "4/200" in out


def test_a_default_run_directory_and_its_row_name_the_resolved_target_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = invoke(["run", "--model", "tiny", "--quiet", "--popsize", "4", "--generations", "1",
                           "--optimizer", "ng:TwoPointsDE", "--country", "saudi arabia"])
    assert code == 0, err
    (made,) = (tmp_path / "runs").iterdir()
    assert made.name.endswith("-ng-TwoPointsDE-SA"), made.name
    assert rows_of(made)[made.name]["country"] == "SA"


@pytest.mark.parametrize("field, value", [("loss", "8.9"), ("naive_loss", None), ("evaluations", True)])
def test_a_summary_without_its_numbers_is_a_damaged_row_not_a_failed_listing(folder, tmp_path, field, value):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder / "done", bad)
    summary = json.loads((bad / "summary.json").read_text())
    (bad / "summary.json").write_text(json.dumps({**summary, field: value}))
    rows = rows_of(folder, bad)
    assert rows["bad"]["status"] == f"damaged: {bad}/summary.json: {field} is {value!r}, not a number; expected " \
                                    "the summary.json `promptopt run` writes (restore it or re-run)"
    assert rows["done"]["status"] == "finished" and rows["cut"]["status"] == "stopped"


def test_a_stopped_run_whose_checkpoints_do_not_load_is_damaged_not_resumable(folder, tmp_path):
    import shutil

    bad = tmp_path / "badckpt"
    shutil.copytree(folder / "cut", bad)
    for name in ("checkpoint.safetensors", "checkpoint.prev.safetensors"):
        if (bad / name).exists():
            (bad / name).write_bytes(b"cut off")
    rows = rows_of(folder, bad)
    assert rows["badckpt"]["status"].startswith("damaged: ") and "checkpoint" in rows["badckpt"]["status"]
    assert rows["cut"]["status"] == "stopped"


def test_a_config_json_whose_config_is_null_is_a_damaged_row(folder, tmp_path):
    import shutil

    odd = tmp_path / "nullconfig"
    shutil.copytree(folder / "done", odd)
    meta = json.loads((odd / "config.json").read_text())
    (odd / "config.json").write_text(json.dumps({**meta, "config": None}))
    assert rows_of(folder, odd)["nullconfig"]["status"].startswith("damaged: ")


def test_a_run_stopped_while_writing_its_outputs_is_finished_but_names_what_it_lacks(folder, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(folder / "done", partial)
    (partial / "report.md").unlink()
    shutil.rmtree(partial / "best")
    rows = rows_of(folder, partial)
    assert rows["partial"]["status"] == "finished" and rows["partial"]["missing"] == ["best", "report.md"]
    assert rows["done"]["missing"] == []
    code, out, err = invoke(["runs", str(partial)])
    assert code == 0, err
    assert "finished (generations); lacks best, report.md" in out
    assert out.splitlines()[-1].startswith("1 finished without all their outputs: write them again with "
                                           "`promptopt run --resume RUN`")
    code, _, err = invoke(["run", "--resume", str(partial)])   # what the line says to do
    assert code == 0, err
    assert rows_of(partial)["partial"]["missing"] == []
