"""`--executor ray`: the same numbers as the local evaluator, and a run that survives a lost actor.

One local Ray session (2 CPUs, no dashboard) is shared by the module and shut down at its end;
the actors are CPU actors on the tiny model. Needs the `ray` extra (pip install 'promptopt[ray]');
without it these tests are skipped, except the one that checks the missing-Ray message.
"""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
import torch

from conftest import invoke

try:
    import ray
except ImportError:
    ray = None

needs_ray = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'promptopt[ray]')")

TINY = ["--model", "tiny", "--popsize", "6", "--generations", "3", "--seed", "3", "--quiet"]


def test_executor_ray_without_ray_installed_exits_2_saying_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    code, stdout, stderr = invoke(["run", *TINY, "--executor", "ray", "--out", str(tmp_path / "r")])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'promptopt[ray]'" in lines[0], stderr
    assert not (tmp_path / "r").exists()  # refused before loading anything


@pytest.mark.parametrize("args, needle", [
    (["--actors", "2"], "--ray-address and --actors need --executor ray"),
    (["--ray-address", "auto"], "--ray-address and --actors need --executor ray"),
    (["--executor", "ray", "--actors", "0"], "--actors must be >= 1"),
    (["--executor", "dask"], "'dask' is not one of 'local', 'ray'"),
])
def test_bad_executor_options_exit_2(tmp_path, args, needle):
    if "ray" in args and ray is None:
        pytest.skip("ray is not installed")
    code, _, stderr = invoke(["run", *TINY, *args, "--out", str(tmp_path / "r")])
    assert code == 2 and needle in stderr, stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address, needles", [
    ("127.0.0.1:{port}", ["cannot reach the Ray cluster at 127.0.0.1:", "no connection within 5 s"]),
    ("ray://127.0.0.1:{port}", ["cannot reach the Ray cluster at ray://127.0.0.1:"]),
    ("headnode", ["--ray-address headnode is not an address Ray can join", "HOST:PORT"]),
])
def test_a_ray_address_nothing_listens_on_fails_at_once_before_the_model_loads(tmp_path, monkeypatch, address,
                                                                                needles):
    import time

    import promptopt.runner as runner

    monkeypatch.setattr(runner, "open_session", lambda *a, **k: pytest.fail("loaded a model"))
    started = time.perf_counter()
    code, _, stderr = invoke(["run", *TINY, "--executor", "ray", "--ray-address", address.format(port=_closed_port()),
                              "--out", str(tmp_path / "r")])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert all(n in stderr for n in needles), stderr
    assert time.perf_counter() - started < 10 and not (tmp_path / "r").exists()


def test_a_worker_given_the_drivers_init_tokens_builds_its_space_without_redoing_the_screening(monkeypatch):
    """--init screen scores a population before the search; each Ray actor gets the driver's
    pick instead of scoring it again (plain Python: no Ray needed)."""
    from promptopt import runner, session
    from promptopt.config import RunConfig
    from promptopt.distributed import SurveyWorker, space_fingerprint
    from promptopt.host import PluginHost

    config = RunConfig(model="tiny", popsize=4, seed=5, init="screen").validate()
    driver = runner.open_session(PluginHost(), config)

    def screening(*args, **kwargs):
        raise AssertionError("the worker screened again")

    monkeypatch.setattr(session, "fittest_tokens", screening)
    worker = SurveyWorker(config, init_tokens=driver.space.init_tokens)
    assert worker.session.space.init_tokens == driver.space.init_tokens
    assert space_fingerprint(worker.session.space) == space_fingerprint(driver.space)
    with pytest.raises(AssertionError, match="screened again"):   # without them it would
        SurveyWorker(config)


