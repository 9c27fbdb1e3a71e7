"""Alignment study (issue 8): countries x seeds x optimizers, with a held-out wording check.

    python benchmarks/alignment_study.py --jobs 2              # the full study (~2.5 h on 2 CPU cores)
    python benchmarks/alignment_study.py --report-only         # rebuild docs/RESULTS.md + figure
    python benchmarks/alignment_study.py --rescore-icl --countries US GB   # ICL again, after a prompt change
    python benchmarks/alignment_study.py --model tiny --countries US --seeds 0 \\
        --optimizers de --budget 12 --popsize 4 --out /tmp/s --results /tmp/s/RESULTS.md  # smoke

For every cell (country, optimizer, seed) a full ``promptopt`` run goes to
``OUT/runs/<country>-<optimizer>-<seed>/``; its best soft prompt is then re-scored on the
instrument's ALTERNATE wording (held-out check), next to the bare model on that wording.
Cells run on the GPU when torch sees one, at a run's default dtype (fp32 for a model under 1B
parameters on any device: bf16 cost DE 8 points of loss reduction on the embedded model,
docs/TUNING.md); each cell records its device and dtype; ``--device`` and ``--dtype`` override.
The naive and ICL baselines are deterministic (independent of seed and optimizer), so ICL is
scored once per country (in that country's first cell) and, with the alternate-wording naive
score, cached in ``OUT/baselines.json``.

Every optimizer spends the same budget (default: a default run's, 480 evaluations) at its own
population size: ``--popsize 16 de=8`` (the default) runs ``de`` at 8, the run default chosen in
docs/TUNING.md, and the others at 16 (pycma's own default for 64 dimensions).

``--jobs N`` runs N worker processes, worker i taking every N-th country, each with
cores / N torch threads (on a 2-core CPU, 2 one-thread workers beat one two-thread process: the
small model's matrices gain little from a second thread); on a GPU many workers share the card.

Resumable across sessions: each finished cell is one JSON line of ``OUT/cells.jsonl``
(rewritten atomically, under a lock, so workers, or processes running disjoint ``--countries``,
share one OUT), and cells already there with the same budget, population and
search settings are skipped; a cell recorded with other settings is rerun and its line replaced.
A cell whose run directory was left half-finished is resumed from its checkpoint when possible,
else its directory is removed and the cell rerun. The Markdown report (default docs/RESULTS.md)
and the figure (``img/alignment_study.png`` beside it) are rewritten atomically after every cell.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

import dimension_shifts
import study_checks

from promptopt.config import BEFORE_OPTION_EXISTED, INITS, POSITIONS, RunConfig, build_config
from promptopt.errors import PromptoptError, RunInUseError
from promptopt.evaluate import load_soft_prompt
from promptopt.host import PluginHost
from promptopt.models.backend import DTYPES
from promptopt import runner, session
from promptopt.rundir import atomic_write, write_json

SETTINGS = ("position", "tokens", "subspace", "radius", "basis", "init", "init_text", "dtype", "min_mass",
            "max_entropy", "counterbalance")  # search settings each cell records
# what a cell or run dir that lacks an option ran at: that option was added later
PREDATED = {**RunConfig().to_dict(), **BEFORE_OPTION_EXISTED}
DEFAULTS = {
    "countries": ["SA", "US", "CN", "IN", "DE", "JP", "BR", "RU", "GB", "MX"],
    "seeds": [0, 1, 2],
    "optimizers": ["de", "cma", "ng:TwoPointsDE", "random"],
}


# -- bookkeeping -------------------------------------------------------------------------

def cell_key(country: str, optimizer: str, seed: int) -> str:
    return f"{country}-{optimizer.replace(':', '-')}-{seed}"


def read_cells(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    cells = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                cells.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line cannot happen with atomic writes, but never fail a report on one
    return cells


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive lock beside ``path``, so study processes sharing OUT read-modify-write it in turn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def update_baselines(path: Path, country: str, base: dict[str, Any]) -> None:
    """Merge one country's baselines into baselines.json (re-read under the lock: other processes add theirs)."""
    with locked(path):
        write_json(path, {**read_json(path), country: base})


def append_cell(path: Path, cell: dict[str, Any]) -> None:
    """Read the existing lines, add one, write a temp file and rename it over cells.jsonl.

    A line with the same ``key`` as ``cell`` (a cell rerun with other settings) is dropped.
    Under an exclusive lock, so several study processes (e.g. one per country) can share a file."""
    with locked(path):
        kept = [c for c in read_cells(path) if "key" not in cell or c.get("key") != cell["key"]]
        write_cells(path, kept + [cell])


