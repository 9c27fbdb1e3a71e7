"""A plugin optimizer that breaks its contract stops the run with one line naming it; trackers
hear how every run session ended; --patience watches the fitness the optimizer minimises."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import promptopt
from promptopt import cli
from promptopt.config import build_config
from promptopt.errors import PluginError
from promptopt.host import PluginHost
from promptopt.optimizers import Optimizer
from promptopt.runner import RunState, _should_stop, resume, run

from conftest import invoke


class Faulty(Optimizer):
    """Uniform samples, with one fault from generation ``at`` on (1-based)."""

    name = "faulty"
    capabilities = frozenset({"exact_resume"})  # its only state is the generator, which the base saves
    fault = "nan"
    at = 2

    def _ask(self):
        z = self._uniform(self.popsize)
        if self.generation + 1 < self.at:
            return z
        if self.fault == "nan":
            z[1, 0] = float("nan")
        elif self.fault == "far":
            z[0] = 1000.0
        elif self.fault == "float64":
            z = z.double()
        elif self.fault == "rows":
            z = torch.cat([z, z])
        elif self.fault == "raise":
            raise RuntimeError("boom in _ask\nsecond line")
        return z

    def _tell(self, z, fitness):
        pass


def _plugin(fault: str, at: int = 2):
    cls = type("Faulty", (Faulty,), {"fault": fault, "at": at})

    class FaultyPlugin:
        @promptopt.hookimpl
        def promptopt_register_optimizers(self, register):
            register("faulty", cls)

    return FaultyPlugin()


def _config(**kw):
    return build_config(None, model="tiny", optimizer="faulty", popsize=4, generations=3, icl_baseline=False, **kw)


def _run(tmp_path, fault, at=2, **kw):
    host = PluginHost(load_entrypoints=False, extra_plugins=(_plugin(fault, at),))
    return run(_config(**kw), host, tmp_path / "r", progress=False, echo=lambda s: None)


@pytest.mark.parametrize("fault, says", [
    ("nan", "asked for a point that is not finite: row 1, coordinate 0 is nan"),
    ("far", "asked for a point that is outside the bounds: row 0, coordinate 0 is 1000"),
    ("float64", "Faulty._ask returned float64 on cpu, expected float32 on cpu"),
    ("rows", "Faulty._ask returned shape [8, 64], expected [n, 64] with n = popsize = 4"),
    ("raise", "ask() raised RuntimeError: boom in _ask second line"),
])
def test_a_broken_batch_stops_the_run_naming_the_optimizer_and_keeping_the_run(tmp_path, fault, says):
    with pytest.raises(PluginError) as info:
        _run(tmp_path, fault)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f'optimizer "faulty" (plugin "FaultyPlugin") in generation 2: {says}')
    assert "; the run in" in message and "keeps its 1 finished generation:" in message
    assert f"promptopt run --resume {tmp_path / 'r'}" in message
    assert len((tmp_path / "r" / "history.csv").read_text().splitlines()) == 2  # header + generation 1


def test_a_broken_first_batch_leaves_no_run_behind(tmp_path):
    with pytest.raises(PluginError, match="in generation 1: asked for a point that is outside the bounds.*it was given$"):
        _run(tmp_path, "far", at=1)
    assert not (tmp_path / "r").exists()


def test_the_cli_prints_one_line_and_exits_1_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_host", PluginHost(load_entrypoints=False, extra_plugins=(_plugin("raise"),)))
    args = ["run", "--model", "tiny", "--optimizer", "faulty", "--popsize", "4", "--generations", "3",
            "--no-icl", "--quiet", "--out", str(tmp_path / "r")]
    code, _, err = invoke(args)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith('Error: optimizer "faulty"') and "Traceback" not in err

    monkeypatch.setenv("PROMPTOPT_DEBUG", "1")
    code, _, err = invoke(["run", "--resume", str(tmp_path / "r"), "--quiet"])
    assert code == 1
    assert "Traceback" in err and "RuntimeError: boom in _ask" in err
    assert err.rstrip().splitlines()[-1].startswith('Error: optimizer "faulty"')


def test_the_evaluator_refuses_a_non_finite_soft_prompt(tiny_backend):
    from promptopt.evaluator import SoftPromptEvaluator

    evaluator = SoftPromptEvaluator(tiny_backend, ["Pick one.\n1. yes\n2. no"], [2])
    soft = torch.zeros(2, 1, tiny_backend.hidden_size)
    assert torch.isfinite(evaluator.evaluate(soft).expected).all()
    soft[1, 0, 3] = float("inf")
    with pytest.raises(ValueError, match="soft prompts must be finite"):
        evaluator.evaluate(soft)


class Tracker:
    def __init__(self, stop_at: int | None = None, stop_with: type[BaseException] = KeyboardInterrupt):
        self.events, self.stop_at, self.stop_with = [], stop_at, stop_with

    @promptopt.hookimpl
    def promptopt_run_start(self, state):
        self.events.append(("start", len(state.history)))

    @promptopt.hookimpl
    def promptopt_generation_end(self, state, record):
        self.events.append(("generation", record["generation"]))
        if record["generation"] == self.stop_at:
            raise self.stop_with()

    @promptopt.hookimpl
    def promptopt_run_end(self, state, summary):
        self.events.append(("end", state.stop_reason, summary["generations"]))

    @promptopt.hookimpl
    def promptopt_run_stopped(self, state, reason):
        self.events.append(("stopped", reason, len(state.history)))


def test_trackers_hear_a_stopped_session_and_then_the_resumed_one_finishing(tmp_path):
    config = build_config(None, model="tiny", popsize=4, generations=3, icl_baseline=False)
    first = Tracker(stop_at=2)
    with pytest.raises(KeyboardInterrupt):
        run(config, PluginHost(load_entrypoints=False, extra_plugins=(first,)), tmp_path / "r",
            progress=False, echo=lambda s: None)
    assert first.events == [("start", 0), ("generation", 1), ("generation", 2), ("stopped", "Ctrl-C", 2)]

    second = Tracker()
    resume(tmp_path / "r", PluginHost(load_entrypoints=False, extra_plugins=(second,)), progress=False,
           echo=lambda s: None)
    assert second.events == [("start", 2), ("generation", 3), ("end", "generations", 3)]
    logged = [json.loads(line) for line in (tmp_path / "r" / "events.jsonl").read_text().splitlines()]
    # the tracker, registered last, is called first and stops generation 2's hooks before the event log's
    assert [e["event"] for e in logged] == ["run_start", "generation_end", "run_stopped",
                                            "run_start", "generation_end", "run_end"]
    assert logged[2]["reason"] == "Ctrl-C" and logged[2]["generations"] == 2


def test_trackers_hear_an_error_with_its_type_and_message(tmp_path):
    tracker = Tracker()
    host = PluginHost(load_entrypoints=False, extra_plugins=(tracker, _plugin("raise", at=3)))
    with pytest.raises(PluginError):
        run(_config(), host, tmp_path / "r", progress=False, echo=lambda s: None)
    kind, reason, generations = tracker.events[-1]
    assert (kind, generations) == ("stopped", 2)
    assert reason.startswith('error: PluginError: optimizer "faulty"') and "\n" not in reason


def test_patience_watches_the_best_fitness_not_the_best_candidates_l1():
    # the L1 of the best-by-fitness candidate rises while its penalty (--min-mass) is paid off: the
    # run is still improving, and a patience on L1 would stop it
    config = build_config(None, model="tiny", patience=2, generations=100)
    rows = [{"best_loss": loss, "best_fitness": fitness} for loss, fitness in [(10, 20), (11, 15), (12, 13)]]
    state = RunState(config, Path("."), None, (), history=rows, optimizer=SimpleNamespace(evaluations=0))
    assert _should_stop(state, time.perf_counter(), 0.0) == ""
    state.history += [{"best_loss": 12, "best_fitness": 13}] * 2
    assert _should_stop(state, time.perf_counter(), 0.0) == "patience"
    # a run written before best_fitness was recorded: its rows' best_loss
    state.history = [{"best_loss": 10}, {"best_loss": 9}, {"best_loss": 10}]
    assert _should_stop(state, time.perf_counter(), 0.0) == "patience"
