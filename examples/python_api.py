"""promptopt from Python, without the CLI: every piece the `promptopt run` command wires up.

    python examples/python_api.py            # seconds, on the random-weight `tiny` model

Swap "tiny" for "smollm2" (the embedded SmolLM2-135M-Instruct) for a real run.
"""

from __future__ import annotations

import time

from promptopt.evaluator import SoftPromptEvaluator
from promptopt.host import PluginHost
from promptopt.objective import SurveyObjective
from promptopt.softprompt import make_space


def main() -> None:
    started = time.perf_counter()
    # 1. The plugin host: built-ins plus any installed plugin; every name below is looked up here.
    host = PluginHost()

    # 2. A frozen model backend, the survey, its scorer (the instrument's own [scorer]) and a target.
    backend = host.create_model("tiny", device="cpu")
    instrument = host.create_instrument("vsm13")
    scorer = host.create_scorer(instrument)
    target = host.target("US")  # table "hofstede": ISO code or country name

    # 3. The objective: soft prompts [P, K, H] -> answer distributions -> six scores -> L1 vs target.
    evaluator = SoftPromptEvaluator(backend, instrument.prompts(), list(instrument.n_options))
    objective = SurveyObjective(evaluator, scorer, target)
    naive = objective(None)  # the bare model, no soft prompt
    print(f"naive L1 loss vs {target.name}: {float(naive.loss[0]):.2f}")

    # 4. The search space (K = 2 virtual tokens, a 16-dim subspace x0 + A z) and an optimizer.
    space = make_space(backend.embedding_matrix, n_tokens=2, subspace=16, seed=0,
                       special_ids=set(backend.tokenizer.all_special_ids))
    optimizer_cls = host.optimizer_class("de")
    optimizer = optimizer_cls(space.dim, bounds=(space.lower, space.upper), popsize=8, seed=0, x0=space.z0)

    # 5. The loop, by hand: ask a population, evaluate it in one batch, tell the losses.
    for generation in range(1, 4):
        z = optimizer.ask()                    # [P, d]
        result = objective(space.decode(z), mass=False)  # decode: [P, d] -> [P, K, H]; mass=False skips
                                                         # the option-mass diagnostic, as `promptopt run` does
        optimizer.tell(result.fitness)         # [P], lower is better: the L1 loss (+ a penalty under a
                                               # min_mass floor or over a max_entropy cap, as in
                                               # SurveyObjective(..., min_mass=0.1, max_entropy=0.6))
        print(f"generation {generation}: best {float(result.loss.min()):.2f}  mean {float(result.loss.mean()):.2f}")

    z_best, f_best = optimizer.best
    best = objective(space.decode(z_best[None]))   # re-scored alone, with the diagnostics
    scores = best.scores[0]
    print(f"best L1 loss {float(best.loss[0]):.2f} (fitness {f_best:.2f}) after {optimizer.evaluations} evaluations "
          f"in {time.perf_counter() - started:.1f} s; option mass {float(best.answers.mass.mean()):.1%}, "
          f"answer entropy {float(best.entropy[0]):.2f} (bare model {float(naive.entropy[0]):.2f})")
    for dim, value in zip(objective.dimensions, scores.tolist()):
        print(f"  {dim}  target {target.scores[dim]:>5.0f}  model {value:>6.1f}")


if __name__ == "__main__":
    main()
