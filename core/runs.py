"""`promptopt runs`: every run directory under some folders, where it stands and how far it got.

After a preemption, a crash or a study left half done, this is the list of what to resume. It
reads the small files a run writes (config.json, history.csv, summary.json, the checkpoint's
baselines) and never fails the listing for one damaged run: that run's status says what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT, PREVIOUS, load_checkpoint
from .errors import CheckpointError
from .report import read_summary
from .rundir import FINISH_OUTPUTS, is_locked, json_text, read_history, read_json

MAX_DEPTH = 4  # runs/<dir>, study/runs/<cell>, ...: deep enough for the layouts promptopt writes


def find_runs(paths: list[Path]) -> list[Path]:
    """Run directories (those holding config.json) at or below each path, sorted, each once."""
    found: dict[Path, None] = {}
    for path in paths:
        if (path / "config.json").is_file():
            found[path] = None
            continue
        for depth in range(1, MAX_DEPTH + 1):
            for config in sorted(path.glob("/".join(["*"] * depth) + "/config.json")):
                found[config.parent] = None
    return sorted(found)


def describe_run(run_dir: Path) -> dict[str, Any]:
    """One row: status (finished, stopped, running or damaged: why), a finished run's stop reason,
    target, optimizer, seed, evaluations done of planned, the naive and best L1 so far with the
    change between them, and what a finished run lacks of its outputs (stopped while writing them)."""
    row: dict[str, Any] = {"run": str(run_dir), "status": "", "stop_reason": None, "country": None,
                           "optimizer": None, "seed": None, "evaluations": None, "of": None,
                           "naive_loss": None, "loss": None, "change": None, "missing": []}
    try:
        meta = read_json(run_dir / "config.json")
        config = meta.get("config")
        if not isinstance(config, dict):
            raise CheckpointError(f"{run_dir}/config.json holds a \"config\" that is not a table of the run's "
                                  "options; restore the file `promptopt run` wrote")
        target = meta.get("target") if isinstance(meta.get("target"), dict) else {}
        row.update(country=target.get("code") or config.get("country"), optimizer=config.get("optimizer"), seed=config.get("seed"),
                   of=meta.get("evaluations"))
        if (run_dir / "summary.json").exists():
            summary = read_summary(run_dir)
            row.update(status="finished", stop_reason=summary.get("stop_reason"),
                       evaluations=summary.get("evaluations"), loss=summary.get("loss"),
                       naive_loss=summary.get("naive_loss"),
                       missing=[name for name in FINISH_OUTPUTS[1:] if not (run_dir / name).exists()])
        else:
            row["status"] = "running" if is_locked(run_dir) else "stopped"
            if (run_dir / "history.csv").exists():
                history = read_history(run_dir / "history.csv", ("evaluations", "best_loss"))
                if len(history):
                    row.update(evaluations=int(history["evaluations"].iloc[-1]),
                               loss=float(history["best_loss"].iloc[-1]))
            if row["evaluations"] is None:
                row["evaluations"] = 0
            if any((run_dir / name).exists() for name in (CHECKPOINT, PREVIOUS)):
                # a checkpoint that does not load cannot be resumed: say so here, not at --resume
                try:
                    row["naive_loss"] = load_checkpoint(run_dir, warn=lambda _: None)["naive"]["loss"]
                except (KeyError, TypeError):
                    raise CheckpointError(f"{run_dir}'s checkpoint holds no naive baseline; restore it or start "
                                          "a new run") from None
    except CheckpointError as exc:
        row["status"] = f"damaged: {exc}"
    if row["loss"] is not None and row["naive_loss"]:
        row["change"] = round(100 * (row["loss"] / row["naive_loss"] - 1), 1)
    return row


def format_runs(rows: list[dict[str, Any]]) -> str:
    """The rows as an aligned text table, with the command that continues the stopped ones."""
    def cell(value: Any, fmt: str = "") -> str:
        return "–" if value is None else format(value, fmt)

    table = [("run", "status", "country", "optimizer", "seed", "evaluations", "naive L1", "L1", "change")]
    notes = []   # why each damaged run is damaged: below the table, so one long reason does not widen it
    for r in rows:
        done = f"{cell(r['evaluations'])}/{cell(r['of'])}"
        change = "–" if r["change"] is None else f"{r['change']:+.1f}%"
        status = r["status"] if r["stop_reason"] in (None, "budget") else f"{r['status']} ({r['stop_reason']})"
        if status.startswith("damaged: "):
            notes.append(f"[{len(notes) + 1}] {r['run']}: {status.removeprefix('damaged: ')}")
            status = f"damaged [{len(notes)}]"
        status += f"; lacks {', '.join(r['missing'])}" if r["missing"] else ""
        table.append((r["run"], status, cell(r["country"]), cell(r["optimizer"]), cell(r["seed"]), done,
                      cell(r["naive_loss"], ".2f"), cell(r["loss"], ".2f"), change))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    lines += notes
    stopped = [r["run"] for r in rows if r["status"] == "stopped"]
    if stopped:
        lines.append(f"{len(stopped)} stopped: continue each with `promptopt run --resume RUN`")
    incomplete = [r["run"] for r in rows if r["missing"]]
    if incomplete:
        lines.append(f"{len(incomplete)} finished without all their outputs: write them again with "
                     "`promptopt run --resume RUN` (the same results)")
    return "\n".join(lines)


def runs_json(rows: list[dict[str, Any]]) -> str:
    return json_text(rows)
