"""What an aligned prompt makes the model say: its top next tokens and a few greedy replies.

    python benchmarks/next_tokens.py RUN_DIR [RUN_DIR ...] [--items 1 11 17] [--top 6] [--new-tokens 12]
                                     [--wording main|alternate]

The option mass (a run's `answer p` row) says how much of the next token is an answer digit;
this says where the rest goes (the end-of-turn token is an empty reply) and what the replies
read like. The bare model comes first for comparison. Full forwards, one item at a time: a
diagnostic, not the hot path.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch

from promptopt.config import RunConfig, config_from_mapping
from promptopt.errors import PromptoptError
from promptopt.evaluator import option_token_ids, split_prompt
from promptopt.evaluate import load_soft_prompt
from promptopt.host import PluginHost


def reply_inputs(backend, prompt: str, position: str, soft: torch.Tensor | None,
                 system_prompt: str | None = None) -> torch.Tensor:
    """Input embeddings [L, H] of one item's chat prompt with the soft prompt at its position."""
    head, tail = split_prompt(backend, prompt, position, system_prompt)
    parts = [backend.embed(torch.tensor([head], device=backend.device))[0]]
    if soft is not None:
        parts.append(soft.to(backend.device, parts[0].dtype))
    if tail:
        parts.append(backend.embed(torch.tensor([tail], device=backend.device))[0])
    return torch.cat(parts)


@torch.no_grad()
def next_token_probs(backend, inputs: torch.Tensor) -> torch.Tensor:
    return backend.model(inputs_embeds=inputs[None]).logits[0, -1].float().softmax(-1)


@torch.no_grad()
def greedy_reply(backend, inputs: torch.Tensor, new_tokens: int) -> str:
    ids = []
    for _ in range(new_tokens):
        nxt = int(next_token_probs(backend, inputs).argmax())
        ids.append(nxt)
        inputs = torch.cat([inputs, backend.embed(torch.tensor([[nxt]], device=backend.device))[0]])
    return backend.tokenizer.decode(ids)


def describe(backend, label: str, prompts: list[str], n_options: int, config: RunConfig, soft: torch.Tensor | None,
             args) -> list[str]:
    """One table row (mean next-token distribution over the items) and the chosen items' greedy replies."""
    digits = torch.tensor(option_token_ids(backend, n_options), device=backend.device)
    inputs = [reply_inputs(backend, p, config.position, soft, config.system_prompt) for p in prompts]
    mean = sum(next_token_probs(backend, x) for x in inputs) / len(prompts)
    top = Counter({backend.tokenizer.decode([int(i)]): float(v) for v, i in zip(*mean.topk(args.top))})
    cells = ", ".join(f"{tok!r} {p:.1%}" for tok, p in top.most_common())
    lines = [f"| {label} | {float(mean[digits].sum()):.1%} | {cells} |"]
    for item in args.items:
        reply = greedy_reply(backend, inputs[item - 1], args.new_tokens)
        lines.append(f"|   item {item} | | {reply!r} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--items", nargs="+", type=int, default=[1, 11, 17], help="items whose greedy reply to show")
    ap.add_argument("--top", type=int, default=6, help="next tokens to list (default 6)")
    ap.add_argument("--new-tokens", type=int, default=12, help="tokens per greedy reply (default 12)")
    ap.add_argument("--wording", choices=["main", "alternate"], default="main", help="the items' wording (default main)")
    args = ap.parse_args(argv)
    host, backends, out = PluginHost(load_entrypoints=False), {}, []
    try:
        for run_dir in args.run_dirs:
            saved = json.loads((run_dir / "config.json").read_text())["config"]
            config = RunConfig(**config_from_mapping(saved, where=str(run_dir / "config.json")))
            soft, _ = load_soft_prompt(run_dir)
            key = (config.model, config.device, config.dtype)
            if key not in backends:
                backends[key] = host.create_model(config.model, device=config.device, dtype=config.dtype)
                backend = backends[key]
                instrument = host.create_instrument(config.instrument)
                prompts, n_options = instrument.prompts(args.wording), max(instrument.n_options)
                if not all(1 <= i <= len(prompts) for i in args.items):
                    ap.error(f"--items must be item numbers 1..{len(prompts)} (got {args.items})")
                out += [f"# next tokens: {config.model}, {instrument.name} ({args.wording} wording), "
                        f"mean over {len(prompts)} items", "",
                        f"| prompt | digits 1-{n_options} | top next tokens (mean probability) |",
                        "|---|---:|---|"]
                out += describe(backend, "bare model", prompts, n_options, config, None, args)
            out += describe(backends[key], f"{run_dir.name} ({config.position}, K={config.tokens})", prompts,
                            n_options, config, soft, args)
    except FileNotFoundError as exc:
        print(f"error: {exc.filename} does not exist; give run directories written by `promptopt run`", file=sys.stderr)
        return 2
    except PromptoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
