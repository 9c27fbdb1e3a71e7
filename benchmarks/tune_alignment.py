"""Tuning sweep for the alignment defaults (issue 8): variants x countries x seeds at one budget.

    python benchmarks/tune_alignment.py --variants base "answer:position=answer" \\
        "answer-r3:position=answer,radius=3" --countries US CN --seeds 0 --budget 480

A variant is ``name:key=value,key=value`` of `promptopt run` options (RunConfig fields, values
parsed as TOML scalars, else strings) on top of the defaults; ``hyper.KEY=value`` sets one of the
optimizer's hyper-parameters (``de-best:hyper.strategy=best1bin``); ``base`` alone means the defaults.
Each row records the settings it ran with, so the table stays right when the defaults change. Every finished run is one
JSON line of ``OUT/tuning.jsonl`` (default ``study/tuning.jsonl``), so a sweep resumes where it
stopped and later sweeps add to the same table; ``--report-only`` prints the table. The
table gives, per variant, the L1 per country (median over seeds), its reduction vs the naive
model, the reduction pooled over every run (mean, and how many runs reached -50%: with a seed
spread this large a 3-seed median is a noisy statistic), and the seconds per evaluation.
Each row also keeps its best prompt's loss on the alternate wording (``--alternate`` reports it);
docs/TUNING.md records the sweeps that set the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
from alignment_study import (alternate_wording, append_cell, cached_models, read_cells, recorded_settings,
                             run_or_resume, settings_of)

from promptopt.config import RunConfig, build_config
from promptopt.host import PluginHost


def parse_variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, spec = text.partition(":")
    options = {}
    for pair in filter(None, spec.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"error: variant option {pair!r} must be key=value")
        try:    # numbers and booleans as TOML reads them, anything else as a string
            parsed = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value.strip()
        key = key.strip()
        if key.startswith("hyper."):  # optimizer hyper-parameters keep their own spelling
            options.setdefault("hyper", {})[key.removeprefix("hyper.")] = parsed
        else:
            options[key.replace("-", "_")] = parsed
    return name, options


def run_dir_of(out: Path, name: str, country: str, seed: int) -> Path:
    return out / "tuning-runs" / f"{name}-{country}-{seed}"


def config_of(options: dict[str, Any], country: str, seed: int, budget: int) -> RunConfig:
    """The run a sweep row makes: the variant's options on top of the defaults, ICL baseline off."""
    return build_config(None, **{"country": country, "seed": seed, "budget": budget, "icl_baseline": False,
                                 **options})


def run_one(host: PluginHost, out: Path, name: str, options: dict[str, Any], country: str, seed: int,
            budget: int) -> dict[str, Any]:
    config = config_of(options, country, seed, budget)
    run_dir = run_dir_of(out, name, country, seed)
    summary = run_or_resume(host, config, run_dir)
    return {**held_out(host, config, run_dir), "variant": name, "options": options, "country": country, "seed": seed, "budget": budget,
            "settings": settings_of(config),
            "loss": summary["loss"], "naive_loss": summary["naive_loss"], "dimensions": summary["dimensions"],
            "option_mass": summary["option_mass"], "answer_entropy": summary.get("answer_entropy"),
            "naive_answer_entropy": summary.get("naive_answer_entropy"), "evaluations": summary["evaluations"], "seconds": summary["seconds"], "curve": best_curve(run_dir)}


def held_out(host: PluginHost, config: RunConfig, run_dir: Path) -> dict[str, float]:
    """The run's best prompt and the bare model on the alternate wording, kept in the row (run
    dirs are not committed, so --alternate can report a sweep on any checkout)."""
    alt, aligned = alternate_wording(host, config, run_dir)
    naive = alt(None)
    return {"alt_loss": float(aligned.loss[0]), "alt_naive_loss": float(naive.loss[0]),
            "alt_option_mass": float(aligned.answers.mass.mean()), "alt_answer_entropy": float(aligned.entropy[0])}


def best_curve(run_dir: Path) -> list[list[float]]:
    """[evaluations, best loss so far] after every generation (history.csv), for --curve."""
    history = pd.read_csv(run_dir / "history.csv")
    return [[int(e), round(float(b), 4)] for e, b in zip(history["evaluations"], history["best_loss"])]


