"""Checkpoint packing: whatever a run saves comes back identical, a run's history included."""

from __future__ import annotations

import os
import signal
import time

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptopt.checkpoint import _pack, load_checkpoint, save_checkpoint

numbers = st.one_of(st.integers(-2**53, 2**53), st.floats(allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**53), numbers, st.floats(allow_nan=False, allow_infinity=True)),
                min_size=1, max_size=20))
def test_a_history_round_trips_exactly_with_its_ints_kept_ints(tmp_path_factory, rows):
    history = [{"generation": g, "mixed": m, "best_loss": b} for g, m, b in rows]
    run_dir = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(run_dir, {"history": history, "best_scores": [1.5, 2.0], "icl": None})
    back = load_checkpoint(run_dir)
    assert back["history"] == history
    assert [[type(v) for v in r.values()] for r in back["history"]] == [[type(v) for v in r.values()] for r in history]
    assert back["best_scores"] == [1.5, 2.0] and back["icl"] is None


def test_tables_that_are_not_all_numbers_still_round_trip(tmp_path):
    state = {"rows": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], "ragged": [{"a": 1.0}, {"b": 2.0}],
             "flags": [{"ok": True}], "big": [{"n": 2**60}], "tensor": torch.arange(3), "empty": []}
    save_checkpoint(tmp_path, state)
    back = load_checkpoint(tmp_path)
    assert {k: v for k, v in back.items() if k != "tensor"} == {k: v for k, v in state.items() if k != "tensor"}
    assert torch.equal(back["tensor"], state["tensor"]) and type(back["big"][0]["n"]) is int


def test_a_long_history_is_packed_as_one_tensor_not_value_by_value():
    history = [{"generation": i, "evaluations": 8 * i, "best_loss": 1 / (i + 1), **{d: 50.0 + i for d in "ABCDEF"}}
               for i in range(1000)]
    tensors = {}
    packed = _pack(history, tensors)
    assert packed["columns"][0] == "generation" and set(packed["ints"]) == {"generation", "evaluations"}
    assert list(tensors.values())[0].shape == (1000, 9)
    t0 = time.perf_counter()
    _pack(history, {})
    assert time.perf_counter() - t0 < 0.05   # value by value it took ~20 ms on 2 cores; packed ~2 ms


def test_a_stop_while_a_checkpoint_is_written_keeps_the_newest_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import promptopt.checkpoint as checkpoint

    save_checkpoint(tmp_path, {"generation": 1})
    save_checkpoint(tmp_path, {"generation": 2})

    def stopped(tensors, path, metadata=None):
        open(path, "wb").write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", stopped)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, {"generation": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.safetensors", "checkpoint.safetensors"]
    assert load_checkpoint(tmp_path)["generation"] == 2


def test_a_stop_at_any_step_of_a_save_leaves_a_newest_checkpoint_that_loads(tmp_path, monkeypatch):
    import promptopt.checkpoint as checkpoint

    save_checkpoint(tmp_path, {"generation": 1})
    save_checkpoint(tmp_path, {"generation": 2})
    real_link = checkpoint._link_or_copy

    def then_ctrl_c(source, dest):   # the old checkpoint copied to .prev, the new one not yet renamed in
        real_link(source, dest)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "_link_or_copy", then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, {"generation": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.safetensors", "checkpoint.safetensors"]
    assert load_checkpoint(tmp_path)["generation"] == 2   # moved aside, it would have been gone
    monkeypatch.setattr(checkpoint, "_link_or_copy", real_link)
    save_checkpoint(tmp_path, {"generation": 3})
    assert load_checkpoint(tmp_path)["generation"] == 3
    assert checkpoint._read(tmp_path / "checkpoint.prev.safetensors")["generation"] == 2


def test_taking_the_lock_clears_the_temp_files_a_killed_process_left(tmp_path):
    from promptopt.rundir import locked

    (tmp_path / "best").mkdir()
    stale = [tmp_path / ".history.csv.ab3_x9zq", tmp_path / "best" / ".soft_prompt.safetensors.k2j3h4g5"]
    kept = [tmp_path / ".notes", tmp_path / "history.csv", tmp_path / ".history.csv.not-a-temp-name"]
    for p in stale + kept:
        p.write_text("x")
    with locked(tmp_path):
        assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_a_stop_inside_mkstemp_leaves_no_temp_file_once_the_lock_is_let_go(tmp_path, monkeypatch):
    """A signal can land after mkstemp made its file but before atomic_write holds the name (seen in CI
    under three SIGTERMs): letting go of the lock sweeps what atomic_write could not."""
    import tempfile

    import promptopt.rundir as rundir
    from promptopt.errors import Stopped

    real_mkstemp = tempfile.mkstemp

    def made_then_stopped(*args, **kwargs):
        fd, _ = real_mkstemp(*args, **kwargs)
        os.close(fd)
        raise Stopped(signal.SIGTERM)

    monkeypatch.setattr(rundir.tempfile, "mkstemp", made_then_stopped)
    theirs = tmp_path / ".report.png.99999999.ab3_x9zq"   # another process's (`promptopt report` beside the run)
    with pytest.raises(Stopped), rundir.locked(tmp_path):
        theirs.write_text("x")
        rundir.atomic_write(tmp_path / "history.csv", lambda tmp: None)
        assert False, "atomic_write should have been stopped"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", theirs.name]
