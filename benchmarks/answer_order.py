"""How much of a model's survey answer is the answer's position on the scale? (issue 8)

    python benchmarks/answer_order.py [--model smollm2] [--country US]

The bare model's six scores on each wording, with the scale as written and counterbalanced
(`--counterbalance`: every item also asked with its scale numbered the other way round, the
answers mapped back and averaged). A model that answers by content keeps its scores when
counterbalanced; one that answers by position (always "1") falls to the constants C, here 50.
"""

from __future__ import annotations

import argparse

from alignment_study import cached_models

from promptopt import session
from promptopt.config import build_config
from promptopt.host import PluginHost


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--country", default="US", help="the target the L1 column is measured against")
    args = p.parse_args(argv)
    host = cached_models(PluginHost(load_entrypoints=False))
    print("| wording | counterbalanced | " + " | ".join(("PDI", "IDV", "MAS", "UAI", "LTO", "IVR"))
          + f" | L1 vs {args.country} | answers, each order (min-max) | option mass |")
    print("|---|---|" + "---:|" * 9)
    for wording in ("main", "alternate"):
        for counterbalance in (False, True):
            config = build_config(None, model=args.model, country=args.country, counterbalance=counterbalance,
                                  icl_baseline=False)
            backend = host.create_model(config.model)
            objective = session.build_objective(host, config, backend, wording=wording)[3]
            bare = objective(None)
            means = bare.answers.expected[0]
            print(f"| {wording} | {'yes' if counterbalance else 'no'} | "
                  + " | ".join(f"{float(v):.1f}" for v in bare.scores[0])
                  + f" | {float(bare.loss[0]):.2f} | {float(means.min()):.2f}-{float(means.max()):.2f} "
                  f"| {float(bare.answers.mass.mean()):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
