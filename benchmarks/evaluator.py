"""Benchmark: the soft-prompt evaluator vs a plain generate-and-parse evaluator, on the embedded model.

    python benchmarks/evaluator.py                      # full run (~5-10 min on a 2-core CPU)
    python benchmarks/evaluator.py --quick              # smoke run (~1-2 min)
    python benchmarks/evaluator.py --device cuda --dtype bfloat16 --candidates 256
    python benchmarks/evaluator.py --model llama3-8b-random --device cuda --candidates 256 \
        --plain-candidates 1 --dense-batch 64 --dense-length 512    # Llama-3-8B shapes, GPU only

One run, side by side, on a model (default: the embedded SmolLM2-135M-Instruct; any registered
model name) and VSM 2013's 24 items with K soft tokens:

(a) plain: what research code usually writes. Per candidate, per item: build the full
    inputs_embeds sequence (chat head, soft tokens, tail), ``model.generate(max_new_tokens=3,
    do_sample=False)`` one sequence at a time, decode, parse the first digit (1..n_options;
    anything else counts as unparseable). Slow, so it runs on a few candidates only.
(b) ours: ``SoftPromptEvaluator.evaluate(soft, mass=False)`` on a whole population, as a run's
    loop calls it (option logits only; the checks re-score it with the mass), for the ``reply`` (default),
    ``answer``, ``suffix`` and ``prefix`` soft-prompt positions. Setup (tokenising, caching the heads' KV)
    is timed apart: it is paid once per run, not per generation.
(c) dense-forward peak: large batches of plain forwards (``model.model``, hidden states only,
    inference mode), tokens/s, the best this machine does with this model in this process.

Also reported: candidate-surveys/s, speed-up of ours over plain, tokens/s (ours counts
``forward_tokens``), ours as a fraction of (c), batch rows, the RSS high-water mark after each
stage (``ru_maxrss``), CUDA peak allocation on GPU, model FLOP/s (2 x non-embedding parameters
per token run) and model FLOP utilisation against the card's bf16 dense peak (``--peak-tflops``,
known for H100/H200/A100), agreement of ours' argmax with plain's parsed
answer on the shared candidates, and the max abs difference between the fast path and a
one-sequence-at-a-time full forward on a few (candidate, item) pairs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import resource
import sys
import time

import torch

from promptopt.config import RunConfig
from promptopt.evaluator import SoftPromptEvaluator, option_token_ids, split_prompt
from promptopt.host import PluginHost
from promptopt.objectives import load_vsm13
from promptopt.softprompt import make_space

FP32_LIMIT = 1e-4
DIGIT = re.compile(r"\d")


def rss_mib() -> float:
    """RSS high-water mark of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# bf16 dense tensor-core peaks from NVIDIA's data sheets, TFLOP/s; matched against the device name in order
CARD_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("A100", 312.0))


def card_peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in CARD_PEAK_TFLOPS if key in name), None)


def flops_per_token(model) -> float:
    """Forward FLOPs per token of the transformer body: 2 x parameters, embeddings and output head excluded
    (the evaluator runs the head at one position per row; attention over ~100 context tokens adds <1%)."""
    embeddings = {id(model.get_input_embeddings().weight), id(model.get_output_embeddings().weight)}
    return 2.0 * sum(p.numel() for p in model.parameters() if id(p) not in embeddings)


def cuda_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    load = "n/a"
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"device {device} ({name}), python {platform.python_version()}, load avg {load}")


def soft_population(backend, n: int, n_tokens: int, subspace: int, seed: int) -> torch.Tensor:
    """n soft prompts [n, K, H] decoded from uniform z in a seeded subspace space (as a run samples)."""
    special = set(backend.tokenizer.all_special_ids)
    space = make_space(backend.embedding_matrix, n_tokens, subspace, seed, special)
    gen = torch.Generator().manual_seed(seed + 1)
    z = space.lower.cpu() + (space.upper - space.lower).cpu() * torch.rand(n, space.dim, generator=gen)
    return space.decode(z.to(space.x0.device)).to(backend.dtype)


def full_sequence(backend, head: list[int], soft_row: torch.Tensor | None, tail: list[int]) -> torch.Tensor:
    """[1, L, H] inputs_embeds of one (candidate, item): embed(head), soft, embed(tail)."""
    dev = backend.device
    parts = [backend.embed(torch.tensor([head], device=dev))]
    if soft_row is not None:
        parts.append(soft_row[None].to(device=dev, dtype=backend.dtype))
    if tail:   # the reply position has none
        parts.append(backend.embed(torch.tensor([tail], device=dev)))
    return torch.cat(parts, dim=1)