def best_at(row: dict[str, Any], evaluations: int) -> float | None:
    """Best loss a run had found after ``evaluations`` (None: it never got that far or kept no curve)."""
    seen = [loss for e, loss in row.get("curve", []) if e <= evaluations]
    reached = row.get("curve") and row["curve"][-1][0] >= evaluations
    return min(seen) if seen and reached else None


def curve_report(rows: list[dict[str, Any]], checkpoints: list[int]) -> str:
    """Per variant and checkpoint: the best loss so far as a change vs naive (per-country medians, pooled mean).

    The same runs at several budgets: DE without population reduction does not plan over its
    budget, so a long run's best after n evaluations is the n-evaluation run's result."""
    countries = list(dict.fromkeys(r["country"] for r in rows))
    lines = ["| variant | budget of its runs | after evaluations | " + " | ".join(countries)
             + " | mean change, all runs (± standard error) | runs at -50% or better |",
             "|---|---:|---:|" + "---:|" * len(countries) + "---:|---:|"]
    for name, budget in dict.fromkeys((r["variant"], r["budget"]) for r in rows if r.get("curve")):
        mine = [r for r in rows if r["variant"] == name and r["budget"] == budget]
        for n in checkpoints:
            ratios = {c: [best / r["naive_loss"] for r in mine if r["country"] == c
                          and (best := best_at(r, n)) is not None] for c in countries}
            pooled = [1 - x for c in countries for x in ratios[c]]
            if not pooled:
                continue
            cols = [f"{-100 * (1 - statistics.median(x)):+.0f}% (n={len(x)})" if x else "–" for x in ratios.values()]
            lines.append(f"| {name} | {budget} | {n} | " + " | ".join(cols)
                         + f" | {-100 * statistics.mean(pooled):+.1f}%{_se(pooled)} | {sum(x >= 0.5 for x in pooled)}/{len(pooled)} |")
    return "\n".join(lines)


