"""One optimisation run: resolve plugins, evaluate the naive model, loop ask/evaluate/tell, write results."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from promptopt.objectives import L1_DESCRIPTION

from . import __version__
from .config import RunConfig
from .errors import UsageError
from .evaluator import SoftPromptEvaluator
from .host import PluginHost
from .objective import SurveyObjective
from .rundir import write_history, write_json, write_soft_prompt
from .softprompt import SoftPromptSpace, make_space


@dataclass
class RunState:
    """What lifecycle hooks see: the resolved run, its directory and its progress so far."""

    config: RunConfig
    run_dir: Path
    target: Any
    dimensions: tuple[str, ...]
    naive: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    best_scores: list[float] | None = None
    optimizer: Any = None


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.optimizer.replace(':', '-')}-{config.country.replace(' ', '_')}"


def versions() -> dict[str, str]:
    import transformers

    return {"promptopt": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


def build_objective(host: PluginHost, config: RunConfig, backend, system_prompt: str | None = None,
                    wording: str = "main"):
    """Instrument, scorer, target and evaluator for a config, on an already loaded model."""
    instrument = host.create_instrument(config.instrument)
    scorer = host.create_scorer(instrument, config.scorer, config.constants or None)
    target = host.target(config.country, config.targets)
    evaluator = SoftPromptEvaluator(backend, instrument.prompts(wording), list(instrument.n_options),
                                    position=config.position, system_prompt=system_prompt,
                                    batch_rows=config.batch_rows)
    return instrument, scorer, target, SurveyObjective(evaluator, scorer, target)


def make_optimizer(host: PluginHost, config: RunConfig, space: SoftPromptSpace):
    cls = host.optimizer_class(config.optimizer)
    if config.popsize < getattr(cls, "min_popsize", 1):
        raise UsageError(f"--popsize must be >= {cls.min_popsize} for {config.optimizer} (got {config.popsize})")
    hyper = dict(config.hyper)
    if "x0" in getattr(cls, "accepts", ("x0",)):
        hyper.setdefault("x0", space.z0)
    try:
        return cls(space.dim, bounds=(space.lower, space.upper), popsize=config.popsize, seed=config.seed,
                   device=space.lower.device, **hyper)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"optimizer {config.optimizer}: {exc}") from None


def run(config: RunConfig, host: PluginHost | None = None, run_dir: str | Path | None = None,
        progress: bool = True, echo=print) -> dict[str, Any]:
    """Align the model to the target; returns summary.json's contents."""
    host = host or PluginHost()
    run_dir = Path(run_dir or config.out or default_run_dir(config))
    if (run_dir / "config.json").exists():
        raise UsageError(f"run directory {run_dir} already holds a run; choose another --out")
    started = time.perf_counter()
    backend = host.create_model(config.model, device=config.device, dtype=config.dtype)
    instrument, scorer, target, objective = build_objective(host, config, backend, config.system_prompt)
    special = set(backend.tokenizer.all_special_ids)
    try:
        space = make_space(backend.embedding_matrix, config.tokens, config.subspace, config.seed, special)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    optimizer = make_optimizer(host, config, space)
    state = RunState(config, run_dir, target, objective.dimensions, optimizer=optimizer)

    write_json(run_dir / "config.json", {
        "config": config.to_dict(), "model": backend.describe(), "instrument": instrument.describe(),
        "scorer": scorer.describe(), "target": target.describe(), "loss": L1_DESCRIPTION,
        "search_space": space.describe(), "optimizer": {"name": config.optimizer, "class": type(optimizer).__name__,
                                                        "hyper": {k: v for k, v in config.hyper.items()}},
        "evaluator": {"position": config.position, "head_tokens": objective.evaluator.head_tokens,
                      "tail_tokens": objective.evaluator.tail_tokens},
        "generations": config.total_generations, "seed": config.seed, "versions": versions(),
        "command": sys.argv, "started": datetime.now(timezone.utc).isoformat()})

    naive = objective(None)
    state.naive = {"loss": float(naive.loss[0]), "dimensions": _dims(objective.dimensions, naive.scores[0])}
    host.pm.hook.promptopt_run_start(state=state)

    best_loss = float("inf")
    bar = tqdm(range(config.total_generations), desc="generations", unit="gen", disable=not progress, file=sys.stderr)
    for generation in bar:
        t0 = time.perf_counter()
        z = optimizer.ask()
        result = objective(space.decode(z))
        optimizer.tell(result.loss)
        i = int(torch.argmin(result.loss))
        if float(result.loss[i]) < best_loss:
            best_loss, state.best_scores = float(result.loss[i]), result.scores[i].tolist()
        record = {"generation": generation + 1, "evaluations": optimizer.evaluations, "best_loss": best_loss,
                  "mean_loss": float(result.loss.mean()), "seconds": round(time.perf_counter() - t0, 3),
                  **dict(zip(objective.dimensions, state.best_scores))}
        state.history.append(record)
        write_history(run_dir / "history.csv", state.history)
        bar.set_postfix(best=f"{best_loss:.2f}", naive=f"{state.naive['loss']:.2f}")
        host.pm.hook.promptopt_generation_end(state=state, record=record)

    z_best, f_best = optimizer.best
    best_soft = space.decode(z_best[None])[0]
    final = objective(best_soft[None])  # re-evaluated alone: the saved prompt's own scores
    summary = {
        "loss": float(final.loss[0]), "naive_loss": state.naive["loss"], "loss_definition": L1_DESCRIPTION,
        "dimensions": _dims(objective.dimensions, final.scores[0]), "naive_dimensions": state.naive["dimensions"],
        "target": {"code": target.code, "name": target.name, "source": target.source,
                   "scores": {d: target.scores[d] for d in objective.dimensions}},
        "evaluations": optimizer.evaluations, "generations": config.total_generations,
        "seconds": round(time.perf_counter() - started, 2), "option_mass": float(final.answers.mass.mean()),
        "naive_option_mass": float(naive.answers.mass.mean()), "optimizer": config.optimizer, "seed": config.seed,
        "model": config.model, "instrument": instrument.name, "run_dir": str(run_dir)}
    write_soft_prompt(run_dir / "best", best_soft, {
        "model": config.model, "instrument": instrument.name, "target": target.code, "position": config.position,
        "tokens": config.tokens, "hidden_size": space.hidden_size, "loss": summary["loss"],
        "search_space": space.describe(), "promptopt": __version__})
    write_json(run_dir / "summary.json", summary)
    host.pm.hook.promptopt_run_end(state=state, summary=summary)
    echo(format_comparison(summary))
    return summary


def _dims(dimensions, scores: torch.Tensor) -> dict[str, float]:
    return {d: round(float(v), 3) for d, v in zip(dimensions, scores.tolist())}


def format_comparison(summary: dict[str, Any]) -> str:
    """The before/after table: each dimension, target vs naive vs aligned."""
    target = summary["target"]
    lines = [f"{target['name']} ({target['code']}), target source: {target['source']}",
             f"{'dimension':<10}{'target':>8}{'naive':>9}{'aligned':>9}"]
    for dim, goal in target["scores"].items():
        lines.append(f"{dim:<10}{goal:>8.0f}{summary['naive_dimensions'][dim]:>9.1f}{summary['dimensions'][dim]:>9.1f}")
    lines.append(f"{'L1 loss':<10}{'':>8}{summary['naive_loss']:>9.2f}{summary['loss']:>9.2f}")
    lines.append(f"{summary['loss_definition']}; {summary['evaluations']} evaluations in {summary['seconds']:.0f} s; "
                 f"results in {summary['run_dir']}")
    return "\n".join(lines)
