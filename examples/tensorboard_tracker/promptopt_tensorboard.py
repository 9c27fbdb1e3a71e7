"""A run tracker as a promptopt plugin: every generation's losses and scores go to TensorBoard.

Install it as a plugin with an entry point in your own pyproject.toml:

    [project.entry-points.promptopt]
    tensorboard = "promptopt_tensorboard"

then `promptopt run ...` logs to RUN_DIR/tensorboard/ and `tensorboard --logdir runs/` shows
every run. The same lifecycle hooks drive an MLflow tracker: call `mlflow.start_run()`,
`mlflow.log_metrics(record, step=...)` and `mlflow.end_run()` (`status="KILLED"` or
`"FAILED"` in promptopt_run_stopped) instead.
"""

from __future__ import annotations

import promptopt

_writers: dict[str, object] = {}


def _writer(state):
    from torch.utils.tensorboard import SummaryWriter  # needs `pip install tensorboard`

    key = str(state.run_dir)
    if key not in _writers:
        _writers[key] = SummaryWriter(log_dir=str(state.run_dir / "tensorboard"))
    return _writers[key]


@promptopt.hookimpl
def promptopt_run_start(state):
    writer = _writer(state)
    writer.add_text("config", f"```\n{state.config.to_dict()}\n```")
    writer.add_scalar("loss/naive", state.naive["loss"], 0)


@promptopt.hookimpl
def promptopt_generation_end(state, record):
    writer, step = _writer(state), record["evaluations"]
    writer.add_scalar("loss/best", record["best_loss"], step)
    writer.add_scalar("loss/mean", record["mean_loss"], step)
    for dim in state.dimensions:
        writer.add_scalar(f"scores/{dim}", record[dim], step)


@promptopt.hookimpl
def promptopt_run_end(state, summary):
    writer = _writers.pop(str(state.run_dir))
    writer.add_scalar("loss/aligned", summary["loss"], summary["evaluations"])
    writer.close()


@promptopt.hookimpl
def promptopt_run_stopped(state, reason):
    """Ctrl-C, a signal or an error: flush what was logged; a resumed run opens the writer again."""
    writer = _writers.pop(str(state.run_dir), None)
    if writer is not None:
        writer.add_text("stopped", reason, len(state.history))
        writer.close()
