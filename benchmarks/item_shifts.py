"""Do a soft prompt's effects carry from the main wording to the alternate one? (issue 8's held-out check)

    python benchmarks/item_shifts.py [RUN_GLOB ...]    (default: study/runs/*-de-* study/screen/runs/*)

Per run: the shift of each item's expected answer (best prompt minus bare model) on the main
wording and on the alternate wording, and their correlation; median and range per group
(study dir : optimizer). Also the bare model's own item answers, main vs alternate. Runs are
scored at the default position and length (the study's).
"""
import statistics
import sys
from pathlib import Path
import torch
from alignment_study import cached_models
from promptopt import session
from promptopt.config import build_config
from promptopt.evaluate import load_soft_prompt
from promptopt.host import PluginHost
host = cached_models(PluginHost(load_entrypoints=False))
config = build_config(None, icl_baseline=False)
backend = host.create_model(config.model)
main = session.build_objective(host, config, backend)[3]
alt = session.build_objective(host, config, backend, wording="alternate")[3]
n_main, n_alt = main(None).answers.expected[0], alt(None).answers.expected[0]
print("naive main vs alt item answers corr", float(torch.corrcoef(torch.stack([n_main, n_alt]))[0, 1]))
for wording, means in (("main", n_main), ("alternate", n_alt)):
    print(f"naive item means ({wording}): {float(means.min()):.2f}-{float(means.max()):.2f} on 1-5 scales")
correlations: dict[str, list[float]] = {}
ROOT = Path(__file__).resolve().parents[1]
patterns = sys.argv[1:] or ["study/runs/*-de-*", "study/screen/runs/*"]
for d in [d for p in patterns for d in sorted(ROOT.glob(p))]:
    if not (d / "summary.json").exists():   # still running
        continue
    soft, _ = load_soft_prompt(d)
    shift_main = main(soft[None]).answers.expected[0] - n_main
    shift_alt = alt(soft[None]).answers.expected[0] - n_alt
    c = float(torch.corrcoef(torch.stack([shift_main, shift_alt]))[0, 1])
    correlations.setdefault(d.parent.parent.name + ":" + d.name.split("-")[1], []).append(c)
for k, v in correlations.items():
    print(k, len(v), "median corr of item shifts main vs alt", round(statistics.median(v), 2), "range", round(min(v), 2), round(max(v), 2))
