"""One optimisation run: resolve plugins, score the baselines, loop ask/evaluate/tell, write results.

Every generation ends with history.csv and a checkpoint written atomically, so a run killed
at any point resumes (``promptopt run --resume DIR``) to exactly the history and soft prompt
an uninterrupted run would have produced.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from promptopt.objectives import l1_description
from promptopt.optimizers import BatchError

from . import __version__
from .baselines import icl_system_prompt
from .checkpoint import CHECKPOINT, PREVIOUS, load_checkpoint, save_checkpoint
from .config import BEFORE_OPTION_EXISTED, SCORING_SETTINGS, RunConfig, config_from_mapping, replaced
from .distributed import check_reachable, make_executor
from .errors import CheckpointError, PluginError, PromptoptError, RunInUseError, Stopped, UsageError, exception_line
from .host import PluginHost
from .provenance import versions
from .report import summary_warnings
from .rundir import RESULT_FILES, locked, read_json, write_history, write_json, write_soft_prompt
from .session import Session, build_objective, check_optimizer, check_survey, open_session
from .softprompt import SoftPromptSpace
from .validation import batch_problem

# stopping rules, and where generations are evaluated (which does not change the numbers)
STOPPING_RULES = ("generations", "budget", "time_limit", "target_loss", "patience")
RESUME_OVERRIDABLE = (*STOPPING_RULES, "executor", "ray_address", "actors")


@dataclass
class RunState:
    """What lifecycle hooks see: the resolved run, its directory and its progress so far."""

    config: RunConfig
    run_dir: Path
    target: Any
    dimensions: tuple[str, ...]
    naive: dict[str, Any] = field(default_factory=dict)
    icl: dict[str, Any] | None = None
    history: list[dict] = field(default_factory=list)
    best_loss: float = float("inf")      # L1 of the best candidate (best by fitness: L1 + any mass penalty)
    best_fitness: float = float("inf")
    best_scores: list[float] | None = None
    elapsed: float = 0.0  # optimisation seconds over all sessions of this run
    stop_reason: str = ""
    optimizer: Any = None
    executor: dict[str, Any] | None = None   # where this session's generations ran (Ray: actors, restarts, lost)


def default_run_dir(config: RunConfig, target_code: str) -> Path:
    """runs/<time>-<optimizer>-<target code>: the resolved code, so `--country "Saudi Arabia"`, `sa` and
    `SA` name their runs alike; characters a file name should not hold become '-'."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = re.sub(r"[^A-Za-z0-9_.]+", "-", f"{config.optimizer}-{target_code}").strip("-.")
    return Path("runs") / f"{stamp}-{name}"


def _dims(dimensions, scores: torch.Tensor) -> dict[str, float]:
    return {d: round(float(v), 3) for d, v in zip(dimensions, scores.tolist())}


def _baselines(host: PluginHost, session: Session, state: RunState) -> None:
    """Naive (the bare model) and, if asked, ICL (a persona system prompt) scores."""
    objective = session.plain
    naive = objective(None)
    state.naive = {"loss": float(naive.loss[0]), "dimensions": _dims(objective.dimensions, naive.scores[0]),
                   "option_mass": float(naive.answers.mass.mean()), "answer_entropy": float(naive.entropy[0])}
    if state.config.icl_baseline:
        state.icl = icl_baseline(host, state.config, session.backend, session.target)


def icl_baseline(host: PluginHost, config: RunConfig, backend, target) -> dict[str, Any]:
    """The ICL baseline's scores: the bare model under the target's persona system prompt."""
    persona = icl_system_prompt(target)
    _, _, _, objective = build_objective(host, config, backend, persona)
    icl = objective(None)
    return {"loss": float(icl.loss[0]), "dimensions": _dims(objective.dimensions, icl.scores[0]),
            "option_mass": float(icl.answers.mass.mean()), "answer_entropy": float(icl.entropy[0]),
            "system_prompt": persona}