def write_cells(path: Path, cells: list[dict[str, Any]]) -> None:
    """cells.jsonl as these cells, written to a temp file and renamed (the caller holds the lock)."""
    text = "".join(json.dumps(c, default=str) + "\n" for c in cells)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def cached_models(host: PluginHost) -> PluginHost:
    """Make host.create_model load each model once per process (run() asks for it every cell)."""
    create, cache = host.create_model, {}

    def create_model(name: str, device: str = "cpu", dtype: str | None = None):
        key = (name, device, dtype)
        if key not in cache:
            cache[key] = create(name, device=device, dtype=dtype)
        return cache[key]

    host.create_model = create_model
    return host


def parse_popsizes(specs: list[str]) -> dict[str, int]:
    """``["16", "de=8"]`` -> {"*": 16, "de": 8}: a bare number is every other optimizer's population."""
    sizes = {"*": RunConfig.popsize}
    for spec in specs:
        name, _, value = spec.rpartition("=")  # rpartition: optimizer names may hold ':' but never '='
        try:
            sizes[name or "*"] = int(value)
        except ValueError:
            raise SystemExit(f"error: --popsize takes N or OPTIMIZER=N (got {spec!r})") from None
    return sizes


def cell_config(args, country: str, optimizer: str, seed: int, icl: bool = False) -> RunConfig:
    """The run a cell makes: the study's model and budget, the optimizer's own population."""
    return build_config(None, model=args.model, device=args.device, dtype=args.dtype, country=country,
                        optimizer=optimizer, seed=seed, budget=args.budget,
                        popsize=args.popsizes.get(optimizer, args.popsizes["*"]), icl_baseline=icl,
                        min_mass=args.min_mass, max_entropy=args.max_entropy, init=args.init,
                        position=args.position, counterbalance=args.counterbalance)


def is_done(cell: dict[str, Any] | None, config: RunConfig) -> bool:
    """A recorded cell counts only if it ran with the budget, population and settings planned now."""
    return cell is not None and cell.get("budget") == config.budget and cell.get("popsize") == config.popsize \
        and recorded_settings(cell) == settings_of(config)


def settings_of(config) -> dict[str, Any]:
    """The search settings a cell ran with, recorded so a report stays right when defaults change."""
    return {k: getattr(config, k) for k in SETTINGS}


def recorded_settings(cell: dict[str, Any]) -> dict[str, Any]:
    """A cell's settings; one recorded before a setting existed ran at what it then meant."""
    return {k: cell.get("settings", {}).get(k, PREDATED[k]) for k in SETTINGS}


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


# -- one cell ----------------------------------------------------------------------------

def run_or_resume(host: PluginHost, config, run_dir: Path) -> dict[str, Any]:
    """summary.json of the cell's run: reused if complete with the same config, resumed if possible, else rerun."""
    quiet = dict(progress=False, echo=lambda _msg: None)
    saved = read_json(run_dir / "config.json").get("config")
    if saved is not None and any(saved.get(k, PREDATED[k]) != v for k, v in config.to_dict().items()
                                 if k not in ("icl_baseline", "out")):
        shutil.rmtree(run_dir)  # a run with other settings (e.g. from before a default changed): not this cell's
    if (run_dir / "summary.json").exists() and (run_dir / "best" / "soft_prompt.safetensors").exists():
        return json.loads((run_dir / "summary.json").read_text())
    if (run_dir / "config.json").exists():
        try:
            return runner.resume(run_dir, host, **quiet)
        except RunInUseError:
            raise  # another study process is running this cell: its directory is not ours to clear
        except (PromptoptError, OSError, KeyError, ValueError) as exc:
            print(f"  {run_dir.name}: cannot resume ({exc}); rerunning", file=sys.stderr)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return runner.run(config, host, run_dir, **quiet)


def alternate_wording(host: PluginHost, config: RunConfig, run_dir: Path):
    """The held-out check: (the alternate-wording objective, the run's best soft prompt scored on it)."""
    backend = host.create_model(config.model, device=config.device, dtype=config.dtype)
    _, _, _, alt = session.build_objective(host, config, backend, config.system_prompt, wording="alternate")
    soft, _ = load_soft_prompt(run_dir)
    return alt, alt(soft[None])


ICL_FIELDS = ("icl_loss", "icl_dimensions", "icl_system_prompt")   # as summary.json names them


