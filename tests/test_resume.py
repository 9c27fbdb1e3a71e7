"""Checkpoint and resume: a run stopped anywhere resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from safetensors.torch import load_file

import promptopt
from conftest import Crash, CrashAt, invoke
from promptopt.config import build_config
from promptopt.errors import CheckpointError
from promptopt.host import PluginHost
from promptopt.runner import resume, run

ARGS = dict(model="tiny", popsize=6, generations=8, seed=3)


def outcome(run_dir):
    history = pd.read_csv(run_dir / "history.csv").drop(columns="seconds")
    soft = load_file(str(run_dir / "best" / "soft_prompt.safetensors"))["soft_prompt"]
    return history, soft


def assert_same(a, b):
    pd.testing.assert_frame_equal(a[0], b[0], check_exact=True)
    assert a[1].equal(b[1])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    run(build_config(None, **ARGS), PluginHost(load_entrypoints=False), run_dir, progress=False, echo=lambda s: None)
    return outcome(run_dir)


@pytest.mark.parametrize("optimizer", ["de", "cma", "random", "ng:TwoPointsDE"])
def test_crash_then_resume_gives_the_uninterrupted_history_and_soft_prompt(tmp_path, optimizer):
    args = {**ARGS, "optimizer": optimizer}
    quiet = dict(progress=False, echo=lambda s: None)
    straight = tmp_path / "straight"
    run(build_config(None, **args), PluginHost(load_entrypoints=False), straight, **quiet)
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        run(build_config(None, **args), PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(3),)), crashed, **quiet)
    assert len(pd.read_csv(crashed / "history.csv")) == 3 and not (crashed / "summary.json").exists()
    resume(crashed, PluginHost(load_entrypoints=False), **quiet)
    assert_same(outcome(straight), outcome(crashed))


def test_lshade_spends_the_evaluation_budget_in_shrinking_generations_and_resumes_exactly(tmp_path):
    # popsize 12 shrinking to 4 over 96 evaluations: more than 96 // 12 = 8 generations, same cost
    args = {**ARGS, "popsize": 12, "generations": None, "budget": 96, "hyper": {"lpsr": True}}
    quiet = dict(progress=False, echo=lambda s: None)
    straight = tmp_path / "straight"
    summary = run(build_config(None, **args), PluginHost(load_entrypoints=False), straight, **quiet)
    history = pd.read_csv(straight / "history.csv")
    sizes = history["evaluations"].diff().fillna(history["evaluations"].iloc[0])
    assert sizes.iloc[0] == 12 and sizes.iloc[-1] < 12 and sizes.is_monotonic_decreasing
    assert 96 <= summary["evaluations"] < 96 + 4 and len(history) > 8
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        run(build_config(None, **args), PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(5),)), crashed, **quiet)
    resume(crashed, PluginHost(load_entrypoints=False), **quiet)
    assert_same(outcome(straight), outcome(crashed))


def test_sigkill_at_random_points_then_resume_is_identical(tmp_path, reference):
    run_dir = tmp_path / "run"
    rng = random.Random(11)
    cmd = [sys.executable, "-m", "promptopt", "run", "--model", "tiny", "--popsize", "6", "--generations", "8",
           "--seed", "3", "--quiet", "--out", str(run_dir)]
    # exact resume is exact at a fixed thread count: the reference ran here at one thread
    # (conftest), so the children do too, even where OMP_NUM_THREADS is exported
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kills = 0
    for attempt in range(12):
        args = cmd if not (run_dir / "config.json").exists() else [
            sys.executable, "-m", "promptopt", "run", "--resume", str(run_dir), "--quiet"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if kills < 3:
            # let it get into the generation loop, then kill it without warning
            deadline = time.time() + 60
            while time.time() < deadline and proc.poll() is None:
                if (run_dir / "history.csv").exists() and len(pd.read_csv(run_dir / "history.csv")) >= 2 * kills + 1:
                    break
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.3))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                continue
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
        if (run_dir / "summary.json").exists():
            break
    assert kills >= 1 and (run_dir / "summary.json").exists()
    assert_same(reference, outcome(run_dir))


LONG = {**ARGS, "generations": 100}   # about a second of generations, so a signal lands mid-run
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}   # exact resume is exact at a fixed thread count


def signal_mid_run(run_dir, signame, times: int = 1):
    """Start `promptopt run` (LONG) in a child, send it the signal (``times`` times, 1 ms apart) after its
    first generation; (status, stderr)."""
    cmd = [sys.executable, "-m", "promptopt", "run", "--model", "tiny", "--popsize", str(LONG["popsize"]),
           "--generations", str(LONG["generations"]), "--seed", str(LONG["seed"]), "--quiet", "--out", str(run_dir)]
    # a session of its own, so SIGINT is not ignored as it is in a shell's background jobs
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=CHILD_ENV,
                            start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (run_dir / "checkpoint.prev.safetensors").exists():
        time.sleep(0.005)
    assert proc.poll() is None, "the run ended before it could be signalled"
    for _ in range(times):
        proc.send_signal(getattr(signal, signame))
        time.sleep(0.001)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


def assert_stopped_cleanly(run_dir, err):
    assert err.strip().count("\n") == 0 and f"continue it with `promptopt run --resume {run_dir}`" in err, err
    assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".") and p.name != ".lock"]   # no temp file
    assert (run_dir / "checkpoint.safetensors").exists() and not (run_dir / "summary.json").exists()


def test_sigterm_stops_cleanly_with_status_143_and_resume_gives_the_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    run(build_config(None, **LONG), PluginHost(load_entrypoints=False), straight, progress=False, echo=lambda s: None)
    run_dir = tmp_path / "run"
    status, err = signal_mid_run(run_dir, "SIGTERM")
    assert status == 143 and "stopped by SIGTERM" in err, err
    assert_stopped_cleanly(run_dir, err)
    done = subprocess.run([sys.executable, "-m", "promptopt", "run", "--resume", str(run_dir), "--quiet"],
                          capture_output=True, env=CHILD_ENV, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    assert_same(outcome(straight), outcome(run_dir))


@pytest.mark.parametrize("signame, status, said", [("SIGHUP", 129, "stopped by SIGHUP"),
                                                   ("SIGINT", 130, "stopped by Ctrl-C")])
def test_sighup_and_ctrl_c_stop_as_sigterm_does_with_the_shells_status(tmp_path, signame, status, said):
    run_dir = tmp_path / "run"
    code, err = signal_mid_run(run_dir, signame)
    assert code == status and said in err, err
    assert_stopped_cleanly(run_dir, err)


def test_a_repeated_sigterm_does_not_cut_the_clean_stop_short(tmp_path):
    run_dir = tmp_path / "run"
    code, err = signal_mid_run(run_dir, "SIGTERM", times=3)   # a scheduler that signals more than once
    assert code == 143 and "stopped by SIGTERM" in err, err
    assert_stopped_cleanly(run_dir, err)


def test_truncated_checkpoint_falls_back_to_the_previous_good_one(tmp_path, reference):
    run_dir = tmp_path / "run"
    quiet = dict(progress=False, echo=lambda s: None)
    with pytest.raises(Crash):
        run(build_config(None, **ARGS), PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(4),)), run_dir, **quiet)
    newest = run_dir / "checkpoint.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    warnings = []
    resume(run_dir, PluginHost(load_entrypoints=False), progress=False, warn=warnings.append)
    assert any("unreadable" in w and "checkpoint.prev" in w for w in warnings)
    assert_same(reference, outcome(run_dir))


def test_a_run_killed_before_its_first_checkpoint_resumes_from_the_start(tmp_path, reference):
    run_dir = tmp_path / "run"
    quiet = dict(progress=False, echo=lambda s: None)
    with pytest.raises(Crash):
        run(build_config(None, **ARGS), PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(1),)), run_dir, **quiet)
    for name in ("checkpoint.safetensors", "checkpoint.prev.safetensors", "history.csv"):
        (run_dir / name).unlink(missing_ok=True)   # as if killed while the baselines were scored
    said = []
    resume(run_dir, PluginHost(load_entrypoints=False), progress=False, echo=said.append)
    assert any("before its first checkpoint" in s for s in said)
    assert_same(reference, outcome(run_dir))


def test_no_usable_checkpoint_is_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        run(build_config(None, **ARGS), PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(2),)), run_dir,
            progress=False, echo=lambda s: None)
    for name in ("checkpoint.safetensors", "checkpoint.prev.safetensors"):
        (run_dir / name).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        resume(run_dir, PluginHost(load_entrypoints=False))
    code, _, err = invoke(["run", "--resume", str(run_dir), "--quiet"])
    assert code == 2 and "no usable checkpoint" in err


def test_resume_can_extend_but_not_change_the_run(tmp_path):
    run_dir = tmp_path / "run"
    quiet = dict(progress=False, echo=lambda s: None)
    run(build_config(None, **{**ARGS, "generations": 3}), PluginHost(load_entrypoints=False), run_dir, **quiet)
    summary = resume(run_dir, PluginHost(load_entrypoints=False), overrides={"generations": 5}, **quiet)
    assert summary["generations"] == 5 and len(pd.read_csv(run_dir / "history.csv")) == 5
    code, _, err = invoke(["run", "--resume", str(run_dir), "--seed", "9", "--quiet"])
    assert code == 2 and "cannot change --seed" in err
    code, _, err = invoke(["run", "--resume", str(tmp_path / "nothing"), "--quiet"])
    assert code == 2 and "not a run directory" in err


def test_a_finished_run_goes_further_only_with_a_larger_limit_and_sets_its_old_results_aside(tmp_path):
    from promptopt.runs import describe_run

    run_dir = tmp_path / "run"
    quiet = dict(progress=False, echo=lambda s: None)
    run(build_config(None, **{**ARGS, "generations": 2}), PluginHost(load_entrypoints=False), run_dir, **quiet)
    code, _, err = invoke(["run", "--resume", str(run_dir), "--generations", "2", "--quiet"])
    assert code == 2 and "has finished: it ran 2 generations (12 evaluations), which --generations 2 does not exceed" in err, err
    assert "give --generations above 2 (or --budget above 12)" in err
    code, _, err = invoke(["run", "--resume", str(run_dir), "--quiet"])   # a plain resume writes the same again
    assert code == 0 and "writing its results again" in err and not (run_dir / "finished-at-12").exists()
    old_summary = (run_dir / "summary.json").read_text()
    assert invoke(["export", str(run_dir)])[0] == 0   # scores.csv beside summary.json: set aside with it
    warned = []
    with pytest.raises(Crash):   # resumed to go further, then stopped before the new budget
        resume(run_dir, PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(3),)),
               overrides={"budget": 30}, warn=warned.append, **quiet)
    assert "finished-at-12" in warned[0]
    assert not (run_dir / "summary.json").exists() and not (run_dir / "best").exists()
    assert (run_dir / "finished-at-12" / "summary.json").read_text() == old_summary
    assert (run_dir / "finished-at-12" / "best" / "soft_prompt.safetensors").is_file()
    assert (run_dir / "finished-at-12" / "scores.csv").is_file() and not (run_dir / "scores.csv").exists()
    row = describe_run(run_dir)
    assert (row["status"], row["evaluations"], row["of"]) == ("stopped", 18, 30)   # the new budget is kept
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["config"]["budget"] == 30 and saved["config"]["generations"] is None
    assert saved["resumed"][-1]["overrides"] == {"budget": 30}
    summary = resume(run_dir, PluginHost(load_entrypoints=False), **quiet)   # a plain resume keeps going to 30
    assert summary["evaluations"] == 30 and len(pd.read_csv(run_dir / "history.csv")) == 5


def test_a_stopped_run_past_a_smaller_new_budget_is_refused_and_one_at_its_count_finishes(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):   # stopped after 3 of 5 generations: 18 evaluations done
        run(build_config(None, **{**ARGS, "generations": 5}),
            PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(3),)), run_dir, progress=False,
            echo=lambda s: None)
    code, _, err = invoke(["run", "--resume", str(run_dir), "--budget", "12", "--quiet"])
    assert code == 2 and "has already done 18 evaluations, more than --budget 12 allows (12)" in err, err
    assert "give --budget 18" in err and not (run_dir / "summary.json").exists()
    code, _, err = invoke(["run", "--resume", str(run_dir), "--budget", "18", "--quiet"])
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["evaluations"], summary["stop_reason"]) == (18, "budget")
    code, _, err = invoke(["run", "--resume", str(run_dir), "--budget", "18", "--quiet"])
    assert code == 2 and "has finished: it spent its budget (18 evaluations, the budget 18)" in err, err


def test_a_finished_run_names_the_rule_that_stopped_it(tmp_path):
    run_dir = tmp_path / "run"
    run(build_config(None, **{**ARGS, "target_loss": 1e9}), PluginHost(load_entrypoints=False), run_dir,
        progress=False, echo=lambda s: None)
    code, _, err = invoke(["run", "--resume", str(run_dir), "--target-loss", "1e8", "--quiet"])
    assert code == 2 and "reached --target-loss" in err and "give a lower --target-loss" in err


class CtrlCAt:
    """Ctrl-C as the run starts its generations (0) or after generation N."""

    def __init__(self, generation):
        self.generation = generation

    @promptopt.hookimpl
    def promptopt_run_start(self, state):
        if self.generation == 0:
            raise KeyboardInterrupt

    @promptopt.hookimpl
    def promptopt_generation_end(self, state, record):
        if record["generation"] == self.generation:
            raise KeyboardInterrupt


@pytest.mark.parametrize("when, said", [("baselines", "has no checkpoint yet"), (0, "keeps its baselines"),
                                        (1, "keeps its 1 finished generation:"), (2, "keeps its 2 finished generations")])
def test_ctrl_c_says_what_the_stopped_run_keeps(tmp_path, monkeypatch, capsys, when, said):
    import promptopt.runner as runner

    if when == "baselines":
        monkeypatch.setattr(runner, "_baselines", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    plugins = () if when == "baselines" else (CtrlCAt(when),)
    with pytest.raises(KeyboardInterrupt):
        run(build_config(None, **ARGS), PluginHost(load_entrypoints=False, extra_plugins=plugins), tmp_path / "r",
            progress=False, echo=lambda s: None)
    err = capsys.readouterr().err
    assert said in err and "continue it with `promptopt run --resume" in err, err


def test_early_stopping_by_target_loss_and_patience(tmp_path):
    quiet = dict(progress=False, echo=lambda s: None)
    s = run(build_config(None, **{**ARGS, "target_loss": 1e9}), PluginHost(load_entrypoints=False), tmp_path / "a", **quiet)
    assert s["stop_reason"] == "target_loss" and s["generations"] == 1
    s = run(build_config(None, **{**ARGS, "generations": 40, "patience": 2, "optimizer": "random"}),
            PluginHost(load_entrypoints=False), tmp_path / "b", **quiet)
    history = pd.read_csv(tmp_path / "b" / "history.csv")
    assert s["stop_reason"] in ("patience", "generations")
    if s["stop_reason"] == "patience":
        assert history["best_loss"].iloc[-1] == history["best_loss"].iloc[-3]
    s = run(build_config(None, **{**ARGS, "generations": 1000, "time_limit": 1.0}), PluginHost(load_entrypoints=False),
            tmp_path / "c", **quiet)
    assert s["stop_reason"] == "time_limit" and s["generations"] < 1000
    assert json.loads((tmp_path / "c" / "summary.json").read_text())["stop_reason"] == "time_limit"


@pytest.mark.parametrize("key, given, then", [("min_mass", 0, None), ("init", "random", "random"),
                                             ("counterbalance", False, False)])
def test_a_run_saved_before_an_option_existed_resumes_as_it_ran_then(tmp_path, monkeypatch, key, given, then):
    import promptopt.runner as runner
    from promptopt.config import BEFORE_OPTION_EXISTED

    assert BEFORE_OPTION_EXISTED[key] == then
    run_dir = tmp_path / "run"
    quiet = dict(progress=False, echo=lambda s: None)
    run(build_config(None, **{**ARGS, "generations": 2, key: given}), PluginHost(load_entrypoints=False), run_dir, **quiet)
    saved = json.loads((run_dir / "config.json").read_text())
    del saved["config"][key]                          # as written before the option existed
    (run_dir / "config.json").write_text(json.dumps(saved))
    seen, real = [], runner.open_session
    monkeypatch.setattr(runner, "open_session", lambda host, config: seen.append(getattr(config, key)) or real(host, config))
    resume(run_dir, PluginHost(load_entrypoints=False), overrides={"generations": 3}, **quiet)
    assert seen == [then]   # what the run ran with, whatever today's default is


def test_the_cli_puts_back_the_callers_signal_handlers_when_it_returns():
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        code, _, err = invoke(["list", "optimizers"])
        assert code == 0, err
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


@pytest.mark.parametrize("finished", [True, False])
def test_a_run_whose_checkpoints_are_gone_is_not_restarted_over_its_results(tmp_path, finished):
    from conftest import finished_tiny_run

    run_dir = finished_tiny_run(tmp_path / "r")
    if not finished:
        (run_dir / "summary.json").unlink()
    for name in ("checkpoint.safetensors", "checkpoint.prev.safetensors"):
        (run_dir / name).unlink(missing_ok=True)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"}
    code, out, err = invoke(["run", "--resume", str(run_dir)])
    assert code == 2 and err.count("\n") == 1 and "has no checkpoint" in err and "history.csv" in err, err
    assert "would overwrite them" in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".lock"} == before


def test_resuming_a_directory_that_cannot_be_written_fails_before_the_model_loads(tmp_path, monkeypatch):
    from conftest import finished_tiny_run

    from promptopt import host as host_module, runner

    run_dir = finished_tiny_run(tmp_path / "r")
    real_access = os.access
    monkeypatch.setattr(runner.os, "access",   # readable, not writable: as a read-only mount or chmod 555 (not as root)
                        lambda p, mode, **kw: not (mode & os.W_OK) if str(p) == str(run_dir) else real_access(p, mode, **kw))
    monkeypatch.setattr(host_module.PluginHost, "create_model", lambda *a, **k: pytest.fail("the model was loaded"))
    code, _, err = invoke(["run", "--resume", str(run_dir)])
    assert code == 2 and err.count("\n") == 1 and f"{run_dir} is not writable" in err, err


def test_a_smaller_limit_on_a_finished_run_is_told_with_what_the_run_did(tmp_path):
    run_dir = tmp_path / "run"
    run(build_config(None, **{**ARGS, "generations": 3}), PluginHost(load_entrypoints=False), run_dir,
        progress=False, echo=lambda s: None)
    code, _, err = invoke(["run", "--resume", str(run_dir), "--generations", "2", "--quiet"])
    assert code == 2 and "it ran 3 generations (18 evaluations), which --generations 2 does not exceed" in err, err
    assert "give --generations above 3 (or --budget above 18)" in err


def test_a_finished_run_whose_newest_checkpoint_is_damaged_writes_its_results_again_from_the_one_before(tmp_path):
    run_dir = tmp_path / "run"
    run(build_config(None, **{**ARGS, "generations": 3}), PluginHost(load_entrypoints=False), run_dir,
        progress=False, echo=lambda s: None)
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "checkpoint.safetensors").write_bytes(b"cut off")   # the .prev one is a generation behind
    code, _, err = invoke(["run", "--resume", str(run_dir), "--quiet"])
    assert code == 0, err
    assert "has finished: it ran 3 generations (18 evaluations)" in err, err   # counted from its results, not the .prev
    assert "writing its results again" in err and not list(run_dir.glob("finished-at-*"))
    again = json.loads((run_dir / "summary.json").read_text())
    assert (again["loss"], again["evaluations"]) == (summary["loss"], summary["evaluations"])   # exact resume


def test_a_run_saved_with_ray_settings_resumes_locally_with_executor_local(tmp_path):
    """A Ray run's config.json keeps its actors and address; --executor local replaces them."""
    quiet = dict(progress=False, echo=lambda s: None)
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        run(build_config(None, **ARGS), PluginHost(load_entrypoints=False, extra_plugins=(CrashAt(2),)), run_dir, **quiet)
    saved = json.loads((run_dir / "config.json").read_text())
    saved["config"].update(executor="ray", actors=2, ray_address="auto")   # as a Ray run records them
    (run_dir / "config.json").write_text(json.dumps(saved))
    code, _, err = invoke(["run", "--resume", str(run_dir), "--executor", "local", "--quiet"])
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["evaluations"] == ARGS["popsize"] * ARGS["generations"]


def test_a_stop_during_a_checkpoint_write_is_told_with_the_generations_the_checkpoint_keeps(tmp_path, monkeypatch):
    """history.csv, the run_stopped event and the checkpoint agree on how many generations are kept."""
    import promptopt.runner as runner
    from promptopt.checkpoint import load_checkpoint

    real_save, calls = runner.save_checkpoint, []

    def save_then_stop(run_dir, payload):
        calls.append(1)
        if len(calls) == 4:   # the baselines' checkpoint, then generations 1 and 2; stopped writing the 3rd
            raise KeyboardInterrupt
        real_save(run_dir, payload)
    monkeypatch.setattr(runner, "save_checkpoint", save_then_stop)
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(build_config(None, **ARGS), PluginHost(load_entrypoints=False), run_dir, progress=False, echo=lambda s: None)
    kept = len(load_checkpoint(run_dir, warn=lambda _: None)["history"])
    stopped = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()][-1]
    assert stopped["event"] == "run_stopped" and stopped["generations"] == kept == len(pd.read_csv(run_dir / "history.csv"))
