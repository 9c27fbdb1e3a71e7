"""`promptopt report`: a PNG (loss curve + dimensions vs target) and a Markdown summary of a finished run.

Reads RUN/history.csv and RUN/summary.json; writes report.png (1200 x 500 px) and report.md,
each atomically. Uses matplotlib's object API with the Agg canvas: no pyplot state, no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from promptopt.objectives import l1_description

from .errors import CheckpointError, UsageError
from .rundir import atomic_write, read_history, read_json

FIGSIZE = (12.0, 5.0)   # inches
DPI = 100               # -> 1200 x 500 pixels
PNG_NAME = "report.png"
MD_NAME = "report.md"
COLOURS = {"naive": "#9e9e9e", "ICL": "#f2a541", "aligned": "#2f6db5", "target": "#2a9d5b"}


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """(summary.json, history.csv or None) of a finished run."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory")
    summary = read_summary(run_dir)
    history_file = run_dir / "history.csv"
    history = read_history(history_file) if history_file.is_file() else None
    return summary, history


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A finished run's summary.json, checked as its readers (report, export) need it: one line naming
    what is missing or wrong."""
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise CheckpointError(f"{run_dir} has no summary.json: the run has not finished (or this is not a run)")
    summary = read_json(summary_file)
    _check_summary(summary, summary_file)
    return summary


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_summary(summary: dict[str, Any], path: Path) -> None:
    """Refuse, in one line naming the file, a summary.json the renderers would trip over (TypeError, KeyError)."""
    right = "expected the summary.json `promptopt run` writes (restore it or re-run)"
    missing = [k for k in ("loss", "naive_loss", "evaluations", "dimensions", "naive_dimensions", "target")
               if k not in summary]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}; {right}")
    target = summary["target"]
    if (not isinstance(target, dict) or any(k not in target for k in ("code", "name", "source"))
            or not isinstance(target.get("scores"), dict) or not target["scores"]
            or not all(_is_number(v) for v in target["scores"].values())):
        raise CheckpointError(f"{path}: target is not an object with code, name, source and numeric scores; {right}")
    dims = list(target["scores"])
    for key in ("dimensions", "naive_dimensions", "icl_dimensions"):
        values = summary.get(key)
        if key == "icl_dimensions" and not values:
            continue
        if not isinstance(values, dict) or not all(_is_number(values.get(d)) for d in dims):
            raise CheckpointError(f"{path}: {key} does not give a number for each of {', '.join(dims)}; {right}")
    optional = ("icl_loss", "option_mass", "naive_option_mass", "answer_entropy", "naive_answer_entropy")
    for key in ("loss", "naive_loss", "evaluations", *optional):
        if not _is_number(summary.get(key)) and not (key in optional and summary.get(key) is None):
            raise CheckpointError(f"{path}: {key} is {summary.get(key)!r}, not a number; {right}")


def _series(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Label -> {dimension: score}, in plot/table order: naive, ICL (when recorded), aligned, target."""
    series = {"naive": summary["naive_dimensions"]}
    if summary.get("icl_dimensions"):
        series["ICL"] = summary["icl_dimensions"]
    series["aligned"] = summary["dimensions"]
    series["target"] = summary["target"]["scores"]
    return series


def _l1(dims: dict[str, float], target: dict[str, float]) -> float:
    return sum(abs(float(dims[d]) - float(t)) for d, t in target.items()) / len(target)


def _losses(summary: dict[str, Any]) -> dict[str, float]:
    """Label -> L1 loss for every series but the target."""
    losses = {"naive": float(summary["naive_loss"])}
    if summary.get("icl_dimensions"):
        icl = summary.get("icl_loss")
        losses["ICL"] = float(icl) if icl is not None else _l1(summary["icl_dimensions"], summary["target"]["scores"])
    losses["aligned"] = float(summary["loss"])
    return losses


def _num(value: float, places: int = 3) -> str:
    """A number with up to `places` decimals and no trailing zeros (summary.json rounds scores to 3)."""
    text = f"{float(value):.{places}f}"
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text


def _l1_note(summary: dict[str, Any]) -> str:
    """The run's own definition of its L1 (a plugin's survey need not have six dimensions)."""
    return summary.get("loss_definition") or l1_description(len(summary["target"]["scores"]))


