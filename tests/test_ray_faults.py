"""`--executor ray` stopped by a signal: the same clean, resumable stop as a local run, and no Ray
process left behind by the Ray the run started.

Each test starts a Ray of its own (in a short temp dir of its own, so that the processes it leaves,
if any, can be told from those of any other Ray on the machine): ~10-30 s each on a 2-core CPU.
Needs the `ray` extra (pip install 'promptopt[ray]').
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

try:
    import ray
except ImportError:
    ray = None

pytestmark = pytest.mark.skipif(ray is None, reason="ray is not installed (pip install 'promptopt[ray]')")


@pytest.fixture
def ray_dir():
    """A short temp dir for Ray's sessions (its socket paths must stay under 107 characters)."""
    path = tempfile.mkdtemp(prefix="pray", dir="/tmp")
    try:
        yield path
    finally:
        for pid in _processes_of(path):   # only what this test's Ray left, if the test failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(path, ignore_errors=True)


def _processes_of(ray_dir: str) -> list[int]:
    """The processes whose command line names ray_dir: the raylet, GCS, agents and workers of a Ray
    started there (its session directory is in every one's arguments)."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            text = Path(cmdline).read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(cmdline.split("/")[2])
        if ray_dir in text and pid != os.getpid():
            found.append(pid)
    return found


def _gone(ray_dir: str, timeout: float = 10.0) -> list[int]:
    """The processes of ray_dir still alive after timeout seconds (an empty list: all gone)."""
    deadline = time.monotonic() + timeout
    while (left := _processes_of(ray_dir)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return left


def test_sigterm_stops_a_quiet_ray_run_as_a_local_one_exit_143_one_line_and_no_ray_left(tmp_path, ray_dir):
    """ray.init replaces the SIGTERM handler (sys.exit(15): exit 134 after a C++ crash report,
    events.jsonl 'error: SystemExit: 15'); with --quiet, Ray's own INFO and token lines were printed too."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_TMPDIR": ray_dir}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "promptopt", "run", "--model", "tiny", "--popsize", "8", "--no-icl",
                             "--quiet", "--generations", "1500", "--seed", "7", "--executor", "ray", "--actors", "2",
                             "--out", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240   # a loaded 2-core machine: Ray and two actors take a while
        while not (out / "history.csv").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None and (out / "history.csv").exists(), "the run never finished a generation"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr   # no "*** SIGTERM received ... PC: @", no Ray INFO or token lines
    assert lines[0].startswith(f"stopped by SIGTERM; the run in {out} keeps its ") and \
        f"continue it with `promptopt run --resume {out}`" in lines[0], stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "run_stopped" and events[-1]["reason"] == "SIGTERM", events[-1]
    assert glob.glob(f"{ray_dir}/ray/session_2*"), "the run did not use its own Ray"   # RAY_TMPDIR/ray/
    assert _gone(ray_dir) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stop_signal_during_ray_init_shuts_down_the_ray_it_was_starting(ray_dir, monkeypatch, signum):
    """A signal in the middle of ray.init interrupts Ray while it starts its node: the raylet, GCS,
    dashboard and runtime-env agents are then out of ray.shutdown()'s reach and outlive the run.
    The signal is held until ray.init returns, the new Ray is shut down, then the stop goes on as
    the signal's own (KeyboardInterrupt for Ctrl-C, the CLI's Stopped for SIGTERM)."""
    from promptopt.config import RunConfig
    from promptopt.distributed import RayExecutor
    from promptopt.errors import Stopped

    if ray.is_initialized():
        pytest.skip("a Ray is already initialised in this process")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", raising=False)   # what the executor sets goes again

    def stop(sig, frame):   # the CLI's SIGTERM handler; Ctrl-C keeps Python's own
        raise Stopped(sig)

    previous = signal.signal(signal.SIGTERM, stop)

    def signal_once_ray_starts() -> None:
        deadline = time.monotonic() + 120
        while not glob.glob(f"{ray_dir}/session_2*") and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)   # its processes are starting: ray.init takes seconds more
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=signal_once_ray_starts, daemon=True)
    thread.start()
    try:
        with pytest.raises(KeyboardInterrupt) as info:
            RayExecutor(RunConfig(model="tiny").validate(), actors=1,
                        init_kwargs={"num_cpus": 1, "_temp_dir": ray_dir})
        thread.join(timeout=5)
        assert signal.getsignal(signal.SIGTERM) is stop   # not Ray's sys.exit handler
        assert not ray.is_initialized()
        assert _gone(ray_dir) == []
    finally:
        signal.signal(signal.SIGTERM, previous)
        if ray.is_initialized():
            ray.shutdown()
    assert isinstance(info.value, Stopped) == (signum == signal.SIGTERM)