def run(config: RunConfig, host: PluginHost | None = None, run_dir: str | Path | None = None,
        progress: bool = True, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Start a new run; returns summary.json's contents."""
    config = config.validate()   # a RunConfig built in Python is checked as the CLI's is
    host = host or PluginHost()
    target = check_survey(host, config)[2]   # a survey that does not fit fails before the model loads
    run_dir = Path(run_dir or config.out or default_run_dir(config, target.code))
    if (run_dir / "config.json").exists():
        raise UsageError(f"run directory {run_dir} already holds a run; choose another --out or --resume it")
    check_cluster(config)
    check_optimizer(host, config)   # what its constructor refuses (a seed Nevergrad cannot take) before the model loads
    config = absolute_paths(host, config)
    created = prepare_run_dir(run_dir)
    before = set() if created else {p.name for p in run_dir.iterdir()}
    try:
        with locked(run_dir):
            if (run_dir / "config.json").exists():  # written by another start since the check above
                raise RunInUseError(f"run directory {run_dir} was just started by another process; "
                                    "choose another --out")
            return _start(config, host, run_dir, progress, echo)
    except RunInUseError:
        raise  # the directory is the other process's: touch nothing
    except BaseException as exc:
        # nothing worth resuming yet: no config (any stop), or no generation done (an error, not Ctrl-C
        # or a signal, after which resume restarts it by design); clear it away so the same command can
        # simply be run again
        if not (run_dir / "config.json").exists() or (
                isinstance(exc, Exception) and not (run_dir / "history.csv").exists()):
            _remove_new(run_dir, created, before)
        elif isinstance(exc, KeyboardInterrupt):
            note_stop(run_dir, exc)
        raise


def note_stop(run_dir: Path, exc: KeyboardInterrupt) -> None:
    """Tell the user on stderr that the stopped run is kept, and how to continue it."""
    why = f"stopped by {exc.args[0]}" if isinstance(exc, Stopped) else "stopped by Ctrl-C"
    _warn(f"{why}; the run in {run_dir} {_kept(run_dir)}: continue it with `promptopt run --resume {run_dir}`")
    exc.resume_noted = True  # the CLI adds no line of its own


def absolute_paths(host: PluginHost, config: RunConfig) -> RunConfig:
    """A local model or instrument path made absolute, so config.json resumes (and `evaluate` re-scores)
    the run from any working directory; registered names stay as they are."""
    local_model = Path(config.model).expanduser()
    changes = {}
    if config.model not in host.registries["models"] and local_model.exists():
        changes["model"] = str(local_model.resolve())
    if Path(config.instrument).is_file():
        changes["instrument"] = str(Path(config.instrument).resolve())
    return dataclasses.replace(config, **changes)


def _kept(run_dir: Path) -> str:
    """What a stopped run has to resume from: finished generations, only its baselines, or nothing yet."""
    if not any((run_dir / name).exists() for name in (CHECKPOINT, PREVIOUS)):
        return "has no checkpoint yet (it stopped before its baselines were scored) and will start again"
    try:   # what a resume starts from: the checkpoint's count (history.csv can be one generation behind it)
        done = len(load_checkpoint(run_dir, warn=lambda _: None)["history"])
    except (CheckpointError, KeyError, TypeError):
        return "has a damaged checkpoint; `promptopt runs` says more"
    return f"keeps its {_finished(done)}" if done else "keeps its baselines"


def _finished(generations: int) -> str:
    return f"{generations} finished generation{'s' * (generations != 1)}"


def check_cluster(config: RunConfig) -> None:
    """--executor ray with an address that accepts no connection fails at once, before the model loads."""
    if config.executor == "ray":
        check_reachable(config.ray_address or os.environ.get("RAY_ADDRESS"))


def prepare_run_dir(run_dir: Path) -> Path | None:
    """Make run_dir before the model loads, so a path that cannot be a directory fails at once in one
    line; returns the topmost directory this made (None: run_dir already existed)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"--out {run_dir} is a file; give a directory (new or empty) for the run")
    top = None
    for path in (run_dir, *run_dir.parents):
        if path.exists():
            break
        top = path
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except NotADirectoryError:
        under = next(p for p in run_dir.parents if p.exists())
        raise UsageError(f"--out {run_dir} is under {under}, which is a file; give a path inside a directory") from None
    except OSError as exc:
        raise UsageError(f"--out {run_dir} cannot be created ({exc.strerror or exc}); "
                         "give a directory you can write to") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise UsageError(f"--out {run_dir} is not writable; give a directory you can write to")
    return top


def _remove_new(run_dir: Path, created: Path | None, before: set[str]) -> None:
    """Undo a failed start: the directories it made, else only the entries that were not there before."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for path in run_dir.iterdir():
        if path.name not in before:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _start(config: RunConfig, host: PluginHost, run_dir: Path, progress: bool,
           echo: Callable[[str], None]) -> dict[str, Any]:
    _status(progress, _opening(config))
    session = open_session(host, config)
    space, optimizer = session.space, session.optimizer
    write_json(run_dir / "config.json", {
        "config": config.to_dict(), "model": session.backend.describe(), "instrument": session.instrument.describe(),
        "scorer": session.scorer.describe(), "target": session.target.describe(),
        "loss": l1_description(len(session.objective.dimensions)),
        "search_space": space.describe(),
        "optimizer": {"name": config.optimizer, "class": type(optimizer).__name__, "hyper": dict(config.hyper),
                      "capabilities": sorted(getattr(optimizer, "capabilities", ()))},
        "evaluator": {"position": config.position, "head_tokens": session.objective.evaluator.head_tokens,
                      "tail_tokens": session.objective.evaluator.tail_tokens},
        "generations": config.total_generations, "evaluations": config.total_evaluations, "seed": config.seed,
        "versions": versions(),
        "command": sys.argv, "started": datetime.now(timezone.utc).isoformat()})
    state = RunState(config, run_dir, session.target, session.objective.dimensions, optimizer=optimizer)
    _status(progress, "scoring the bare model" + (" and the ICL persona prompt" if config.icl_baseline else ""))
    _baselines(host, session, state)
    _save(state)
    return _optimise(host, session, state, progress, echo)


def _warn(message: str) -> None:
    print(message, file=sys.stderr)


def _status(progress: bool, message: str) -> None:
    """What a run is doing before its progress bar starts (model load, KV cache, baselines: tens of
    seconds on a CPU), on stderr beside the bar; nothing with --quiet."""
    if progress:
        _warn(f"{message} ...")


def _opening(config: RunConfig) -> str:
    screen = " and screening its start token" if config.init == "screen" and config.init_text is None else ""
    return f"loading model {config.model}, caching the survey's prompts{screen}"


def _flag(name: str) -> str:
    """A config field as the user types it: time_limit -> --time-limit."""
    return "--" + name.replace("_", "-")


def resume(run_dir: str | Path, host: PluginHost | None = None, overrides: dict[str, Any] | None = None,
           progress: bool = True, echo: Callable[[str], None] = print,
           warn: Callable[[str], None] = _warn) -> dict[str, Any]:
    """Continue a run from its newest good checkpoint, as if it had never stopped. ``warn`` (stderr by
    default) gets what the user should know but stdout's results should not hold."""
    host = host or PluginHost()
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():   # checked before the lock, which would leave a file
        raise UsageError(f"{run_dir} is not a run directory (no config.json); give a directory written by "
                         "`promptopt run`")
    if not os.access(run_dir, os.W_OK | os.X_OK):   # before the model loads: a resume writes every generation
        raise UsageError(f"{run_dir} is not writable, so the run cannot be continued there; fix its permissions, "
                         "or copy the directory somewhere writable and resume the copy")
    try:
        with locked(run_dir):
            return _resume(run_dir, host, overrides, progress, echo, warn)
    except KeyboardInterrupt as exc:
        note_stop(run_dir, exc)
        raise


def _resume(run_dir: Path, host: PluginHost, overrides: dict[str, Any] | None, progress: bool,
            echo: Callable[[str], None], warn: Callable[[str], None]) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{run_dir}/config.json is damaged ({exc}); start a new run") from None
    saved = data.get("config") if isinstance(data, dict) else None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{run_dir}/config.json is damaged (it holds no \"config\" table of the run's "
                              "options); give a directory written by `promptopt run`, or start a new run")
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    bad = sorted(set(overrides) - set(RESUME_OVERRIDABLE))
    if bad:
        raise UsageError(f"--resume continues the run's own config; it cannot change {', '.join(map(_flag, bad))} "
                         f"(only {', '.join(map(_flag, RESUME_OVERRIDABLE))})")
    saved = replaced({**BEFORE_OPTION_EXISTED, **saved}, overrides)   # options the run predates: as they then were
    config = RunConfig(**config_from_mapping({**saved, **overrides}, where=str(run_dir / "config.json"))).validate()
    check_cluster(config)
    if not any((run_dir / name).exists() for name in (CHECKPOINT, PREVIOUS)):
        results = [name for name in ("history.csv", "summary.json", "best") if (run_dir / name).exists()]
        if results:   # the checkpoints were deleted or lost: starting again would overwrite these
            raise CheckpointError(f"the run in {run_dir} has no checkpoint ({CHECKPOINT} or {PREVIOUS}) but has "
                                  f"{', '.join(results)}, so it cannot be continued and starting it again would "
                                  "overwrite them; restore the checkpoint, or start a new run with another --out")
        # stopped before its first checkpoint (during the baselines): nothing to lose, start it again
        echo(f"{run_dir} stopped before its first checkpoint; starting it again from its config")
        return _start(config, host, run_dir, progress, echo)
    checkpoint = load_checkpoint(run_dir, warn=warn)
    history = checkpoint["history"]
    done = int(history[-1]["evaluations"]) if history else 0
    finished, ran = (run_dir / "summary.json").exists(), len(history)
    if finished:   # counted from its results: a damaged newest checkpoint leaves the one before, behind them
        ended = read_json(run_dir / "summary.json")
        if isinstance(ended.get("evaluations"), int) and ended["evaluations"] > done:
            done, ran = ended["evaluations"], int(ended.get("generations") or ran)
    if finished and (reason := stop_reason(config, done, history, checkpoint["best_loss"], checkpoint["elapsed"])):
        why, right = _finished_by(config, reason, done, ran)
        if any(name in overrides for name in STOPPING_RULES):   # asked to go further, but that is spent
            raise UsageError(f"the run in {run_dir} has finished: it {why}; to continue it, {right}")
        # a plain resume of a finished run (one killed while writing its report, say) writes its
        # results again, the same ones
        warn(f"the run in {run_dir} has finished: it {why}; writing its results again (to go further, {right})")
        finished = False
    limit = next((name for name in ("budget", "generations") if name in overrides), None)
    if limit and not finished and done > config.total_evaluations:   # it would end at once, past its new limit
        raise UsageError(f"the run in {run_dir} has already done {done} evaluations, more than "
                         f"{_flag(limit)} {overrides[limit]} allows ({config.total_evaluations}); to finish it now "
                         f"give --budget {done}, to go further a larger {_flag(limit)}")
    _status(progress, _opening(config))
    session = open_session(host, config)
    if checkpoint["optimizer"] is None:
        raise CheckpointError(f"optimizer {config.optimizer} cannot save its state, so the run in {run_dir} "
                              "cannot be resumed; start a new run (or use an optimizer with exact resume)")
    try:
        session.optimizer.load_state_dict(checkpoint["optimizer"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint in {run_dir} does not fit this run's optimizer ({exc})") from None
    state = RunState(config, run_dir, session.target, session.objective.dimensions, optimizer=session.optimizer,
                     naive=checkpoint["naive"], icl=checkpoint.get("icl"), history=checkpoint["history"],
                     best_loss=checkpoint["best_loss"], best_fitness=checkpoint.get("best_fitness", checkpoint["best_loss"]),
                     best_scores=checkpoint["best_scores"],
                     elapsed=checkpoint["elapsed"])
    write_history(run_dir / "history.csv", state.history)  # the checkpoint's rows (the csv can lag it by one)

    def going_on() -> None:   # once this resume's first generation is done: a failed start changes nothing
        _record_resume(run_dir, data, config, overrides)
        if finished:   # the earlier finish's results no longer describe the run
            kept = _set_aside_finish(run_dir, done)
            warn(f"{run_dir} had finished at {done} evaluations; its results moved to {kept}/ and it goes on "
                 f"to {config.total_evaluations} evaluations")

    return _optimise(host, session, state, progress, echo, going_on)


def _finished_by(config: RunConfig, reason: str, done: int, generations: int) -> tuple[str, str]:
    """What stopped a finished run (``done`` evaluations in ``generations``), and the flag that would let
    it go further: counted from what it ran, not from a smaller limit given now."""
    if reason == "budget":
        return (f"spent its budget ({done} evaluations, the budget {config.total_evaluations})",
                f"give --budget above {done} (or --generations above {generations})")
    if reason == "generations":
        return (f"ran {generations} generations ({done} evaluations), which --generations {config.generations} "
                "does not exceed", f"give --generations above {generations} (or --budget above {done})")
    if reason == "target_loss":
        return f"reached --target-loss {config.target_loss}", "give a lower --target-loss"
    if reason == "patience":
        return f"stopped improving for --patience {config.patience} generations", "give a larger --patience"
    return f"used its --time-limit of {config.time_limit:g} s", "give a larger --time-limit"


def _set_aside_finish(run_dir: Path, done: int) -> Path:
    """Move a finish's outputs into finished-at-<evaluations>/, so `runs` shows the run as stopped until
    it finishes again and `report` cannot mix the old summary with the longer history."""
    kept = run_dir / f"finished-at-{done}"
    shutil.rmtree(kept, ignore_errors=True)
    kept.mkdir()
    for name in RESULT_FILES:
        if (run_dir / name).exists():
            (run_dir / name).rename(kept / name)
    return kept


def _record_resume(run_dir: Path, data: dict[str, Any], config: RunConfig, overrides: dict[str, Any]) -> None:
    """config.json takes a resume's new stopping rules, so `runs` and a later plain --resume see them;
    each resume is logged with what it changed (executor settings too, which are not kept)."""
    saved = data["config"]
    for name in STOPPING_RULES:
        saved[name] = getattr(config, name)
    data.update(generations=config.total_generations, evaluations=config.total_evaluations)
    data.setdefault("resumed", []).append({"started": datetime.now(timezone.utc).isoformat(),
                                           "overrides": overrides, "command": sys.argv})
    write_json(run_dir / "config.json", data)


def _resumable(optimizer) -> bool:
    return "exact_resume" in getattr(optimizer, "capabilities", ())


def _save(state: RunState) -> None:
    # an optimizer that cannot hand over its state (e.g. ng:NGOpt) still runs; it just cannot resume
    save_checkpoint(state.run_dir, {
        "optimizer": state.optimizer.state_dict() if _resumable(state.optimizer) else None,
        "history": state.history, "naive": state.naive,
        "icl": state.icl, "best_loss": state.best_loss, "best_fitness": state.best_fitness,
        "best_scores": state.best_scores,
        "elapsed": state.elapsed})


def _should_stop(state: RunState, started: float, elapsed0: float) -> str:
    return stop_reason(state.config, state.optimizer.evaluations, state.history, state.best_loss,
                       elapsed0 + time.perf_counter() - started)


def stop_reason(config: RunConfig, evaluations: int, history: list[dict], best_loss: float, elapsed: float) -> str:
    """The stopping rule a run at this point meets ("" for none): generations or budget (whichever set
    the evaluation count), target_loss, patience, time_limit."""
    if evaluations >= config.total_evaluations:
        return "budget" if config.generations is None else "generations"
    if config.target_loss is not None and best_loss <= config.target_loss:
        return "target_loss"
    if config.patience is not None and len(history) > config.patience:
        # by fitness, which only falls: best_loss is the L1 of the best-by-fitness candidate and can
        # rise when a penalty is paid off (rows written before best_fitness existed: best_loss)
        fitness = [row.get("best_fitness", row["best_loss"]) for row in (history[-1 - config.patience], history[-1])]
        if fitness[1] >= fitness[0]:
            return "patience"
    if config.time_limit is not None and elapsed >= config.time_limit:
        return "time_limit"
    return ""


def _optimise(host: PluginHost, session: Session, state: RunState, progress: bool,
              echo: Callable[[str], None], first_done: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The run's generations, then its results; lifecycle hooks see the session end either way.
    ``first_done`` runs once the session's first generation is saved."""
    host.pm.hook.promptopt_run_start(state=state)
    try:
        state.stop_reason = _generations(host, session, state, progress, first_done)
        summary = _finish(session, state)
    except BaseException as exc:  # a tracker closes its run; the checkpoint is what resumes it
        state.stop_reason = _interruption(exc)
        host.pm.hook.promptopt_run_stopped(state=state, reason=state.stop_reason)
        raise
    host.pm.hook.promptopt_run_end(state=state, summary=summary)
    echo(format_comparison(summary))
    return summary


def _interruption(exc: BaseException) -> str:
    if isinstance(exc, Stopped):
        return exc.args[0]
    if isinstance(exc, KeyboardInterrupt):
        return "Ctrl-C"
    return f"error: {exception_line(exc)}"


def _generations(host: PluginHost, session: Session, state: RunState, progress: bool,
                 first_done: Callable[[], None]) -> str:
    """ask, evaluate, tell, write history and checkpoint, until a stopping rule says why (its name)."""
    objective, optimizer = session.objective, session.optimizer
    # z [P, d] -> SurveyResult: in this process, or on Ray actors (--executor ray), see distributed.py
    executor = make_executor(state.config, session, progress=progress)
    started, elapsed0, generations_before = time.perf_counter(), state.elapsed, len(state.history)
    bar = tqdm(total=state.config.total_evaluations, initial=optimizer.evaluations, desc="evaluations", unit="eval",
               disable=not progress, file=sys.stderr)
    try:
        while not (reason := _should_stop(state, started, elapsed0)):
            t0 = time.perf_counter()
            result = executor(_ask(host, state, session.space))
            if state.best_scores is None and not bool(torch.isfinite(result.fitness).any()):
                # nothing to keep as the best (NaN < x is never true), and an optimizer fed only NaN/inf
                # would search blindly: a setting that breaks the objective, so stop before a checkpoint
                raise UsageError(f"every candidate's fitness was not finite (NaN or inf) in generation "
                                 f"{len(state.history) + 1}, so there is no best soft prompt; use a finite "
                                 "--radius and --shift-weight (or a smaller --radius)")
            _optimizer_call(host, state, "tell", result.fitness)
            i = int(torch.argmin(result.fitness))
            if float(result.fitness[i]) < state.best_fitness:
                state.best_fitness, state.best_loss = float(result.fitness[i]), float(result.loss[i])
                state.best_scores = result.scores[i].tolist()
            record = {"generation": len(state.history) + 1, "evaluations": optimizer.evaluations,
                      "best_loss": state.best_loss, "best_fitness": state.best_fitness,
                      "mean_loss": float(result.loss.mean()), "seconds": round(time.perf_counter() - t0, 3),
                      **dict(zip(objective.dimensions, state.best_scores))}
            state.history.append(record)
            state.elapsed = elapsed0 + time.perf_counter() - started
            saved = False
            try:   # the checkpoint first: history.csv is never ahead of what a resume starts from
                _save(state)
                saved = True
            finally:
                if not saved:   # stopped mid-save: the generation is not kept, so hooks are not told it was
                    state.history.pop()
            write_history(state.run_dir / "history.csv", state.history)
            if len(state.history) == generations_before + 1:
                first_done()
            bar.update(result.loss.shape[0])
            bar.set_postfix(best=f"{state.best_loss:.2f}", naive=f"{state.naive['loss']:.2f}")
            host.pm.hook.promptopt_generation_end(state=state, record=record)
    finally:
        bar.close()
        state.executor = executor.describe()
        executor.close()
    return reason


def _ask(host: PluginHost, state: RunState, space: SoftPromptSpace) -> torch.Tensor:
    """The optimizer's next batch, refused unless finite and inside the space's bounds: a NaN row
    would turn every row packed with it into NaN, a point far outside makes --radius meaningless."""
    z = _optimizer_call(host, state, "ask")
    problem = batch_problem(z, space.lower, space.upper)
    if problem:
        raise PluginError(_optimizer_failure(host, state, problem))
    return z


def _optimizer_call(host: PluginHost, state: RunState, method: str, *args: Any) -> Any:
    """ask() or tell(), with the optimizer's own failure as one line naming it and its plugin (the
    traceback with PROMPTOPT_DEBUG=1), not a traceback that reads like promptopt's."""
    try:
        return getattr(state.optimizer, method)(*args)
    except PromptoptError:
        raise
    except BatchError as exc:  # the base class refused what _ask returned
        raise PluginError(_optimizer_failure(host, state, str(exc))) from exc
    except Exception as exc:  # noqa: BLE001 - any failure of the optimizer's own code
        reason = exception_line(exc)
        raise PluginError(_optimizer_failure(host, state, f"{method}() raised {reason}")) from exc


def _optimizer_failure(host: PluginHost, state: RunState, problem: str) -> str:
    name, run_dir = state.config.optimizer, state.run_dir
    kept = (f"; the run in {run_dir} keeps its {_finished(len(state.history))}: fix the optimizer, "
            f"then continue it with `promptopt run --resume {run_dir}`" if state.history else "")
    return (f'optimizer "{name}" (plugin "{host.entry("optimizers", name).plugin}") in generation '
            f"{len(state.history) + 1}: {problem}{kept}")


def _finish(session: Session, state: RunState) -> dict[str, Any]:
    """The best soft prompt re-scored alone; best/, summary.json and the extras written."""
    objective, config, target = session.plain, state.config, session.target
    z_best, _ = session.optimizer.best
    best_soft = session.space.decode(z_best[None])[0]
    final = objective(best_soft[None])  # re-evaluated alone: the saved prompt's own scores
    summary = {
        "loss": float(final.loss[0]), "naive_loss": state.naive["loss"],
        "icl_loss": state.icl["loss"] if state.icl else None, "loss_definition": l1_description(len(objective.dimensions)),
        "dimensions": _dims(objective.dimensions, final.scores[0]), "naive_dimensions": state.naive["dimensions"],
        "icl_dimensions": state.icl["dimensions"] if state.icl else None,
        "icl_system_prompt": state.icl.get("system_prompt") if state.icl else None,
        "target": {"code": target.code, "name": target.name, "source": target.source,
                   "scores": {d: target.scores[d] for d in objective.dimensions}},
        "evaluations": session.optimizer.evaluations, "generations": len(state.history),
        "stop_reason": state.stop_reason, "seconds": round(state.elapsed, 2),
        "option_mass": float(final.answers.mass.mean()), "naive_option_mass": state.naive["option_mass"],
        "icl_option_mass": state.icl.get("option_mass") if state.icl else None, "min_mass": config.min_mass,
        "answer_entropy": float(final.entropy[0]), "naive_answer_entropy": state.naive.get("answer_entropy"),
        "icl_answer_entropy": state.icl.get("answer_entropy") if state.icl else None,
        "max_entropy": config.max_entropy, "shift_weight": config.shift_weight,
        "batch_rows": objective.evaluator.last_batch_rows, "executor": state.executor,
        "optimizer": config.optimizer, "seed": config.seed, "model": config.model,
        "instrument": session.instrument.name, "run_dir": str(state.run_dir)}
    write_soft_prompt(state.run_dir / "best", best_soft, {
        "model": config.model, "instrument": session.instrument.name, "target": target.code,
        "position": config.position, "tokens": config.tokens, "hidden_size": session.space.hidden_size,
        "loss": summary["loss"], "search_space": session.space.describe(), "promptopt": __version__,
        "scoring": {k: v for k, v in config.to_dict().items() if k in SCORING_SETTINGS}})
    write_json(state.run_dir / "summary.json", summary)
    write_extras(state.run_dir, session.instrument, final.answers)
    return summary


def write_extras(run_dir: Path, instrument, answers) -> None:
    """history.parquet, best/item_answers.csv, best/peft/ and report.png + report.md.

    summary.json and best/ are already written, so a failure here (say matplotlib or pyarrow
    missing) only warns on stderr instead of failing a finished run.
    """
    from .export import export_history, export_peft, write_item_answers
    from .report import make_report

    steps = (("history.parquet", lambda: export_history(run_dir)),
             ("best/item_answers.csv", lambda: write_item_answers(run_dir, instrument, answers)),
             ("best/peft/", lambda: export_peft(run_dir)),
             ("report.png / report.md", lambda: make_report(run_dir)))
    for name, step in steps:
        try:
            step()
        except (ImportError, PromptoptError, OSError, ValueError) as exc:
            print(f"warning: could not write {name}: {exc}", file=sys.stderr)



def format_comparison(summary: dict[str, Any]) -> str:
    """The before/after table: each dimension, target vs naive (vs ICL) vs aligned, then the loss,
    the option mass and the answer entropy of each, then any warning about them."""
    target, icl = summary["target"], summary.get("icl_dimensions")

    def row(label: str, key: str, fmt: str) -> str:
        """naive (ICL) aligned values of ``key`` ('–' where a run did not record one)."""
        keys = [f"naive_{key}"] + ([f"icl_{key}"] if icl else []) + [key]
        values = [summary.get(k) for k in keys]
        return f"{label:<10}{'':>8}" + "".join(f"{v:>9{fmt}}" if v is not None else f"{'–':>9}" for v in values)

    header = f"{'dimension':<10}{'target':>8}{'naive':>9}" + (f"{'ICL':>9}" if icl else "") + f"{'aligned':>9}"
    lines = [f"{target['name']} ({target['code']}), target source: {target['source']}", header]
    for dim, goal in target["scores"].items():
        values = [summary["naive_dimensions"][dim]] + ([icl[dim]] if icl else []) + [summary["dimensions"][dim]]
        lines.append(f"{dim:<10}{goal:>8.0f}" + "".join(f"{v:>9.1f}" for v in values))
    lines.append(row("L1 loss", "loss", ".2f"))
    if summary.get("option_mass") is not None:   # how much of the next token is an answer at all
        lines.append(row("answer p", "option_mass", ".1%"))
    if summary.get("answer_entropy") is not None:   # how decided the answers are (not in runs saved before it)
        lines.append(row("answer H", "answer_entropy", ".2f"))
    lines += [f"warning: {w}" for w in summary_warnings(summary)]
    lines.append(f"{summary['loss_definition']}; answer p = option mass, the next-token probability on the "
                 "answer digits (mean over items); answer H = answer entropy, 0 when the model picks one "
                 "option, 1 when it is indifferent between them")
    seconds = summary["seconds"]
    lines.append(f"{summary['evaluations']} evaluations in {seconds:.{1 if seconds < 10 else 0}f} s "
                 f"(stopped: {summary['stop_reason']}); results in {summary['run_dir']}")
    return "\n".join(lines)
