"""Extra run-directory outputs: history as Parquet, per-item answers, and the soft prompt in PEFT's format.

Every function takes a run directory (as written by ``promptopt run``) and writes each file
atomically (temp file + rename, see :mod:`promptopt.rundir`): a crash leaves the old file or
the new one, never half of one.

* ``history.parquet``            - history.csv, column for column (needs pandas + pyarrow)
* ``scores.csv``                 - tidy scores: one row per method (naive, ICL, aligned) and dimension,
  with the run's target, constants, model, optimizer and seed on every row (for pandas or R)
* ``best/item_answers.csv``      - the best candidate's answer distribution on every survey item
* ``best/peft/``                 - the best soft prompt as a PEFT prompt-tuning adapter
  (``adapter_model.safetensors`` + ``adapter_config.json`` + ``README.md``), loadable with
  ``peft.PeftModel.from_pretrained(base_model, "RUN/best/peft")``.

PEFT places its virtual tokens *before* the whole input; promptopt puts them where the run's
``position`` says (default ``reply``: the first tokens of the assistant's reply; ``answer``: at the
answer cue, just before the newline that opens the assistant's turn; ``suffix``: at the end of the
user message). The export carries the tensor faithfully,
but unless ``position = "prefix"`` a PEFT model does not see it in the place it was optimised
for, so its answers will differ. (Run directories that predate the ``position`` record were
``suffix`` runs.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

from .errors import CheckpointError, PromptoptError, UsageError
from .report import read_summary
from .rundir import atomic_write, read_history, read_json, read_soft_prompt, write_json

PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
PEFT_KEY = "prompt_embeddings"  # what peft's get_peft_model_state_dict returns for PROMPT_TUNING

# promptopt model names whose Hugging Face id differs from the name (used when no base id is given)
KNOWN_BASE_MODELS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}


class ExportError(PromptoptError, RuntimeError):
    """An export needs something that is not installed."""

    exit_code = 1


def _run_dir(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a run directory")
    return run_dir


# -- history.parquet ---------------------------------------------------------------------------------------------

def export_history(run_dir: str | Path) -> Path:
    """RUN/history.csv -> RUN/history.parquet (same columns, same values); returns the Parquet path.

    It checks the whole finished run (history.csv and best/, which export_peft reads next) before
    writing, so `promptopt export` of an unfinished or damaged run leaves nothing behind.
    """
    run_dir = _run_dir(run_dir)
    source = run_dir / "history.csv"
    if not source.is_file():
        raise CheckpointError(f"{run_dir} has no history.csv; is it a promptopt run directory?")
    try:
        import pyarrow  # noqa: F401  - pandas' Parquet engine
    except ImportError:
        raise ExportError("writing history.parquet needs pyarrow: pip install pyarrow") from None
    frame = read_history(source)
    _load_best(run_dir)
    path = run_dir / "history.parquet"
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, engine="pyarrow", index=False))
    return path


# -- scores.csv ---------------------------------------------------------------------------------------------------

SCORE_COLUMNS = ("run", "target_code", "target_name", "target_source", "model", "optimizer", "seed", "method",
                 "wording", "dimension", "score", "target", "constant", "abs_error", "l1")


def scores_frame(summary: dict[str, Any], config: dict[str, Any] | None, run: str) -> pd.DataFrame:
    """One row per (method, dimension) of a finished run: the long table a paper's analysis starts from.
    ``constant`` is the scorer's C for that dimension (None for a config.json without it)."""
    target = summary["target"]
    constants = ((config or {}).get("scorer") or {}).get("constants") or {}
    methods = [("naive", summary["naive_dimensions"], summary["naive_loss"]),
               ("ICL", summary.get("icl_dimensions"), summary.get("icl_loss")),
               ("aligned", summary["dimensions"], summary["loss"])]
    rows = [{"run": run, "target_code": target["code"], "target_name": target["name"], "target_source": target["source"],
             "model": summary.get("model"), "optimizer": summary.get("optimizer"), "seed": summary.get("seed"),
             "method": method, "wording": "main", "dimension": d, "score": scores[d], "target": goal,
             "constant": constants.get(d), "abs_error": round(abs(scores[d] - goal), 3), "l1": l1}
            for method, scores, l1 in methods if scores for d, goal in target["scores"].items()]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def check_finished(run_dir: str | Path) -> None:
    """Everything `promptopt export` reads, read once before it writes anything: history.csv, best/ and
    summary.json, so a damaged or unfinished run leaves no file of the export behind."""
    run_dir = _run_dir(run_dir)
    if not (run_dir / "history.csv").is_file():
        raise CheckpointError(f"{run_dir} has no history.csv; is it a promptopt run directory?")
    read_history(run_dir / "history.csv")
    _load_best(run_dir)
    read_summary(run_dir)