def alternate_report(host: PluginHost, out: Path, rows: list[dict[str, Any]]) -> str:
    """Held-out check of a sweep: each row's best prompt on the alternate wording.

    Rows record it since they are written; an older row is scored from its run dir, and one whose
    run dir no longer holds its prompt (continued to a larger budget under the same variant name,
    or not on this checkout) is left out and counted."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    missing = 0
    for r in rows:
        if "alt_loss" not in r:
            run_dir = run_dir_of(out, r["variant"], r["country"], r["seed"])
            summary = run_dir / "summary.json"
            if not summary.exists() or json.loads(summary.read_text())["evaluations"] != r["evaluations"]:
                missing += 1
                continue
            # the settings the row ran with, not today's defaults (they may have changed since)
            config = config_of({**recorded_settings(r), **r["options"]}, r["country"], r["seed"], r["budget"])
            r = {**r, **held_out(host, config, run_dir)}
        groups.setdefault((r["variant"], r["budget"]), []).append({**r, "change": r["alt_loss"] / r["alt_naive_loss"] - 1})
    lines = ["| variant | budget | runs | mean change vs naive on the alternate wording (± standard error) "
             "| runs below naive | countries below naive (median over seeds) | option mass (median), alternate wording "
             "| answer entropy (median), alternate wording |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for (name, budget), found in groups.items():
        changes = [-r["change"] for r in found]
        by_country = {country: statistics.median(r["change"] for r in found if r["country"] == country)
                      for country in dict.fromkeys(r["country"] for r in found)}
        failing = [country for country, c in by_country.items() if c >= 0]
        countries = f"{len(by_country) - len(failing)}/{len(by_country)}" + (f" (not: {' '.join(failing)})" if failing else "")
        lines.append(f"| {name} | {budget} | {len(found)} | {-100 * statistics.mean(changes):+.1f}%{_se(changes)} "
                     f"| {sum(c > 0 for c in changes)}/{len(found)} | {countries} | {_median_of(found, 'alt_option_mass', 3)} "
                     f"| {_median_of(found, 'alt_answer_entropy', 2)} |")
    if missing:
        lines.append(f"\n{missing} row(s) left out: their run dir no longer holds that run's prompt")
    return "\n".join(lines)


def optimizer_of(options: dict[str, Any]) -> str:
    """The optimizer and hyper-parameters a variant set, e.g. ``de strategy=best1bin popsize=8``."""
    words = [options.get("optimizer", "de")]
    words += [f"{k}={v}" for k, v in options.get("hyper", {}).items()]
    words += [f"popsize={options['popsize']}"] if "popsize" in options else []
    return " ".join(words)


def report(rows: list[dict[str, Any]]) -> str:
    countries = list(dict.fromkeys(r["country"] for r in rows))
    variants = list(dict.fromkeys((r["variant"], r["budget"]) for r in rows))
    lines = ["| variant | optimizer | position | K | d | radius | basis | budget | " + " | ".join(countries)
             + " | median reduction | mean reduction, all runs (± standard error) | runs at -50% or better | s/eval "
             "| option mass (median) | answer entropy (median) |",
             "|---|---|---|---:|---:|---:|---|---:|" + "---:|" * len(countries) + "---:|---:|---:|---:|---:|---:|"]
    for name, budget in variants:
        mine = [r for r in rows if r["variant"] == name and r["budget"] == budget]
        cols, reductions = [], []
        for c in countries:
            runs = [r for r in mine if r["country"] == c]
            if not runs:
                cols.append("–")
                continue
            loss = statistics.median(r["loss"] for r in runs)
            reductions.append(1 - loss / runs[0]["naive_loss"])
            cols.append(f"{loss:.2f} ({-100 * reductions[-1]:+.0f}%, n={len(runs)})")
        per_eval = sum(r["seconds"] for r in mine) / max(1, sum(r["evaluations"] for r in mine))
        per_run = [1 - r["loss"] / r["naive_loss"] for r in mine]   # pooled over countries and seeds
        st = mine[0]["settings"]
        lines.append(f"| {name} | {optimizer_of(mine[0]['options'])} | {st['position']} | {st['tokens']} | {st['subspace']} | {st['radius']:g} | {st.get('basis', 'gaussian')} | {budget} | "
                     + " | ".join(cols)
                     + f" | {-100 * statistics.median(reductions):+.0f}% | {-100 * statistics.mean(per_run):+.1f}%{_se(per_run)} | "
                     f"{sum(x >= 0.5 for x in per_run)}/{len(per_run)} | {per_eval:.3f} | {_median_of(mine, 'option_mass', 3)} "
                     f"| {_median_of(mine, 'answer_entropy', 2)} |")
    return "\n".join(lines)


def _median_of(rows: list[dict[str, Any]], key: str, digits: int) -> str:
    """Median of a recorded number over the runs ('–' when no row recorded it, e.g. rows from before it was)."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.median(values):.{digits}f}" if values else "–"


def _se(values: list[float]) -> str:
    """' ± s' with s the standard error of the mean in percentage points ('' for a single run)."""
    return f" ± {100 * statistics.stdev(values) / len(values) ** 0.5:.1f}" if len(values) > 1 else ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variants", nargs="+", default=["base"])
    p.add_argument("--countries", nargs="+", default=["SA", "US", "CN", "IN"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--budget", type=int, default=480)
    p.add_argument("--out", default="study")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--alternate", action="store_true",
                   help="also score every run's best prompt on the alternate wording (the held-out check)")
    p.add_argument("--curve", nargs="+", type=int, metavar="N",
                   help="also print each variant's best loss after N evaluations (runs record their curve)")
    args = p.parse_args(argv)
    path = Path(args.out) / "tuning.jsonl"
    if not args.report_only:
        host = cached_models(PluginHost(load_entrypoints=False))
        for text in args.variants:
            name, options = parse_variant(text)
            for country in args.countries:
                for seed in args.seeds:
                    done = {(r["variant"], r["country"], r["seed"], r["budget"]) for r in read_cells(path)}
                    if (name, country, seed, args.budget) in done:
                        continue
                    row = run_one(host, Path(args.out), name, options, country, seed, args.budget)
                    append_cell(path, row)
                    print(f"{name} {country} seed {seed}: L1 {row['loss']:.2f} (naive {row['naive_loss']:.2f}) "
                          f"in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
    print(report(read_cells(path)))
    if args.curve:
        print("\n" + curve_report(read_cells(path), args.curve))
    if args.alternate:
        print("\n" + alternate_report(cached_models(PluginHost(load_entrypoints=False)), Path(args.out),
                                       read_cells(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
