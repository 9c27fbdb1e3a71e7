"""`promptopt evaluate`: score the bare model, an ICL persona prompt, or a saved soft prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from promptopt.objectives import l1_description

from .baselines import icl_system_prompt
from .config import SCORING_SETTINGS, build_config
from .errors import CheckpointError, UsageError
from .host import PluginHost
from .rundir import read_json, read_soft_prompt
from .provenance import versions
from .session import build_objective


def _soft_prompt_file(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path, path / "soft_prompt.safetensors", path / "best" / "soft_prompt.safetensors"):
        if candidate.is_file():
            return candidate
    if (path / "config.json").is_file():   # a run directory: its best/ comes when it finishes
        raise UsageError(f"the run in {path} has no best/ soft prompt yet: it has not finished; finish it with "
                         f"`promptopt run --resume {path}`, or give a finished run")
    raise UsageError(f"no soft prompt at {path}; give a run directory, its best/ folder, or a .safetensors file")


def load_soft_prompt(path: str | Path):
    """(embeddings [K, H], metadata) from a run directory, its best/ folder, or the .safetensors file;
    checked here, before a model is loaded, so a bad file costs no model load and gives one line."""
    candidate = _soft_prompt_file(path)
    meta_file = candidate.parent / "metadata.json"
    meta = read_json(meta_file) if meta_file.exists() else {}
    return read_soft_prompt(candidate), meta


def saved_scoring(path: str | Path) -> tuple[dict[str, Any], Path | None]:
    """The scoring settings of the run a soft prompt came from (its config.json), and that file;
    ({}, None) for a prompt outside a run directory."""
    candidate = _soft_prompt_file(path)
    config_file = candidate.parent.parent / "config.json"
    if candidate.parent.name != "best" or not config_file.is_file():
        return {}, None
    try:
        saved = json.loads(config_file.read_text())["config"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{config_file} is not a readable run config ({exc})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{config_file} holds a \"config\" that is not a table of the run's options; restore "
                              "the file `promptopt run` wrote, or give the settings as flags")
    return {k: saved[k] for k in SCORING_SETTINGS if k in saved}, config_file


def metadata_scoring(meta: dict[str, Any], meta_file: Path) -> dict[str, Any]:
    """The scoring settings best/metadata.json records, for a prompt moved out of its run directory:
    its "scoring" table, or (written before that existed) the model, target and position it names."""
    scoring = meta.get("scoring", {})
    if not isinstance(scoring, dict):
        raise CheckpointError(f"{meta_file} has a \"scoring\" entry that is not a table of settings; "
                              "restore the metadata.json the run wrote, or give the settings as flags")
    legacy = {"model": meta.get("model"), "country": meta.get("target"), "position": meta.get("position")}
    return {**{k: v for k, v in legacy.items() if v}, **{k: scoring[k] for k in SCORING_SETTINGS if k in scoring}}


def evaluate_baseline(host: PluginHost, config_file, flags: dict, baseline: str | None,
                      soft_prompt: str | None, wording: str = "main") -> dict[str, Any]:
    """Score one of the bare model, its ICL persona prompt or a saved soft prompt; ``wording``
    "alternate" is the held-out check of a prompt optimised on the main wording."""
    if baseline and soft_prompt:
        raise UsageError("give --baseline or --soft-prompt, not both")
    prompt_file = _soft_prompt_file(soft_prompt) if soft_prompt else None   # looked up once
    soft, meta = load_soft_prompt(prompt_file) if prompt_file else (None, {})
    saved, saved_from = saved_scoring(prompt_file) if prompt_file else ({}, None)
    if prompt_file and saved_from is None and meta:   # a prompt without its run's config still knows its scoring
        saved_from = prompt_file.parent / "metadata.json"
        saved = metadata_scoring(meta, saved_from)
    config = build_config(config_file, defaults=saved, **flags)   # the run's settings, under --config and flags
    backend = host.create_model(config.model, device=config.device, dtype=config.dtype)
    target = host.target(config.country, config.targets)
    system = icl_system_prompt(target) if baseline == "icl" else config.system_prompt
    _, scorer, target, objective = build_objective(host, config, backend, system, wording=wording)
    if soft is not None and soft.shape[-1] != backend.hidden_size:
        trained = f" ({meta['model']})" if meta.get("model") else ""
        raise UsageError(f"{prompt_file} holds a soft prompt of shape {list(soft.shape)} but model {config.model} "
                         f"takes [K, {backend.hidden_size}]; use the model it was trained for{trained}")
    result = objective(None if soft is None else soft[None])
    label = "soft prompt" if soft is not None else (baseline or "naive")
    dims = objective.dimensions
    return {"label": label, "loss": float(result.loss[0]), "loss_definition": l1_description(len(dims)),
            "dimensions": {d: round(float(v), 3) for d, v in zip(dims, result.scores[0].tolist())},
            "target": {"code": target.code, "name": target.name, "source": target.source,
                       "scores": {d: target.scores[d] for d in dims}},
            "option_mass": float(result.answers.mass.mean()), "answer_entropy": float(result.entropy[0]),
            "model": config.model, "wording": wording,
            "settings_from": str(saved_from) if saved_from else None,
            # what a paper needs to restate the number: how the model was asked and scored, and the software
            "scoring": {k: v for k, v in config.to_dict().items() if k in SCORING_SETTINGS},
            "constants": dict(scorer.describe().get("constants", {})) if callable(getattr(scorer, "describe", None)) else {},
            "system_prompt": system, "versions": versions()}