def run_cell(host: PluginHost, args, country: str, optimizer: str, seed: int, icl: bool,
             baselines: dict[str, Any], baselines_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    key = cell_key(country, optimizer, seed)
    run_dir = Path(args.out) / "runs" / key
    config = cell_config(args, country, optimizer, seed, icl)
    summary = run_or_resume(host, config, run_dir)

    # held-out check: the best soft prompt (and, once per country, the bare model) on the alternate wording
    alt, aligned_alt = alternate_wording(host, config, run_dir)
    scorer, target, dims = alt.scorer, alt.target, alt.dimensions
    base = baselines.get(country) or read_json(baselines_path).get(country)
    if base is None:
        naive_alt = alt(None)
        base = {"alt_naive_loss": float(naive_alt.loss[0]),
                "alt_naive_dimensions": {d: round(float(v), 3) for d, v in zip(dims, naive_alt.scores[0].tolist())}}
    if summary.get("icl_loss") is not None:  # deterministic: scored in a country's first cell, kept here
        base.update({k: summary.get(k) for k in ICL_FIELDS})
    base.update(naive_loss=summary["naive_loss"], naive_dimensions=summary["naive_dimensions"])
    baselines[country] = base
    update_baselines(baselines_path, country, base)

    return {
        "key": key, "country": country, "optimizer": optimizer, "seed": seed, "model": config.model,
        "device": config.device,
        "budget": config.budget, "popsize": config.popsize, "instrument": summary.get("instrument"),
        "loss": summary["loss"], "dimensions": summary["dimensions"],
        "naive_loss": summary["naive_loss"], "naive_dimensions": summary["naive_dimensions"],
        "option_mass": summary["option_mass"], "naive_option_mass": summary["naive_option_mass"],
        "answer_entropy": summary.get("answer_entropy"), "naive_answer_entropy": summary.get("naive_answer_entropy"),
        "alt_answer_entropy": float(aligned_alt.entropy[0]),
        **{k: base.get(k) for k in ICL_FIELDS},
        "alt_loss": float(aligned_alt.loss[0]),
        "alt_dimensions": {d: round(float(v), 3) for d, v in zip(dims, aligned_alt.scores[0].tolist())},
        "alt_naive_loss": base["alt_naive_loss"], "alt_naive_dimensions": base["alt_naive_dimensions"],
        "target": target.describe(), "constants": scorer.constants,
        "settings": settings_of(config),
        "evaluations": summary["evaluations"], "seconds": summary["seconds"],
        "wall_seconds": round(time.perf_counter() - started, 2), "run_dir": str(run_dir),
    }


def run_study(args, report: bool = True) -> None:
    out = Path(args.out)
    cells_path, baselines_path = out / "cells.jsonl", out / "baselines.json"
    recorded = {c["key"]: c for c in read_cells(cells_path)}
    plan = [(c, o, s) for c in args.countries for s in args.seeds for o in args.optimizers]
    todo = [cell for cell in plan if not is_done(recorded.get(cell_key(*cell)), cell_config(args, *cell))]
    print(f"alignment study: {len(plan)} cells, {len(plan) - len(todo)} already done, {len(todo)} to run "
          f"-> {cells_path}", file=sys.stderr)
    if not todo:
        return
    host = cached_models(PluginHost(load_entrypoints=False))
    baselines = read_json(baselines_path)
    t0, walls = time.perf_counter(), []
    for i, (country, optimizer, seed) in enumerate(todo, 1):
        icl = baselines.get(country, {}).get("icl_loss") is None  # scored once per country, in its first cell
        cell = run_cell(host, args, country, optimizer, seed, icl, baselines, baselines_path)
        append_cell(cells_path, cell)
        walls.append(cell["wall_seconds"])
        elapsed = time.perf_counter() - t0
        eta = statistics.fmean(walls) * (len(todo) - i)
        print(f"[{i}/{len(todo)}] {cell['key']}: L1 {cell['loss']:.2f} (naive {cell['naive_loss']:.2f}, "
              f"alternate wording {cell['alt_loss']:.2f} vs naive {cell['alt_naive_loss']:.2f}) "
              f"in {fmt_time(cell['wall_seconds'])}; elapsed {fmt_time(elapsed)}, ETA {fmt_time(eta)}",
              file=sys.stderr, flush=True)
        if report:
            write_report(cells_path, Path(args.results))


def rescore_icl(out: Path, countries: list[str]) -> None:
    """Score the ICL baseline again, with the persona prompt as `promptopt.baselines` writes it now, into
    every cell of these countries: for a study scored before the prompt changed (the runs are kept).
    Each cell is scored at its own recorded model, device and settings, each distinct one once."""
    cells_path, baselines_path = out / "cells.jsonl", out / "baselines.json"
    host = cached_models(PluginHost(load_entrypoints=False))
    scored: dict[str, dict[str, Any]] = {}

    def rescored(cell: dict[str, Any]) -> dict[str, Any]:
        if cell["country"] not in countries:
            return cell
        settings = recorded_settings(cell)
        key = json.dumps([cell["country"], cell["model"], cell["device"], settings], sort_keys=True)
        if key not in scored:
            config = build_config(None, model=cell["model"], device=cell["device"], country=cell["country"],
                                  **settings)
            backend = host.create_model(config.model, device=config.device, dtype=config.dtype)
            scored[key] = runner.icl_baseline(host, config, backend, session.check_survey(host, config)[2])
            was = "none" if cell.get("icl_loss") is None else f"{cell['icl_loss']:.2f}"
            print(f"{cell['country']}: ICL L1 {was} -> {scored[key]['loss']:.2f}", file=sys.stderr)
        icl = scored[key]
        return {**cell, "icl_loss": icl["loss"], "icl_dimensions": icl["dimensions"],
                "icl_system_prompt": icl["system_prompt"]}

    with locked(cells_path):
        cells = [rescored(c) for c in read_cells(cells_path)]
        write_cells(cells_path, cells)
    for cell in {c["country"]: c for c in cells if c["country"] in countries}.values():
        base = read_json(baselines_path).get(cell["country"], {})
        update_baselines(baselines_path, cell["country"], {**base, **{k: cell[k] for k in ICL_FIELDS}})


def study_status(args, report: bool = True) -> int:
    """run_study as an exit status: 0, or 2 after one 'error:' line for bad input."""
    try:
        run_study(args, report)
    except PromptoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _worker(args, threads: int) -> None:
    """One --jobs worker: the study for its countries, no report (the parent writes it at the end)."""
    import torch

    torch.set_num_threads(threads)
    sys.exit(study_status(args, report=False))


def run_jobs(args) -> int:
    """Split the countries round-robin over args.jobs processes; 0 if every worker finished, 2 if one
    was given bad input, else 1."""
    jobs = min(args.jobs, len(args.countries))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")   # a fresh interpreter: no forked torch thread pools
    workers = []
    for i in range(jobs):
        mine = argparse.Namespace(**{**vars(args), "countries": args.countries[i::jobs], "jobs": 1})
        workers.append(context.Process(target=_worker, args=(mine, threads), name=f"study-{i}"))
        workers[-1].start()
    for w in workers:
        w.join()
    failed = [w for w in workers if w.exitcode != 0]
    if not failed:
        return 0
    print(f"error: {', '.join(f'{w.name} (exit code {w.exitcode})' for w in failed)} failed; finished cells "
          "are kept, rerun to resume", file=sys.stderr)
    return 2 if any(w.exitcode == 2 for w in failed) else 1


# -- report ------------------------------------------------------------------------------

def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _setting(key: str, value) -> str:
    """A recorded setting as the report prints it: None is no floor or cap for those, else the default."""
    if value is None:
        return "none" if key in ("min_mass", "max_entropy") else "default"
    return str(value)


def _f(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def in_study_order(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Countries, then seeds, then optimizers in the default plan's order (others after, as first seen)."""
    def rank(kind: str, value: Any) -> tuple[int, str]:
        plan = DEFAULTS[kind]
        return (plan.index(value), "") if value in plan else (len(plan), str(value))
    return sorted(cells, key=lambda c: (rank("countries", c["country"]), c["seed"], rank("optimizers", c["optimizer"])))


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose L1 is the median over seeds (the lower one of the middle two for an even count):
    its dimension scores are one prompt's, so they give its L1, as per-dimension medians would not."""
    ranked = sorted(runs, key=lambda c: c["loss"])
    return ranked[(len(ranked) - 1) // 2]


def midpoint_loss(target: dict[str, Any], constants: dict[str, float], dims: list[str]) -> float:
    """L1 of a respondent who answers the middle of every scale: each index's item differences are 0, so
    every score is its constant C. With C = 50 this is how far the target is from 50 on average, the
    part of any L1 that the free constants, not the model, decide."""
    return statistics.fmean(abs(constants.get(d, 50.0) - target["scores"][d]) for d in dims)


def summarise(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Per country: target, baselines, the midpoint respondent and per optimizer the median over seeds,
    the median run's own scores and the spread of the seeds' L1."""
    countries, optimizers = _ordered(c["country"] for c in cells), _ordered(c["optimizer"] for c in cells)
    table = {}
    for country in countries:
        mine = [c for c in cells if c["country"] == country]
        dims = list(mine[0]["target"]["scores"])
        icl = next((c for c in mine if c.get("icl_loss") is not None), None)
        row = {"target": mine[0]["target"], "constants": mine[0].get("constants", {}), "dims": dims,
               "naive": (mine[0]["naive_loss"], mine[0]["naive_dimensions"]),
               "icl": (icl["icl_loss"], icl["icl_dimensions"]) if icl else (None, None),
               "alt_naive": mine[0]["alt_naive_loss"], "naive_option_mass": mine[0].get("naive_option_mass"),
               "naive_answer_entropy": mine[0].get("naive_answer_entropy"),
               "midpoint": midpoint_loss(mine[0]["target"], mine[0].get("constants", {}), dims),
               "optimizers": {}}
        for opt in optimizers:
            runs = [c for c in mine if c["optimizer"] == opt]
            if runs:
                middle = median_run(runs)
                row["optimizers"][opt] = {
                    "loss": _median(c["loss"] for c in runs), "n": len(runs),
                    "range": (min(c["loss"] for c in runs), max(c["loss"] for c in runs)),
                    "median_run": {"seed": middle["seed"], "loss": middle["loss"], "dimensions": middle["dimensions"]},
                    "alt_loss": _median(c["alt_loss"] for c in runs),
                    "option_mass": _median(c.get("option_mass") for c in runs),
                    "answer_entropy": _median(c.get("answer_entropy") for c in runs)}
        table[country] = row
    return {"countries": countries, "optimizers": optimizers, "table": table}


def scores_rows(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The study as one long table (country, optimizer, seed, method, wording, dimension, score, target,
    constant): every cell's aligned scores on both wordings, and each country's naive and ICL scores once."""
    rows, baselines = [], set()

    def add(cell, optimizer, seed, method, wording, dims):
        for d, goal in cell["target"]["scores"].items():
            if dims and d in dims:
                rows.append({"country": cell["country"], "optimizer": optimizer, "seed": seed, "method": method,
                             "wording": wording, "dimension": d, "score": dims[d], "target": goal,
                             "constant": cell.get("constants", {}).get(d)})

    for c in cells:
        if c["country"] not in baselines:
            baselines.add(c["country"])
            add(c, None, None, "naive", "main", c["naive_dimensions"])
            add(c, None, None, "naive", "alternate", c.get("alt_naive_dimensions"))
            icl = next((x for x in cells if x["country"] == c["country"] and x.get("icl_dimensions")), None)
            if icl:
                add(icl, None, None, "ICL", "main", icl["icl_dimensions"])
        add(c, c["optimizer"], c["seed"], "aligned", "main", c["dimensions"])
        add(c, c["optimizer"], c["seed"], "aligned", "alternate", c.get("alt_dimensions"))
    return rows


def write_report(cells_path: Path, results: Path) -> None:
    cells = in_study_order(read_cells(cells_path))
    if not cells:
        print(f"no cells in {cells_path} yet; nothing to report", file=sys.stderr)
        return
    s = summarise(cells)
    countries, optimizers, table = s["countries"], s["optimizers"], s["table"]
    figure = results.parent / "img" / "alignment_study.png"
    write_figure(s, figure)
    scores = cells_path.parent / "scores.csv"
    frame = pd.DataFrame(scores_rows(cells)).astype({"seed": "Int64"})   # blank for the baselines, not 0.0
    atomic_write(scores, lambda tmp: frame.to_csv(tmp, index=False))

    first = table[countries[0]]
    constants = sorted(set(first["constants"].values()))
    lines = ["# Alignment study: soft prompts vs naive and ICL baselines", "",
             f"Generated by `benchmarks/alignment_study.py` from `{cells_path}` ({len(cells)} cells); every score "
             f"as one long table: `{scores}`.", "",
             "## Configuration", "",
             f"- model: {', '.join(_ordered(c['model'] for c in cells))}; instrument: "
             f"{', '.join(_ordered(str(c.get('instrument')) for c in cells))}; "
             f"device: {', '.join(_ordered(c.get('device', 'cpu') for c in cells))}",
             f"- budget: {', '.join(map(str, _ordered(c['budget'] for c in cells)))} evaluations; "
             "popsize: " + ", ".join(f"{o} {'/'.join(map(str, _ordered(c['popsize'] for c in cells if c['optimizer'] == o)))}"
                                     for o in optimizers),
             f"- seeds: {', '.join(map(str, sorted(_ordered(c['seed'] for c in cells))))}; "
             f"optimizers: {', '.join(optimizers)}",
             "- soft prompt: " + "; ".join(
                 f"{k} " + ", ".join(_ordered(_setting(k, recorded_settings(c)[k]) for c in cells))
                 for k in SETTINGS),
             f"- scorer constants C = {', '.join(f'{c:g}' for c in constants) or '?'} (every dimension)",
             "- loss: L1 = mean absolute difference over the six dimensions between the model's scores and the target; "
             "numbers are medians over seeds",
             "- naive: the model as it is; ICL: a zero-shot persona system prompt that states the target's six "
             "scores in words (`promptopt.baselines`), not few-shot examples; midpoint: a respondent who answers "
             "the middle of every scale, so every score is its constant C (computed, no model)",
             "- held-out check: the best soft prompt re-scored on the instrument's alternate wording of every item, "
             "a paraphrase robustness check (same scales and answer instruction, written by the same authors)", "",
             "Targets (version / source per country):", "",
             "| country | name | kind | source |", "|---|---|---|---|"]
    for country in countries:
        t = table[country]["target"]
        lines.append(f"| {country} | {t.get('name', '')} | {t.get('kind', '')} | {t.get('source', '')} |")

    lines += study_checks.report(study_checks.checks(table))
    lines += ["", "## Results per country", "", f"![L1 per country]({figure.relative_to(results.parent)})", ""]
    for country in countries:
        row, dims = table[country], table[country]["dims"]
        constants = row["constants"]
        lines += [f"### {country} ({row['target'].get('name', '')})", "",
                  "An optimizer's L1 is the median over its seeds (min-max in brackets); its scores are the median "
                  "run's own (the seed named), so they give that run's L1.", "",
                  "| method | L1 | " + " | ".join(dims) + " |", "|---|---:|" + "---:|" * len(dims),
                  "| target | | " + " | ".join(f"{row['target']['scores'][d]:.0f}" for d in dims) + " |",
                  f"| midpoint | {_f(row['midpoint'])} | "
                  + " | ".join(f"{constants.get(d, 50.0):.1f}" for d in dims) + " |"]
        for label, (loss, dd) in (("naive", row["naive"]), ("ICL", row["icl"])):
            lines.append(f"| {label} | {_f(loss)} | "
                         + " | ".join(_f(dd[d], 1) if dd else "–" for d in dims) + " |")
        for opt, r in row["optimizers"].items():
            middle, (lo, hi) = r["median_run"], r["range"]
            lines.append(f"| {opt} (n={r['n']}; seed {middle['seed']}) | {_f(r['loss'])} ({_f(lo)}-{_f(hi)}) | "
                         + " | ".join(_f(middle["dimensions"][d], 1) for d in dims) + " |")
        lines.append("")

    lines += ["## Overall (median over countries of the per-country medians)", "",
              "| method | median L1 | mean L1 | countries | mean change vs naive, every run |",
              "|---|---:|---:|---:|---:|"]
    methods = [("midpoint (every answer the scale's middle)", [table[c]["midpoint"] for c in countries], []),
               ("naive", [table[c]["naive"][0] for c in countries], []),
               ("ICL", [table[c]["icl"][0] for c in countries],
                [table[c]["icl"][0] / table[c]["naive"][0] - 1 for c in countries if table[c]["icl"][0] is not None])]
    methods += [(opt, [table[c]["optimizers"].get(opt, {}).get("loss") for c in countries],
                 [c["loss"] / c["naive_loss"] - 1 for c in cells if c["optimizer"] == opt]) for opt in optimizers]
    for label, values, changes in methods:
        present = [v for v in values if v is not None]
        change = f"{statistics.fmean(changes):+.1%} (n={len(changes)})" if changes else "–"
        lines.append(f"| {label} | {_f(_median(present))} | {_f(statistics.fmean(present) if present else None)} "
                     f"| {len(present)} | {change} |")

    ordered = (["de"] if "de" in optimizers else []) + [o for o in optimizers if o != "de"]
    lines += ["", "## Held-out check: alternate wording", "",
              "The soft prompt optimised on the main wording, scored on the alternate wording of every item "
              "(L1, median over seeds); the main-wording L1 in brackets.", "",
              "| country | naive | " + " | ".join(ordered) + " |", "|---|---:|" + "---:|" * len(ordered)]
    for country in countries:
        row = table[country]
        cols = []
        for opt in ordered:
            r = row["optimizers"].get(opt)
            cols.append(f"{_f(r['alt_loss'])} ({_f(r['loss'])})" if r else "–")
        lines.append(f"| {country} | {_f(row['alt_naive'])} ({_f(row['naive'][0])}) | " + " | ".join(cols) + " |")
    held_out = dimension_shifts.shifts(cells, "de")
    if not held_out.empty:
        lines += ["", "Per dimension, DE's runs: the shift a prompt gives each score (aligned minus bare model) on "
                  "each wording (`benchmarks/dimension_shifts.py`; docs/TUNING.md reads it).", "",
                  dimension_shifts.report(held_out)]

    lines += _validity_section(
        cells, table, countries, ordered, "option_mass", "Answer validity: option mass",
        "The share of the model's next-token probability that falls on the answer digits (mean over the items; "
        "median over seeds). Answers are renormalised over the options, so a prompt can lower the loss while "
        "the model barely answers; `--min-mass` (default 0.1) sets a floor.", 3)
    lines += _validity_section(
        cells, table, countries, ordered, "answer_entropy", "Answer validity: answer entropy",
        "How undecided the answers on the digits are: per item the entropy over its options divided by its "
        "maximum, then the mean over items (median over seeds); 0 when the model picks one option, 1 when it "
        "is indifferent between them. `--max-entropy` caps it.", 2)

    lines += _limitations_section(cells, table, countries, optimizers)

    lines += ["", "## Wall-clock per cell", "",
              "| cell | optimisation s | cell wall s | evaluations | L1 |", "|---|---:|---:|---:|---:|"]
    for c in cells:
        lines.append(f"| {c['key']} | {c['seconds']:.1f} | {c['wall_seconds']:.1f} | {c['evaluations']} "
                     f"| {c['loss']:.2f} |")
    total = sum(max(c["wall_seconds"], c["seconds"]) for c in cells)
    lines += ["", f"Total cell wall-clock: {fmt_time(total)} over {len(cells)} cells (summed; cells of "
              "worker processes (--jobs) overlap in time; a cell whose run was reused from an identical "
              "earlier run has a short cell wall and counts with its optimisation seconds).", ""]
    text = "\n".join(lines)
    atomic_write(results, lambda tmp: Path(tmp).write_text(text))
    print(f"wrote {results} and {figure}", file=sys.stderr)


# the countries the default search settings were chosen on (docs/TUNING.md's sweeps, seeds 0-5)
TUNED_ON = ("SA", "US", "CN", "IN")


def _mean_change(cells: list[dict[str, Any]], optimizer: str, countries) -> str:
    changes = [c["loss"] / c["naive_loss"] - 1 for c in cells if c["optimizer"] == optimizer and c["country"] in countries]
    return f"{statistics.fmean(changes):+.1%} (n={len(changes)})" if changes else "–"


def _limitations_section(cells: list[dict[str, Any]], table: dict[str, Any], countries: list[str],
                         optimizers: list[str]) -> list[str]:
    """What a reader should know before citing these numbers, with the numbers that size each point."""
    midpoints = [table[c]["midpoint"] for c in countries]
    naive_worse = [c for c in countries if table[c]["naive"][0] > table[c]["midpoint"]]
    spread = max(((c, o, *r["range"]) for c in countries for o, r in table[c]["optimizers"].items()),
                 key=lambda x: x[3] - x[2], default=None)
    untuned = [c for c in countries if c not in TUNED_ON]
    lines = ["", "## Limitations", "",
             f"- **The constants C set part of every L1.** A respondent who answers the middle of every scale "
             f"scores C on every dimension: L1 {_f(_median(midpoints))} (median over countries; row `midpoint`). "
             f"The bare model is further from the target than that in {len(naive_worse)} of {len(countries)} "
             f"countries ({', '.join(naive_worse) or 'none'}); read every L1 against that row as well as against 0.",
             "- **The item texts are this project's paraphrases** of the VSM 2013 items (same meanings, scales and "
             "formulas; `objectives/data/SOURCES.md`), so the scores are not comparable one to one with published "
             "VSM data or with the reference study's.",
             f"- **The defaults were chosen on {', '.join(TUNED_ON)}** (docs/TUNING.md, seeds 0-5), so this "
             "study's cells for those countries are not a fresh test of them; CMA-ES, TwoPointsDE and random "
             "search ran at their own defaults."]
    if untuned:
        lines.append(f"  On the {len(untuned)} countries never used for a choice ({', '.join(untuned)}), the mean "
                     "change vs naive per run: " + "; ".join(f"{o} {_mean_change(cells, o, untuned)}" for o in optimizers)
                     + f" (on {', '.join(c for c in TUNED_ON if c in countries)}: "
                     + "; ".join(f"{o} {_mean_change(cells, o, TUNED_ON)}" for o in optimizers) + ").")
    if spread:
        lines.append(f"- **Three seeds per cell, and seeds matter**: the widest spread is {spread[1]} on {spread[0]}, "
                     f"{_f(spread[2])}-{_f(spread[3])}; no significance test is made, so a difference between "
                     "optimizers within a country that is smaller than its spread is not evidence.")
    lines.append("- **The held-out wording is a paraphrase check**, not an independent instrument: written by the same "
                 "authors with the same scales and answer instruction. The main-wording numbers are in-sample: the "
                 "prompt was optimised on them.")
    return lines


def _validity_section(cells: list[dict[str, Any]], table: dict[str, Any], countries: list[str], ordered: list[str],
                      key: str, title: str, text: str, digits: int) -> list[str]:
    """A report section of one answer-validity number per country: the bare model's and each optimizer's."""
    lines = ["", f"## {title}", "", text, ""]
    if not any(c.get(key) is not None for c in cells):
        return lines + ["Not recorded: these cells predate the record (docs/TUNING.md has it for the default runs)."]
    lines += ["\u2013: cells recorded before it was.", "",
              "| country | naive | " + " | ".join(ordered) + " |", "|---|---:|" + "---:|" * len(ordered)]
    for country in countries:
        row = table[country]
        cols = [_f(row["optimizers"].get(opt, {}).get(key), digits) for opt in ordered]
        lines.append(f"| {country} | {_f(row[f'naive_{key}'], digits)} | " + " | ".join(cols) + " |")
    return lines


def write_figure(s: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    countries, optimizers, table = s["countries"], s["optimizers"], s["table"]
    series = [("naive", [table[c]["naive"][0] for c in countries]),
              ("ICL", [table[c]["icl"][0] for c in countries])]
    series += [(opt, [table[c]["optimizers"].get(opt, {}).get("loss") for c in countries]) for opt in optimizers]
    fig = Figure(figsize=(max(6.0, 1.1 * len(countries) * (len(series) + 1) / 3), 4.0))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for j, (label, values) in enumerate(series):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(countries))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    ax.set_xticks(range(len(countries)))
    ax.set_xticklabels(countries)
    ax.set_ylabel("L1: mean abs. difference (median over seeds)")
    ax.set_title("Alignment with Hofstede dimension scores")
    top = max([v for _, values in series for v in values if v is not None], default=1.0)
    ax.set_ylim(0, top * 1.25)  # headroom for the legend
    ax.legend(fontsize="small", ncols=min(len(series), 6), loc="upper center")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))


# -- CLI ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="study", help="study directory (runs/, cells.jsonl, baselines.json)")
    p.add_argument("--countries", nargs="+", default=DEFAULTS["countries"])
    p.add_argument("--seeds", nargs="+", type=int, default=DEFAULTS["seeds"])
    p.add_argument("--optimizers", nargs="+", default=DEFAULTS["optimizers"])
    p.add_argument("--budget", type=int, default=RunConfig.DEFAULT_BUDGET,
                   help="evaluations per cell (default: a default run's)")
    p.add_argument("--popsize", nargs="+", default=["16", f"de={RunConfig.popsize}"], metavar="[OPTIMIZER=]N",
                   help=f"population per optimizer; a bare N for the others (default: 16 de={RunConfig.popsize})")
    p.add_argument("--counterbalance", action="store_true",
                   help="ask every item in both scale orders and average (2x the time; see --counterbalance of run)")
    p.add_argument("--min-mass", type=float, default=None,
                   help="floor on the option mass for every optimizer's runs (default: a run's, 0.1; 0: none)")
    p.add_argument("--max-entropy", type=float, default=None,
                   help="cap on the answers' entropy for every optimizer's runs (default: a run's, none)")
    p.add_argument("--init", choices=INITS, default=None,
                   help="where every optimizer's soft prompts start (default: a run's, random)")
    p.add_argument("--position", choices=POSITIONS, default=None,
                   help="where every optimizer's soft prompts go (default: a run's, reply)")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--device", default=None, help="cpu or cuda[:N] (default: cuda when torch sees a GPU, else cpu)")
    p.add_argument("--dtype", default=None, choices=["auto", *DTYPES],
                   help="model dtype (default: a run's: fp32 on CPU, and on CUDA for models under 1B parameters)")
    p.add_argument("--results", default="docs/RESULTS.md", help="Markdown report; the PNG goes to img/ beside it")
    p.add_argument("--report-only", action="store_true", help="rewrite the report from cells.jsonl, run nothing")
    p.add_argument("--rescore-icl", action="store_true",
                   help="score the ICL baseline of the --countries' cells again with the current persona prompt "
                        "(after a change to it), then rewrite the report; runs nothing else")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes, each taking every N-th country (default 1; 2 on a 2-core CPU)")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1 (got {args.jobs})")
    return args


def resolve_device(args) -> None:
    """--device default: the GPU when torch sees one, else the CPU."""
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.popsizes = parse_popsizes(args.popsize)
    resolve_device(args)
    cells_path = Path(args.out) / "cells.jsonl"
    status = 0
    if args.rescore_icl:
        rescore_icl(Path(args.out), args.countries)
    elif not args.report_only:
        status = run_jobs(args) if args.jobs > 1 else study_status(args)
        if status == 2 and args.jobs == 1:
            return 2   # nothing ran: leave the report alone (workers may have finished cells: report those)
    write_report(cells_path, Path(args.results))
    return status


if __name__ == "__main__":
    sys.exit(main())