@torch.inference_mode()
def plain_evaluator(backend, splits, n_options, soft: torch.Tensor, max_new_tokens: int = 3) -> dict:
    """Research-code evaluator: generate one sequence at a time, parse the first digit."""
    model, tok, dev = backend.model, backend.tokenizer, backend.device
    pad = model.generation_config.pad_token_id
    if pad is None:
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    answers = torch.zeros(soft.shape[0], len(splits), dtype=torch.long)   # 0 = unparseable
    tokens = 0
    texts = []
    sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    for p in range(soft.shape[0]):
        for q, (head, tail) in enumerate(splits):
            embeds = full_sequence(backend, head, soft[p], tail)
            mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=dev)
            out = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad)
            new = out[0, -max_new_tokens:] if out.shape[1] > max_new_tokens else out[0]
            text = tok.decode(new, skip_special_tokens=True)
            texts.append(text)
            m = DIGIT.search(text)
            if m and 1 <= int(m.group()) <= n_options[q]:
                answers[p, q] = int(m.group())
            tokens += embeds.shape[1] + max(0, len(new) - 1)   # prefill + the decode steps actually run
    sync(dev)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "answers": answers, "tokens": tokens,
            "unparseable": int((answers == 0).sum()), "examples": texts[:3]}


def ours(backend, prompts, n_options, soft: torch.Tensor, position: str, repeats: int,
         time_mass: bool = False) -> dict:
    """Best of ``repeats`` timed loop calls (``mass=False``); with ``time_mass`` each is followed by
    a call with the option mass (the baselines' and final prompt's path), best kept as
    ``seconds_mass``: interleaved, so the machine's drift between calls moves both alike."""
    dev = backend.device
    sync(dev)
    t0 = time.perf_counter()
    ev = SoftPromptEvaluator(backend, prompts, n_options, position=position)
    sync(dev)
    setup = time.perf_counter() - t0
    ev.evaluate(soft[:1])                                  # warm-up (allocator, kernels); not timed
    best, cpu, with_mass, tokens = float("inf"), 0.0, float("inf"), 0
    for _ in range(repeats):
        before = ev.forward_tokens
        sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        ev.evaluate(soft, mass=False)                      # as a run's loop calls it
        sync(dev)
        if time.perf_counter() - t0 < best:
            best, cpu = time.perf_counter() - t0, time.process_time() - c0
        tokens = ev.forward_tokens - before
        if time_mass:
            t0 = time.perf_counter()
            ev.evaluate(soft)
            sync(dev)
            with_mass = min(with_mass, time.perf_counter() - t0)
    out = ev.evaluate(soft)                                # untimed, with the option mass, for the checks
    return {"seconds": best, "seconds_mass": with_mass, "cpu": cpu, "setup": setup, "out": out, "tokens": tokens,
            "rows": ev.last_batch_rows,
            "head_tokens": ev.head_tokens, "tail_tokens": ev.tail_tokens, "evaluator": ev}


@torch.inference_mode()
def max_diff_vs_full_forward(backend, splits, n_options, soft, out, pairs) -> float:
    """Max |fast - reference| over option probs and option mass, reference = one full forward per pair."""
    option_ids = option_token_ids(backend, max(n_options))
    worst = 0.0
    for p, q in pairs:
        head, tail = splits[q]
        logits = backend.model(inputs_embeds=full_sequence(backend, head, soft[p], tail)).logits[0, -1].double()
        full = torch.softmax(logits, -1)[option_ids[:n_options[q]]]
        probs = full / full.sum()
        worst = max(worst, (out.probs[p, q, :n_options[q]].double().cpu() - probs.cpu()).abs().max().item(),
                    abs(out.mass[p, q].item() - full.sum().item()))
    return worst


