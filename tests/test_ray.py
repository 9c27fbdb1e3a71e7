"""`--executor ray`: the same numbers as the local evaluator, and a run that survives a lost actor.

One local Ray session (2 CPUs, no dashboard) is shared by the module and shut down at its end;
the actors are CPU actors on the tiny model. Needs the `ray` extra (pip install 'promptopt[ray]');
without it these tests are skipped, except the one that checks the missing-Ray message.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

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
    ("not an address", ["--ray-address 'not an address' is not an address Ray can join"]),
    ("127.0.0.1:99999", ["--ray-address 127.0.0.1:99999 has port 99999, outside 1-65535"]),
    ("http://127.0.0.1:8265", ["is a URL", "drop the http://", "HOST:6379"]),
    ("gcs://127.0.0.1:6379", ["has the scheme gcs://", "ray://HOST:PORT"]),
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


def test_an_empty_ray_address_exits_2_in_one_line_instead_of_a_traceback(tmp_path):
    """ray.init(address='') raises ValueError: Invalid address format (a 51-line traceback)."""
    if ray is None:
        pytest.skip("ray is not installed")
    code, _, stderr = invoke(["run", *TINY, "--executor", "ray", "--ray-address", "", "--out", str(tmp_path / "r")])
    assert code == 2 and len(stderr.strip().splitlines()) == 1, stderr
    assert "--ray-address is empty; give auto, HOST:PORT or ray://HOST:PORT" in stderr, stderr


@needs_ray
@pytest.mark.parametrize("error, needles", [
    (ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                     "setting `--address` flag or `RAY_ADDRESS` environment variable."),
     ["--ray-address auto found no Ray running on this node", "ray start --head"]),
    (ValueError("Invalid address format: x"),
     ["--ray-address auto is not an address Ray can join (Invalid address format: x)", "HOST:PORT"]),
])
def test_ray_init_refusing_the_address_is_one_usage_line_naming_ray_address(monkeypatch, error, needles):
    """What ray.init raises about an address (its text tells the user to set Ray's own `--address`
    flag) becomes one line about promptopt's --ray-address; nothing is started, nothing shut down."""
    from promptopt.config import RunConfig
    from promptopt.distributed import RayExecutor
    from promptopt.errors import UsageError

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray, "shutdown", lambda *a, **k: None)   # the module's own Ray stays up
    with pytest.raises(UsageError) as info:
        RayExecutor(RunConfig(model="tiny").validate(), address="auto")
    message = str(info.value)
    assert "\n" not in message and "`--address`" not in message, message
    assert all(n in message for n in needles), message


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
def test_ray_actors_give_the_local_per_candidate_losses(ray_session, capsys):
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
    capsys.readouterr()
    with RayExecutor(config, session, actors=2, progress=True) as executor:
        # actors take seconds to tens of seconds to load the model: one line says so (not with --quiet)
        assert capsys.readouterr().err.splitlines().count("starting 2 Ray actors (each loads the model) ...") == 1
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
    ran_on = json.loads((out / "summary.json").read_text())["executor"]   # the pool as it ran, for the record
    assert (ran_on["executor"], ran_on["actors"], ran_on["restarts"], ran_on["lost"]) == ("ray", 2, 0, [])
    assert json.loads((local_run / "summary.json").read_text())["executor"] == {"executor": "local"}
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
    # the recovery is not silent, even with --quiet: one line, and the pool's record after the run
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == ["warning: Ray actor 0 died (it was killed by `ray.kill`); its slice went to actor 1, "
                        "a replacement (actor 2) is starting (restart 1 of at most 8)"], err
    described = executor.describe()   # after close(), as the runner would record it
    assert {k: described[k] for k in ("executor", "actors", "restarts", "max_restarts", "retries")} == {
        "executor": "ray", "actors": 2, "restarts": 1, "max_restarts": 8, "retries": 1}
    assert described["lost"] == [{"actor": 0, "reason": "it was killed by `ray.kill`"}]
    assert len(described["nodes"]) == 1 and json.dumps(described)


@needs_ray
def test_more_actors_than_the_cluster_can_place_is_refused_in_one_line_instead_of_waiting(ray_session, tmp_path):
    """Ray queues an actor it cannot place and waits, silently, up to the 15 min start timeout."""
    from promptopt.config import RunConfig
    from promptopt.distributed import RayExecutor
    from promptopt.errors import UsageError

    started = time.perf_counter()
    with pytest.raises(UsageError, match=r"^--actors 3 needs 3 CPUs but the Ray cluster has 2; give --actors 2 "
                                         r"or fewer \(or join a larger cluster with --ray-address\)$"):
        RayExecutor(RunConfig(model="tiny").validate(), actors=3, start_timeout=30)
    assert time.perf_counter() - started < 10
    out = tmp_path / "r"
    code, _, stderr = invoke(["run", *TINY, "--executor", "ray", "--actors", "3", "--out", str(out)])
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "--actors 3 needs 3 CPUs" in stderr, stderr
    assert not out.exists()   # no generation ran: nothing to resume
    # GPU actors take a GPU and a CPU each (plain Python: no GPU needed)
    pool = RayExecutor.__new__(RayExecutor)
    pool.cuda = True
    with pytest.raises(UsageError, match="--actors 3 needs 3 GPUs but the Ray cluster has 2; give --actors 2"):
        pool._plan_pool({"CPU": 16.0, "GPU": 2.0}, 3, 1)
    with pytest.raises(UsageError, match="--actors 2 needs 2 CPUs but the Ray cluster has 1; give --actors 1"):
        pool._plan_pool({"CPU": 1.0, "GPU": 2.0}, 2, 1)
    pool._plan_pool({"CPU": 16.0, "GPU": 2.0}, None, 1)
    assert pool.n_actors == 2 and pool.actor_options == {"num_gpus": 1, "num_cpus": 1}


@needs_ray
def test_a_sigterm_while_the_driver_waits_on_its_actors_stops_the_run_as_sigterm_not_ctrl_c(ray_session, monkeypatch):
    """ray.wait and ray.get turn whatever a signal handler raises into a plain KeyboardInterrupt, so
    the CLI's SIGTERM stop (exit 143, resumable) would read as Ctrl-C (exit 130)."""
    from promptopt.config import RunConfig
    from promptopt.distributed import RayExecutor
    from promptopt.errors import Stopped

    slow = ray.remote(num_cpus=0)(lambda: __import__("time").sleep(30))
    refs = []
    monkeypatch.setattr(RayExecutor, "_submit", lambda self, actor, z, span: refs.append(slow.remote()) or refs[-1])

    def stop(signum, frame):   # what the CLI installs for SIGTERM
        raise Stopped(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    try:
        with RayExecutor(RunConfig(model="tiny").validate(), actors=1) as executor:
            timer.start()
            with pytest.raises(KeyboardInterrupt) as info:
                executor(torch.zeros(2, 4))   # waits in ray.wait for the slow "slice"
        assert signal.getsignal(signal.SIGTERM) is stop   # close() put the handler back
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
        for ref in refs:
            ray.cancel(ref, force=True)
    assert isinstance(info.value, Stopped) and info.value.signum == signal.SIGTERM
