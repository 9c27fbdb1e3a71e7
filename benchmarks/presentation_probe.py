"""Probe, not a product option: optimise over several presentations of the main wording at once
(the item means averaged over them), then score the best prompt on the alternate wording.

    python benchmarks/presentation_probe.py --contexts 2 --countries US SA MX --seeds 0 1 2 --out /tmp/aug
    python benchmarks/presentation_probe.py --contexts 2 --paraphrase --out /tmp/para

Presentation 0 is the instrument's own; 1-3 drop or keep the block intro, write the scale
another way and use another answer instruction. With ``--paraphrase`` presentation 1 is instead
a third wording (PARAPHRASE below, in the instrument's own layout): training on two wordings,
holding out the alternate. Rows (main and alternate loss of each run's best prompt, with the
bare model's) go to OUT/rows.jsonl; docs/TUNING.md, last two sections.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from alignment_study import alternate_wording, cached_models, run_or_resume  # noqa: E402

from promptopt import session  # noqa: E402
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

# A third wording of every item and block intro, written for this probe from the main
# wording's meanings (neither copied from nor checked against the alternate wording).
PARAPHRASE_INTROS = {
    "A": "Imagine the ideal job for you, leaving aside whatever work you currently do. In choosing it, how important to you would this be?",
    "B": "In your private life, how important to you is this?",
    "C": "Please tell us about yourself.",
    "D": "To what extent do you agree or disagree with this statement?",
}
PARAPHRASE = {
    1: "Having sufficient time for your family and private life.",
    2: "Having a direct superior you are able to respect.",
    3: "Getting credit for doing a good job.",
    4: "Having job security.",
    5: "Having colleagues you get along with.",
    6: "Having work that interests you.",
    7: "Having a boss who involves you in decisions about your work.",
    8: "Living in a place you like.",
    9: "Holding a job that is respected by your family and friends.",
    10: "Having chances for promotion.",
    11: "Having free time to enjoy yourself.",
    12: "Moderation: wanting little for yourself.",
    13: "Helping out a friend.",
    14: "Being thrifty and not spending more than necessary.",
    15: "How frequently do you feel nervous or under stress?",
    16: "How frequently are you in a happy mood?",
    17: "Are you ever prevented by other people or by circumstances from doing what you truly want?",
    18: "In general, how is your health these days?",
    19: "How proud are you to be a citizen of your country?",
    20: "How frequently, in your experience, are subordinates afraid to openly disagree with their superior (or students with their teacher)?",
    21: "One can be a good manager without having precise answers to all the questions subordinates ask about their work.",
    22: "Steady, persistent effort is the surest way to get results.",
    23: "A structure in which some employees have two bosses must be avoided at all costs.",
    24: "An organisation's rules must not be broken, even when an employee believes breaking them would be in the organisation's best interest.",
}


def render(instrument, item, fmt):
    if fmt is None:
        return instrument.prompt(item.number)
    if fmt == "paraphrase":
        return dataclasses.replace(item, text=PARAPHRASE[item.number]).prompt(
            PARAPHRASE_INTROS[item.block], instruction=instrument.answer_instruction)
    parts = [instrument.blocks[item.block].intro] if fmt["intro"] and instrument.blocks[item.block].intro else []
    parts.append(item.text)
    parts.append("\n".join(fmt["scale"].format(i=i, label=lab) for i, lab in enumerate(item.scale.labels, 1)))
    parts.append(fmt["instruction"].format(n=item.n_options))
    return "\n\n".join(parts)


ORIGINAL = session.build_objective
CONTEXTS = 1
PRESENTATIONS = FORMATS


def augmented(host, config, backend, system_prompt=None, wording="main"):
    if wording != "main" or CONTEXTS == 1:
        return ORIGINAL(host, config, backend, system_prompt, wording)
    instrument = host.create_instrument(config.instrument)
    scorer = host.create_scorer(instrument, config.scorer, config.constants or None)
    target = host.target(config.country, config.targets)
    prompts = [render(instrument, it, PRESENTATIONS[k]) for k in range(CONTEXTS) for it in instrument.items]
    evaluator = SoftPromptEvaluator(backend, prompts, list(instrument.n_options) * CONTEXTS, position=config.position,
                                    system_prompt=system_prompt)
    return instrument, scorer, target, SurveyObjective(evaluator, scorer, target, respondents=CONTEXTS,
                                                       min_mass=config.min_mass)


session.build_objective = augmented


def main():
    global CONTEXTS, PRESENTATIONS
    p = argparse.ArgumentParser()
    p.add_argument("--contexts", type=int, default=2)
    p.add_argument("--countries", nargs="+", default=["US", "SA", "MX"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="/tmp/aug")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--paraphrase", action="store_true", help="presentation 1 is a third wording (PARAPHRASE)")
    args = p.parse_args()
    if args.paraphrase:
        PRESENTATIONS = [None, "paraphrase", *FORMATS[1:]]
    extra = {k: json.loads(v) for k, v in (s.split("=") for s in args.set)}
    host = cached_models(PluginHost(load_entrypoints=False))
    out = Path(args.out)
    for country in args.countries:
        for seed in args.seeds:
            config = build_config(None, country=country, seed=seed, icl_baseline=False, **extra)
            run_dir = out / f"c{args.contexts}{'-paraphrase' if args.paraphrase else ''}-{country}-{seed}"
            CONTEXTS = args.contexts
            summary = run_or_resume(host, config, run_dir)
            CONTEXTS = 1
            backend = host.create_model(config.model)
            _, _, _, main_obj = session.build_objective(host, config, backend)
            from promptopt.evaluate import load_soft_prompt
            soft, _ = load_soft_prompt(run_dir)
            m = main_obj(soft[None])
            naive = main_obj(None)
            alt, a = alternate_wording(host, config, run_dir)
            na = alt(None)
            row = dict(contexts=args.contexts, paraphrase=args.paraphrase, country=country, seed=seed, extra=extra, train_loss=summary["loss"],
                       main=float(m.loss[0]), main_naive=float(naive.loss[0]), main_mass=float(m.answers.mass.mean()),
                       alt=float(a.loss[0]), alt_naive=float(na.loss[0]), alt_mass=float(a.answers.mass.mean()),
                       seconds=summary["seconds"])
            print(json.dumps(row), flush=True)
            with open(out / "rows.jsonl", "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