def _or_nan(value: float | None) -> float:
    """A recorded number, or nan where the run did not record it (older runs; None in summary.json)."""
    return float("nan") if value is None else value


# without a floor, a summary warns when the aligned prompt keeps less than this share of the naive option mass
MASS_WARNING_SHARE = 0.5


def summary_warnings(summary: dict[str, Any]) -> list[str]:
    """What a finished run's numbers need said beside them (the closing table and report.md): answers
    that are mostly not answers, or a floor or cap the search could not meet."""
    warnings = []
    if summary.get("option_mass") is not None:
        floor, aligned = summary.get("min_mass"), summary["option_mass"]
        if floor is None and aligned < MASS_WARNING_SHARE * summary["naive_option_mass"]:
            warnings.append(f"the aligned prompt leaves {aligned:.1%} of the next token on the answers "
                            f"(naive {summary['naive_option_mass']:.1%}): much of its change may be the model not "
                            "answering; this run had no floor, --min-mass 0.1 (the default) keeps answers valid")
        elif floor is not None and aligned < floor:
            warnings.append(f"the aligned prompt leaves {aligned:.1%} of the next token on the answers, "
                            f"under this run's --min-mass {floor:g}: the search found nothing above it")
    cap = summary.get("max_entropy")
    if summary.get("answer_entropy") is not None and cap is not None and summary["answer_entropy"] > cap + 0.005:
        warnings.append(f"the aligned answers' entropy is {summary['answer_entropy']:.2f}, over this "
                        f"run's --max-entropy {cap:g}: the search found nothing under it")
    return warnings


def provenance(config: dict[str, Any]) -> list[tuple[str, str]]:
    """What a paper needs to restate a run, from its config.json: the constants, the soft prompt,
    the penalties, the budget and the software (absent keys are left out, for older runs)."""
    run, facts = config.get("config", {}), []
    constants = (config.get("scorer") or {}).get("constants") or {}
    if constants:
        values = set(constants.values())
        facts.append(("scorer constants C", f"{values.pop():g} (every dimension)" if len(values) == 1
                      else ", ".join(f"{d} {c:g}" for d, c in constants.items())))
    if run:
        facts.append(("soft prompt", f"position {run.get('position')}, {run.get('tokens')} token(s), subspace "
                                     f"{run.get('subspace')}, radius {run.get('radius')}, init {run.get('init')}"))
        def told(key: str) -> str:   # as the flags say it: none for an unset penalty, on/off for a switch
            value = run.get(key)
            if value is None or isinstance(value, bool):
                return {None: "none", True: "on", False: "off"}[value]
            return f"{value:g}" if isinstance(value, (int, float)) else str(value)
        keys = ("min_mass", "max_entropy", "shift_weight", "counterbalance", "respondents")
        if run.get("augment"):   # training only: named when on
            keys += ("augment",)
        facts.append(("answers", ", ".join(f"{key} {told(key)}" for key in keys)))
    if "evaluations" in config:
        facts.append(("budget", f"{config['evaluations']} evaluations, popsize {run.get('popsize')}"))
    if config.get("versions"):
        facts.append(("software", ", ".join(f"{k} {v}" for k, v in config["versions"].items())))
    return facts