def export_scores(run_dir: str | Path) -> Path:
    """RUN/summary.json (+ config.json's constants) -> RUN/scores.csv; returns its path."""
    run_dir = _run_dir(run_dir)
    config_file = run_dir / "config.json"
    frame = scores_frame(read_summary(run_dir), read_json(config_file) if config_file.is_file() else None,
                         run_dir.name)
    path = run_dir / "scores.csv"
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return path


# -- best/item_answers.csv ---------------------------------------------------------------------------------------

def item_answers_frame(instrument, answers, candidate: int = 0) -> pd.DataFrame:
    """One row per content item: number, id, p1..pO, option mass, expected answer (for one candidate).

    Answers asked in several blocks (--counterbalance: the scale as written, then reversed; then
    per simulated respondent) give one row per block and item, with a leading ``block`` column;
    p1..pO are as the prompt numbered the options, ``expected`` is on the instrument's own scale.

    ``instrument``: an Instrument (or a name/path for ``promptopt.objectives.get_instrument``);
    ``answers``: an :class:`promptopt.evaluator.AnswerDistribution` (probs [P,Q,O], mass [P,Q], expected [P,Q]).
    """
    if isinstance(instrument, (str, Path)):
        from promptopt.objectives import get_instrument

        instrument = get_instrument(instrument)
    probs = answers.probs.detach().float().cpu()
    mass = answers.mass.detach().float().cpu()
    expected = answers.expected.detach().float().cpu()
    if probs.dim() != 3 or mass.shape != probs.shape[:2] or expected.shape != probs.shape[:2]:
        raise ValueError(f"answers must have probs [P, Q, O], mass and expected [P, Q]; got "
                         f"{list(probs.shape)}, {list(mass.shape)}, {list(expected.shape)}")
    n_cand, n_items, n_opts = probs.shape
    if not -n_cand <= candidate < n_cand:
        raise ValueError(f"candidate {candidate} out of range: the answers hold {n_cand} candidate(s)")
    if n_items % instrument.n_items:
        raise ValueError(f"answers cover {n_items} items but instrument {instrument.name!r} has {instrument.n_items}")
    blocks = n_items // instrument.n_items
    table: dict[str, Any] = {"block": [b for b in range(blocks) for _ in instrument.items]} if blocks > 1 else {}
    table.update(item=[it.number for it in instrument.items] * blocks, id=[it.id for it in instrument.items] * blocks)
    for o in range(n_opts):
        table[f"p{o + 1}"] = probs[candidate, :, o].tolist()
    table["option_mass"] = mass[candidate].tolist()
    table["expected"] = expected[candidate].tolist()
    return pd.DataFrame(table)


def write_item_answers(run_dir: str | Path, instrument, answers, candidate: int = 0) -> Path:
    """The best candidate's per-item answer distribution as RUN/best/item_answers.csv; returns its path.

    Columns: item (number), id, p1..p5 (probabilities renormalised over the item's options; 0 for
    options an item lacks), option_mass (softmax probability over the full vocabulary that fell on the
    options), expected (expected answer under p: the item score).
    """
    frame = item_answers_frame(instrument, answers, candidate)
    path = Path(run_dir) / "best" / "item_answers.csv"
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
    return path


# -- best/peft/ --------------------------------------------------------------------------------------------------

def _load_best(run_dir: Path) -> tuple[torch.Tensor, dict[str, Any]]:
    path = run_dir / "best" / "soft_prompt.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} has no best/soft_prompt.safetensors; has the run finished?")
    soft = read_soft_prompt(path)
    meta_file = run_dir / "best" / "metadata.json"
    meta = read_json(meta_file) if meta_file.is_file() else {}
    return soft, meta


def peft_adapter_config(num_virtual_tokens: int, token_dim: int, base_model_name_or_path: str | None,
                        num_layers: int | None = None, num_attention_heads: int | None = None,
                        revision: str | None = None) -> dict[str, Any]:
    """adapter_config.json of a PEFT prompt-tuning adapter (the keys PromptTuningConfig.to_dict() writes).

    num_layers / num_attention_heads may stay None: PEFT fills them from the base model on load
    (prompt tuning does not use them).
    """
    return {
        "auto_mapping": None,
        "base_model_name_or_path": base_model_name_or_path,
        "inference_mode": True,
        "modules_to_save": None,
        "num_attention_heads": num_attention_heads,
        "num_layers": num_layers,
        "num_transformer_submodules": 1,
        "num_virtual_tokens": int(num_virtual_tokens),
        "peft_type": "PROMPT_TUNING",
        "peft_version": None,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "revision": revision,
        "task_type": "CAUSAL_LM",
        "token_dim": int(token_dim),
        "tokenizer_kwargs": None,
        "tokenizer_name_or_path": None,
    }