@torch.inference_mode()
def dense_forward(backend, batch: int, length: int) -> dict:
    """One timed plain forward of [batch, length] random tokens (hidden states only), after a small warm-up."""
    model, dev = backend.model, backend.device
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, length), generator=gen).to(dev)
    model.model(input_ids=ids[:1], use_cache=False)        # warm-up
    sync(dev)
    t0, c0 = time.perf_counter(), time.process_time()
    model.model(input_ids=ids, use_cache=False)
    sync(dev)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seconds": seconds, "cpu": cpu, "tokens": batch * length, "tok_s": batch * length / seconds}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer candidates and repeats")
    ap.add_argument("--candidates", type=int, default=None, help="population size for ours (default 16; quick 4)")
    ap.add_argument("--plain-candidates", type=int, default=None, help="candidates for plain (default 2; quick 1)")
    ap.add_argument("--tokens", type=int, default=RunConfig.tokens, help=f"soft tokens K (default {RunConfig.tokens})")
    ap.add_argument("--subspace", type=int, default=64, help="subspace dimension of the seeded space (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="timed evaluate calls per position, best kept")
    ap.add_argument("--plain-positions", default="suffix",
                    help="positions to run plain on, comma-separated (default suffix: plain runs the same full "
                         "sequence, same length, wherever the soft tokens sit)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--dtype", default=None, help="float32 (default on CPU, and on CUDA below 1B parameters), bfloat16 (CUDA default from 1B), float16")
    ap.add_argument("--dense-batch", type=int, default=None, help="dense-forward batch (default 16; quick 4)")
    ap.add_argument("--dense-length", type=int, default=128)
    ap.add_argument("--model", default="smollm2", help="registered model name (default smollm2; llama3-8b-random "
                    "for Llama-3-8B shapes on a GPU)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense peak for model FLOP utilisation (default: known H100/H200/A100 bf16)")
    args = ap.parse_args(argv)
    n_ours = args.candidates or (4 if args.quick else 16)
    n_plain = args.plain_candidates or (1 if args.quick else 2)
    repeats = max(1, args.repeats)
    plain_positions = [p.strip() for p in args.plain_positions.split(",") if p.strip()]
    if not plain_positions or any(p not in ("suffix", "prefix") for p in plain_positions):
        ap.error("--plain-positions takes suffix and/or prefix")
    dense_batch = args.dense_batch or (4 if args.quick else 16)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    print(f"# evaluator benchmark, {dt.datetime.now().isoformat(timespec='seconds')}")
    print(f"command: python benchmarks/evaluator.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip())
    print(f"machine: {machine(device)}")
    t0 = time.perf_counter()
    backend = PluginHost(load_entrypoints=False).create_model(args.model, device=str(device), dtype=args.dtype)
    print(f"model: {args.model} ({backend.source}), {backend.describe()['parameters'] / 1e6:.1f}M parameters, "
          f"{str(backend.dtype).removeprefix('torch.')}, loaded in {time.perf_counter() - t0:.1f} s; "
          f"RSS high-water {rss_mib():.0f} MiB")
    vsm = load_vsm13()
    prompts, n_options = vsm.prompts("main"), list(vsm.n_options)
    Q, K = len(prompts), args.tokens
    soft = soft_population(backend, max(n_ours, n_plain), K, args.subspace, args.seed)
    print(f"workload: VSM 2013, {Q} items, K={K} soft tokens decoded from a seeded {args.subspace}-dim subspace "
          f"(seed {args.seed}); ours {n_ours} candidates x {repeats} timed call(s), plain {n_plain} candidate(s)")

    # dense-forward peak, measured at the start and at the end (best kept): the machine may be shared
    dense_runs = [dense_forward(backend, dense_batch, args.dense_length)]
    results, plain, diffs, notes = {}, {}, {}, []
    for position in ("answer", "reply", "suffix", "prefix"):
        splits = [split_prompt(backend, p, position, None) for p in prompts]
        r = ours(backend, prompts, n_options, soft[:n_ours], position, repeats, time_mass=position == RunConfig.position)
        r["rss"] = rss_mib()
        results[position] = r
        pairs = [(p, q) for p in range(min(n_ours, 2)) for q in (0, Q // 2, Q - 1)]
        diffs[position] = max_diff_vs_full_forward(backend, splits, n_options, soft, r["out"], pairs)
        note = (f"{position}: head/tail tokens per item {min(r['head_tokens'])}-{max(r['head_tokens'])} / "
                f"{min(r['tail_tokens'])}-{max(r['tail_tokens'])}; setup (tokenise + cache head KV, once per run) "
                f"{r['setup']:.1f} s; max abs diff measured on {len(pairs)} (candidate, item) pairs")
        if r["seconds_mass"] < float("inf"):
            note += (f"; with the option mass (full-vocabulary output head, as for the baselines) the same call "
                     f"takes {r['seconds_mass']:.2f} s vs {r['seconds']:.2f} s: {r['seconds_mass'] / r['seconds']:.2f}x")
        if position in plain_positions:
            pl = plain_evaluator(backend, splits, n_options, soft[:n_plain])
            pl["rss"] = rss_mib()
            plain[position] = pl
            arg = r["out"].probs[:n_plain].argmax(-1).cpu() + 1      # ours' argmax vs plain's parsed answer
            parsed = pl["answers"] > 0
            agree = int((arg[parsed] == pl["answers"][parsed]).sum())
            note += (f"; ours' argmax = plain's parsed answer on {agree}/{int(parsed.sum())} parsed pairs; "
                     f"plain outputs e.g. {pl['examples']!r}")
        notes.append(note)
    dense_runs.append(dense_forward(backend, dense_batch, args.dense_length))
    dense = min(dense_runs, key=lambda d: d["seconds"])
    dense_rss = rss_mib()
    base = plain.get("suffix") or next(iter(plain.values()))
    base_rate = n_plain / base["seconds"]

    header = ("| evaluator | position | candidates x items | wall s | CPU s | candidate-surveys/s | "
              "speed-up vs plain | tokens run | tokens/s | % of dense peak | batch rows | RSS high-water MiB | "
              "max abs diff vs full fwd | unparseable |")
    print()
    print(header)
    print("|" + "---|" * (header.count(" | ") + 1))
    for position, pl in plain.items():
        rate = n_plain / pl["seconds"]
        print(f"| (a) plain generate | {position} | {n_plain} x {Q} | {pl['seconds']:.1f} | {pl['cpu']:.1f} | "
              f"{rate:.4f} | {rate / base_rate:.1f}x | {pl['tokens']} | {pl['tokens'] / pl['seconds']:.0f} | "
              f"{100 * pl['tokens'] / pl['seconds'] / dense['tok_s']:.0f}% | 1 | {pl['rss']:.0f} | - | "
              f"{pl['unparseable']}/{n_plain * Q} |")
    for position, r in results.items():
        rate = n_ours / r["seconds"]
        print(f"| (b) ours `evaluate` | {position} | {n_ours} x {Q} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
              f"{rate:.4f} | {rate / base_rate:.1f}x | {r['tokens']} | {r['tokens'] / r['seconds']:.0f} | "
              f"{100 * r['tokens'] / r['seconds'] / dense['tok_s']:.0f}% | {r['rows']} | {r['rss']:.0f} | "
              f"{diffs[position]:.1e} | n/a (reads option logits) |")
    print(f"| (c) dense forward | - | batch {dense_batch} x {args.dense_length} tokens | {dense['seconds']:.1f} | "
          f"{dense['cpu']:.1f} | - | - | {dense['tokens']} | {dense['tok_s']:.0f} | 100% | {dense_batch} | "
          f"{dense_rss:.0f} | - | - |")
    print()
    if "suffix" not in plain or len(plain) < 2:
        print(f"- speed-ups are against plain on {next(iter(plain))}: plain runs the same full sequence "
              "(same length) wherever the soft tokens sit")
    for n in notes:
        print(f"- {n}")
    print(f"- dense forward tokens/s, start vs end of run: "
          + " vs ".join(f"{d['tok_s']:.0f}" for d in dense_runs) + " (best kept)")
    peak = rss_mib()
    gpu = cuda_mib(device)
    print(f"- peak RSS (ru_maxrss) {peak:.0f} MiB" + ("" if gpu is None else f"; CUDA max allocated {gpu:.0f} MiB"))
    per_token = flops_per_token(backend.model)
    card_peak = args.peak_tflops or card_peak_tflops(device)
    for label, tok_s in [(f"ours ({p})", r["tokens"] / r["seconds"]) for p, r in results.items()] + \
            [("dense forward", dense["tok_s"])]:
        tflops = tok_s * per_token / 1e12
        mfu = "" if card_peak is None else f" = {100 * tflops / card_peak:.1f}% MFU of {card_peak:g} TFLOP/s"
        print(f"- model FLOP/s, {label}: {tok_s:.0f} tokens/s x {per_token / 1e9:.3g} GFLOP/token = "
              f"{tflops:.3g} TFLOP/s{mfu}")
    print(f"- machine at end: {machine(device)}")
    fp32 = backend.dtype == torch.float32
    worst = max(diffs.values())
    # the default run's loop: the default position, with the option mass when the default floor needs it
    default = results[RunConfig.position]
    default_seconds = default["seconds_mass"] if RunConfig.min_mass else default["seconds"]
    speed_default = (n_ours / default_seconds) / base_rate
    checks = [(f"fast path vs full forward {worst:.1e} <= {FP32_LIMIT:.0e}" + ("" if fp32 else " (limit is for fp32)"),
               worst <= FP32_LIMIT)]
    if args.model == "smollm2":  # issue 3's goals are stated for the embedded model
        checks += [(f"peak RSS {peak:.0f} MiB < 2048 MiB", peak < 2048),
                   (f"speed-up of the default ({RunConfig.position}"
                    + (", with the option mass" if RunConfig.min_mass else "")
                    + f") position {speed_default:.1f}x >= 50x (goal)", speed_default >= 50)]
    for text, ok in checks:
        print(f"- {'PASS' if ok else 'MISS'}: {text}")
    if fp32 and worst > FP32_LIMIT:
        sys.exit(1)


if __name__ == "__main__":
    main()