def render_markdown(summary: dict[str, Any], history: pd.DataFrame | None, png_name: str | None = PNG_NAME,
                    config: dict[str, Any] | None = None) -> str:
    series = _series(summary)
    losses = _losses(summary)
    target = summary["target"]
    columns = [c for c in ("target", "naive", "ICL", "aligned") if c in series]
    lines = [f"# promptopt run: {target['name']} ({target['code']})", ""]
    if png_name:
        lines += [f"![loss curve and dimensions]({png_name})", ""]
    lines += ["| dimension | " + " | ".join(columns) + " |",
              "|---|" + "---:|" * len(columns)]
    for dim in target["scores"]:
        lines.append(f"| {dim} | " + " | ".join(_num(series[c][dim]) for c in columns) + " |")
    lines.append("| L1 | " + " | ".join("" if c == "target" else _num(losses[c]) for c in columns) + " |")
    lines += ["", f"{_l1_note(summary)}. Target source: {target['source']}.", ""]
    facts = [("model", summary.get("model")), ("instrument", summary.get("instrument")),
             ("optimizer", summary.get("optimizer")), ("seed", summary.get("seed")),
             ("generations", summary.get("generations")), ("evaluations", summary.get("evaluations")),
             ("seconds", summary.get("seconds"))]
    if summary.get("option_mass") is not None:
        facts.append(("option mass (naive -> aligned)",
                      f"{_or_nan(summary.get('naive_option_mass')):.3f} -> {summary['option_mass']:.3f}"))
    if summary.get("answer_entropy") is not None:
        facts.append(("answer entropy, 0-1 (naive -> aligned)",
                      f"{_or_nan(summary.get('naive_answer_entropy')):.2f} -> {summary['answer_entropy']:.2f}"))
    if history is not None and len(history):
        facts.append(("best loss by generation", f"{history['best_loss'].iloc[0]:.3f} (gen 1) -> "
                                                 f"{history['best_loss'].iloc[-1]:.3f} (gen {len(history)})"))
    facts += provenance(config or {})
    lines += ["| run | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in facts if v is not None]
    warnings = summary_warnings(summary)
    if warnings:
        lines += [""] + [f"**Warning:** {w}." for w in warnings]
    return "\n".join(lines) + "\n"


def render_figure(summary: dict[str, Any], history: pd.DataFrame | None):
    """A matplotlib Figure (FIGSIZE at DPI) with the loss curve (left) and the dimension bars (right)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    ax_loss, ax_dims = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    losses = _losses(summary)

    if history is not None and len(history):
        gen = history["generation"]
        ax_loss.plot(gen, history["best_loss"], marker="o", ms=3, color=COLOURS["aligned"], label="best so far (by fitness)")
        ax_loss.plot(gen, history["mean_loss"], marker=".", ms=3, color="#7fa7d9", alpha=0.8,
                     label="population mean")
    else:
        ax_loss.text(0.5, 0.5, "no history.csv", ha="center", va="center", transform=ax_loss.transAxes)
    ax_loss.axhline(losses["naive"], ls="--", color=COLOURS["naive"], label=f"naive ({losses['naive']:.2f})")
    if "ICL" in losses:
        ax_loss.axhline(losses["ICL"], ls=":", color=COLOURS["ICL"], label=f"ICL ({losses['ICL']:.2f})")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.set_xlabel("generation")
    ax_loss.set_ylabel("L1 loss")
    ax_loss.set_title("loss per generation")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(fontsize=8)

    series = _series(summary)
    dims = list(summary["target"]["scores"])
    width = 0.8 / len(series)
    for k, (label, values) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(dims))]
        ax_dims.bar(xs, [float(values[d]) for d in dims], width, label=label, color=COLOURS.get(label))
    ax_dims.axhline(0, color="black", lw=0.6)
    ax_dims.set_xticks(range(len(dims)), dims)
    ax_dims.set_ylabel("dimension score")
    target = summary["target"]
    ax_dims.set_title(f"dimensions vs {target['name']} ({target['code']}); aligned L1 {losses['aligned']:.2f}")
    ax_dims.grid(axis="y", alpha=0.3)
    ax_dims.legend(fontsize=8, ncols=len(series))
    fig.suptitle(f"{summary.get('model', '?')} / {summary.get('optimizer', '?')} / seed {summary.get('seed', '?')}"
                 f" - {_l1_note(summary)}", fontsize=9)
    fig.tight_layout()
    return fig


def make_report(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """Write report.png and report.md for a finished run into ``out`` (default: the run directory)."""
    summary, history = load_run(run_dir)
    config_file = Path(run_dir) / "config.json"
    try:   # the provenance rows only: a report of a finished run does not fail on them
        config = read_json(config_file) if config_file.is_file() else None
    except CheckpointError:
        config = None
    out = Path(out) if out is not None else Path(run_dir)
    png, md = out / PNG_NAME, out / MD_NAME
    fig = render_figure(summary, history)   # both rendered before anything is written
    text = render_markdown(summary, history, PNG_NAME, config)
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
        atomic_write(md, lambda tmp: Path(tmp).write_text(text))
    except OSError as exc:   # --out under a file, unwritable, ...: the user's path, not a bug
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker else f"{exc.strerror or exc}: {exc.filename or out}"
        raise UsageError(f"cannot write the report into {out} ({why}); "
                         "give --out a directory that can be created and written") from None
    return png, md
