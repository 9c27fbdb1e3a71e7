"""The example TensorBoard tracker plugin logs every generation of a run through the lifecycle hooks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from promptopt.config import build_config
from promptopt.host import PluginHost
from promptopt.runner import run

EXAMPLE = Path(__file__).parent.parent / "examples" / "tensorboard_tracker" / "promptopt_tensorboard.py"


def test_tensorboard_tracker_plugin_logs_each_generation(tmp_path):
    pytest.importorskip("tensorboard", reason="the tracker example needs tensorboard (in the test extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = importlib.util.spec_from_file_location("promptopt_tensorboard", EXAMPLE)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    config = build_config(None, model="tiny", popsize=5, generations=3, icl_baseline=False)
    summary = run(config, PluginHost(load_entrypoints=False, extra_plugins=(plugin,)), tmp_path / "r",
                  progress=False, echo=lambda s: None)
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    best = events.Scalars("loss/best")
    assert [e.step for e in best] == [5, 10, 15]
    history = pd.read_csv(tmp_path / "r" / "history.csv")
    assert [e.value for e in best] == pytest.approx(list(history["best_loss"]), abs=1e-5)
    assert len(events.Scalars("scores/PDI")) == 3
    assert events.Scalars("loss/aligned")[0].value == pytest.approx(summary["loss"], abs=1e-4)
