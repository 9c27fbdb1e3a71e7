"""Built-in JSONL event log: one line per lifecycle event in RUN_DIR/events.jsonl."""

import json
import time

import promptopt


def _append(state, event: str, **data) -> None:
    with open(state.run_dir / "events.jsonl", "a") as f:
        f.write(json.dumps({"event": event, "time": time.time(), **data}, default=str) + "\n")


@promptopt.hookimpl
def promptopt_run_start(state):
    _append(state, "run_start", config=state.config.to_dict(), naive=state.naive)


@promptopt.hookimpl
def promptopt_generation_end(state, record):
    _append(state, "generation_end", **record)


@promptopt.hookimpl
def promptopt_run_end(state, summary):
    _append(state, "run_end", summary=summary)


@promptopt.hookimpl
def promptopt_run_stopped(state, reason):
    _append(state, "run_stopped", reason=reason, generations=len(state.history))