def _peft_readme(config: dict[str, Any], meta: dict[str, Any], run_dir: Path) -> str:
    position = meta.get("position", "suffix")
    where = {"suffix": "at the END of the user message", "answer": "at the answer cue, just before the reply",
             "reply": "as the first tokens of the assistant's reply"}
    placement = ("the same place promptopt used (before the input)" if position == "prefix" else
                 f"a different place: promptopt optimised it {where.get(position, position)} (position = "
                 f"\"{position}\"), PEFT prepends virtual tokens BEFORE the whole input, so a PEFT model's answers "
                 "will differ from the run's")
    return f"""---
library_name: peft
base_model: {config['base_model_name_or_path']}
tags: [prompt-tuning, promptopt]
---
# Soft prompt exported from promptopt

A PEFT prompt-tuning adapter (`peft_type: PROMPT_TUNING`, `task_type: CAUSAL_LM`) holding the best soft prompt
of the promptopt run `{run_dir}`: {config['num_virtual_tokens']} virtual tokens x {config['token_dim']} dimensions,
float32, under the key `{PEFT_KEY}` of `{PEFT_WEIGHTS}`.

| field | value |
|---|---|
| promptopt model | {meta.get('model', '?')} |
| base_model_name_or_path | {config['base_model_name_or_path']} |
| instrument | {meta.get('instrument', '?')} |
| target | {meta.get('target', '?')} |
| L1 loss (run) | {meta.get('loss', '?')} |
| promptopt position | {position} |

**Placement.** This export is for interoperability of the tensor. PEFT puts the virtual tokens in
{placement}. The tensor is identical; the placement is {'the same' if position == 'prefix' else 'not'}.
`prompt_tuning_init: RANDOM` only describes how PEFT would initialise a *new* adapter; the weights here are the
optimised ones.

```python
from peft import PeftModel
model = PeftModel.from_pretrained(base_model, "{run_dir / 'best' / 'peft'}")
```
"""


def check_base_model(base_model_name_or_path: str | None) -> None:
    """None (the run's own model) or a non-empty id/path: checked before `promptopt export` writes anything."""
    if base_model_name_or_path is not None and not base_model_name_or_path.strip():
        raise UsageError("--base-model is empty; give the base model's Hugging Face id or path, or leave it out "
                         "for the run's own model")


def export_peft(run_dir: str | Path, base_model_name_or_path: str | None = None, *, out: str | Path | None = None,
                dtype: torch.dtype = torch.float32, num_layers: int | None = None,
                num_attention_heads: int | None = None, revision: str | None = None) -> Path:
    """The run's best soft prompt [K, H] as a PEFT prompt-tuning adapter in RUN/best/peft (or ``out``).

    Writes adapter_model.safetensors ({"prompt_embeddings": [K, H]}), adapter_config.json and a README.md
    that records promptopt's soft-prompt position (PEFT always prepends; see the module docstring).
    ``base_model_name_or_path`` defaults to the run's model (``smollm2`` -> its Hugging Face id).
    Returns the adapter directory.
    """
    check_base_model(base_model_name_or_path)
    run_dir = _run_dir(run_dir)
    soft, meta = _load_best(run_dir)
    if base_model_name_or_path is None:
        model = str(meta.get("model", "")) or None
        base_model_name_or_path = KNOWN_BASE_MODELS.get(model, model) if model else None
    directory = Path(out) if out is not None else run_dir / "best" / "peft"
    config = peft_adapter_config(soft.shape[0], soft.shape[1], base_model_name_or_path, num_layers,
                                 num_attention_heads, revision)
    tensors = {PEFT_KEY: soft.detach().to(dtype=dtype).cpu().contiguous()}
    # safetensors metadata: "format": "pt" as PEFT writes it, plus where the tensor came from (strings only)
    metadata = {"format": "pt", "promptopt_position": str(meta.get("position", "suffix")),
                "promptopt_model": str(meta.get("model", "")), "promptopt_target": str(meta.get("target", "")),
                "promptopt_loss": str(meta.get("loss", ""))}
    atomic_write(directory / PEFT_WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    write_json(directory / PEFT_CONFIG, config)
    readme = _peft_readme(config, meta, run_dir)
    atomic_write(directory / "README.md", lambda tmp: Path(tmp).write_text(readme))
    return directory


def load_peft_prompt(directory: str | Path) -> torch.Tensor:
    """The [K, H] prompt embeddings of a PEFT prompt-tuning adapter directory (no peft needed)."""
    directory = Path(directory)
    config = json.loads((directory / PEFT_CONFIG).read_text())
    if config.get("peft_type") != "PROMPT_TUNING":
        raise CheckpointError(f"{directory} is a {config.get('peft_type')} adapter, not PROMPT_TUNING")
    return load_file(str(directory / PEFT_WEIGHTS))[PEFT_KEY]

