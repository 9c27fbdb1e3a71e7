"""Probe, not a product option: optimise over several presentations of the main wording at once
(the item means averaged over them), then score the best prompt on the alternate wording.

    python benchmarks/presentation_probe.py --contexts 2 --countries US SA MX --seeds 0 1 2 --out /tmp/aug

Presentation 0 is the instrument's own; 1-3 drop or keep the block intro, write the scale
another way and use another answer instruction. Rows (main and alternate loss of each run's
best prompt, with the bare model's) go to OUT/rows.jsonl; docs/TUNING.md, last section.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from alignment_study import alternate_wording, cached_models, run_or_resume  # noqa: E402

from promptopt import runner  # noqa: E402
from promptopt.config import build_config  # noqa: E402
from promptopt.evaluator import SoftPromptEvaluator  # noqa: E402
from promptopt.host import PluginHost  # noqa: E402
from promptopt.objective import SurveyObjective  # noqa: E402

FORMATS = [
    None,  # the instrument's own
    dict(intro=False, scale="{i}. {label}", instruction="Reply with just the number (1-{n})."),
    dict(intro=True, scale="({i}) {label}", instruction="Which number from 1 to {n} fits best? Give only the number."),
    dict(intro=False, scale="{label}: {i}", instruction="Answer with one digit."),
]


def render(instrument, item, fmt):
    if fmt is None:
        return instrument.prompt(item.number)
    parts = [instrument.blocks[item.block].intro] if fmt["intro"] and instrument.blocks[item.block].intro else []
    parts.append(item.text)
    parts.append("\n".join(fmt["scale"].format(i=i, label=lab) for i, lab in enumerate(item.scale.labels, 1)))
    parts.append(fmt["instruction"].format(n=item.n_options))
    return "\n\n".join(parts)


ORIGINAL = runner.build_objective
CONTEXTS = 1


def augmented(host, config, backend, system_prompt=None, wording="main"):
    if wording != "main" or CONTEXTS == 1:
        return ORIGINAL(host, config, backend, system_prompt, wording)
    instrument = host.create_instrument(config.instrument)
    scorer = host.create_scorer(instrument, config.scorer, config.constants or None)
    target = host.target(config.country, config.targets)
    prompts = [render(instrument, it, FORMATS[k]) for k in range(CONTEXTS) for it in instrument.items]
    evaluator = SoftPromptEvaluator(backend, prompts, list(instrument.n_options) * CONTEXTS, position=config.position,
                                    system_prompt=system_prompt)
    return instrument, scorer, target, SurveyObjective(evaluator, scorer, target, respondents=CONTEXTS,
                                                       min_mass=config.min_mass)


runner.build_objective = augmented


def main():
    global CONTEXTS
    p = argparse.ArgumentParser()
    p.add_argument("--contexts", type=int, default=2)
    p.add_argument("--countries", nargs="+", default=["US", "SA", "MX"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="/tmp/aug")
    p.add_argument("--set", nargs="*", default=[])
    args = p.parse_args()
    extra = {k: json.loads(v) for k, v in (s.split("=") for s in args.set)}
    host = cached_models(PluginHost(load_entrypoints=False))
    out = Path(args.out)
    for country in args.countries:
        for seed in args.seeds:
            config = build_config(None, country=country, seed=seed, icl_baseline=False, **extra)
            run_dir = out / f"c{args.contexts}-{country}-{seed}"
            CONTEXTS = args.contexts
            summary = run_or_resume(host, config, run_dir)
            CONTEXTS = 1
            backend = host.create_model(config.model)
            _, _, _, main_obj = runner.build_objective(host, config, backend)
            from promptopt.evaluate import load_soft_prompt
            soft, _ = load_soft_prompt(run_dir)
            m = main_obj(soft[None])
            naive = main_obj(None)
            alt, a = alternate_wording(host, config, run_dir)
            na = alt(None)
            row = dict(contexts=args.contexts, country=country, seed=seed, extra=extra, train_loss=summary["loss"],
                       main=float(m.loss[0]), main_naive=float(naive.loss[0]), main_mass=float(m.answers.mass.mean()),
                       alt=float(a.loss[0]), alt_naive=float(na.loss[0]), alt_mass=float(a.answers.mass.mean()),
                       seconds=summary["seconds"])
            print(json.dumps(row), flush=True)
            with open(out / "rows.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