@pytest.fixture(scope="module")
def ray_session():
    if ray is None:
        pytest.skip("ray is not installed (pip install 'promptopt[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=80 * 2**20,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    code, _, err = invoke(["run", *TINY, "--out", str(out)])
    assert code == 0, err
    return out


def _history(run_dir):
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def _same_run(a, b):
    # equal to float rounding: same kernels and one thread, but an actor packs its slice of the
    # population into other batch shapes than the driver does
    pd.testing.assert_frame_equal(_history(a), _history(b), check_exact=False, rtol=1e-5, atol=1e-5)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["loss"] == pytest.approx(sb["loss"], rel=1e-5, abs=1e-5)
    assert sa["evaluations"] == sb["evaluations"]


@needs_ray
def test_ray_actors_give_the_local_per_candidate_losses(ray_session):
    from promptopt.config import RunConfig
    from promptopt.distributed import LocalExecutor, RayExecutor
    from promptopt.host import PluginHost
    from promptopt.runner import open_session

    config = RunConfig(model="tiny", popsize=7, seed=5).validate()
    session = open_session(PluginHost(), config)
    gen = torch.Generator().manual_seed(0)
    lo, hi = session.space.lower, session.space.upper
    z = lo + (hi - lo) * torch.rand(7, session.space.dim, generator=gen)  # 7: chunks of 4 and 3
    local = LocalExecutor(session)(z)
    with RayExecutor(config, session, actors=2) as executor:
        assert len(executor.actors) == 2 and not executor._owns_ray
        assert executor._init_tokens == session.space.init_tokens   # what each actor is given
        remote = executor(z)
        assert executor.stats.chunks == [4, 3]
        pids = {info["pid"] for info in executor._infos.values()}
        again = executor(z[:1])  # fewer candidates than actors: one chunk
    assert len(pids) == 2
    # packing order changes float rounding: 1e-5 in an answer is ~1e-4 in a score (scores weigh item
    # means by 25-40 per term), and the loss is a mean of score errors, so it gets the scores' bound
    # (5.7e-5 seen on a loss of 47)
    torch.testing.assert_close(remote.scores, local.scores, rtol=1e-6, atol=5e-4)
    torch.testing.assert_close(remote.loss, local.loss, rtol=1e-6, atol=5e-4)
    torch.testing.assert_close(remote.answers.probs, local.answers.probs, rtol=0, atol=1e-5)
    torch.testing.assert_close(remote.entropy, local.entropy, rtol=0, atol=1e-5)
    torch.testing.assert_close(remote.answers.expected, local.answers.expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(again.loss, local.loss[:1], rtol=1e-6, atol=5e-4)


@needs_ray
def test_run_on_ray_has_the_local_history_for_the_same_seed(ray_session, local_run, tmp_path):
    out = tmp_path / "ray"
    code, _, err = invoke(["run", *TINY, "--executor", "ray", "--actors", "2", "--out", str(out)])
    assert code == 0, err
    _same_run(local_run, out)
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["executor"] == "ray" and config["actors"] == 2
    assert ray_session.is_initialized()  # a Ray it did not start is left running


@needs_ray
def test_an_actor_killed_mid_generation_is_replaced_and_the_run_completes_unchanged(
        ray_session, local_run, tmp_path, monkeypatch):
    from promptopt.distributed import RayExecutor

    seen = {"submits": 0, "executor": None}
    submit = RayExecutor._submit

    def kill_during_generation_two(self, actor, z, span):
        ref = submit(self, actor, z, span)
        seen["submits"] += 1
        seen["executor"] = self
        if seen["submits"] == 3:  # generation 2's first chunk is in flight on this actor
            ray.kill(actor)
        return ref

    monkeypatch.setattr(RayExecutor, "_submit", kill_during_generation_two)
    out = tmp_path / "ray-killed"
    code, _, err = invoke(["run", *TINY, "--executor", "ray", "--actors", "2", "--out", str(out)])
    assert code == 0, err
    executor = seen["executor"]
    assert executor.restarts == 1
    assert seen["submits"] == 7  # 3 generations x 2 chunks + the lost chunk resubmitted once
    _same_run(local_run, out)
