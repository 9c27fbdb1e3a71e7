"""Frozen-model soft-prompt evaluator: a whole population of soft prompts -> answer distributions.

For each survey item the chat-formatted prompt is split at the soft-prompt slot into a head
(tokens before the slot) and a tail (tokens after it, ending at the answer position). The
heads do not depend on the candidate, so their KV cache is computed once and reused for
every candidate of every generation; a (candidate, item) row then runs only K soft tokens +
the tail through the model, and only the last real position goes through the output head.
(At the ``reply`` position the tail is empty: the head ends with the assistant turn's opener, a
row runs only its K soft tokens, and the bare model's answer is read off the head's own last
hidden state, kept from its one forward.)

Rows of the same item are packed side by side into one sequence behind one copy of the
item's head KV (a block mask keeps candidates apart, position ids restart per candidate), so
the head cache is gathered and concatenated once per packed sequence instead of once per
row, and attention runs on a few long queries instead of many 1-5 token ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import inspect
import numbers
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache

from promptopt.config import POSITIONS, RunConfig
from promptopt.models import CausalLMBackend, ModelError

SLOT = "<<<promptopt-soft-prompt>>>"
PACKED_TOKENS = 256  # new tokens per packed sequence: long enough to amortise the head KV copy


@dataclass
class AnswerDistribution:
    """Per (candidate, item): option probabilities renormalised over the options, and more."""

    probs: torch.Tensor         # [P, Q, O], zero on options an item does not have
    mass: torch.Tensor | None   # [P, Q], softmax probability (full vocabulary) that fell on the options
    expected: torch.Tensor      # [P, Q], expected answer 1..O under probs: the item score


@dataclass
class _PrefixCache:
    keys: list[torch.Tensor]    # per layer [U, kv_heads, L, head_dim], zero-padded on the right
    values: list[torch.Tensor]
    lengths: torch.Tensor       # [U] real tokens of each unique head
    last_hidden: torch.Tensor   # [U, H] each head's last hidden state: the bare model's answer when the tail is empty


def check_int(name: str, value: Any, minimum: int, meaning: str) -> int:
    """``value`` as an int >= ``minimum``, or one line saying so: int() would truncate 7.9 and
    take True for 1, and a bad count fails later, far from where it was given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, {meaning} (got {type(value).__name__} {value!r:.60})")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, {meaning} (got {value})")
    return int(value)


def _as_list(name: str, value: Any, what: str) -> list:
    """A per-item argument as a list; a lone str is refused, not read as a list of characters."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of {what}, one per item (got {type(value).__name__} {value!r:.60})")
    return list(value)


def split_prompt(backend: CausalLMBackend, user_text: str, position: str,
                 system_prompt: str | None) -> tuple[list[int], list[int]]:
    """Token ids before and after the soft-prompt slot of one item's chat prompt.

    suffix: end of the user message; prefix: start of the user message; answer: at the answer
    cue, before the prompt's last token (the newline that opens the assistant turn), so a row
    runs only K + 1 tokens; reply: after the whole prompt, as the first tokens of the assistant's
    reply (empty tail), so a row runs only its K soft tokens.
    """
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if position in ("answer", "reply"):
        ids = backend.encode(backend.render_chat(system + [{"role": "user", "content": user_text}]))
        return (ids[:-1], ids[-1:]) if position == "answer" else (ids, [])
    content = user_text + SLOT if position == "suffix" else SLOT + user_text
    messages = system + [{"role": "user", "content": content}]
    text = backend.render_chat(messages, add_generation_prompt=True)
    head, sep, tail = text.partition(SLOT)
    if not sep or SLOT in tail:
        raise ValueError("the chat template altered the soft-prompt slot; this model's template is unsupported")
    return backend.encode(head), backend.encode(tail)


def default_memory_budget_mb(device: torch.device) -> float:
    """Working memory per forward: 256 MiB on CPU (a default run then peaks under 2 GiB in all),
    a quarter of the free memory on a GPU (the OOM back-off covers a wrong guess)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 4 / 2**20
    return 256.0


def option_token_ids(backend, n_options: int) -> list[int]:
    """The token ids of the answer labels "1".."n", each one token and all different: labels that
    shared a token (a vocabulary without digits maps them all to its unknown token) would make
    every answer the same and every score the scale's middle, silently."""
    try:
        ids = [backend.single_token_id(str(i + 1)) for i in range(n_options)]
    except ModelError:
        raise
    except ValueError as exc:   # a plugin backend's own wording: bad input all the same
        raise ModelError(str(exc)) from None
    if len(set(ids)) < len(ids):
        raise ModelError(f"the answer labels 1..{n_options} are not {n_options} different tokens for model "
                         f"{getattr(backend, 'name', '?')!r} (ids {ids}); use a model whose tokenizer has the digits")
    return ids


class SoftPromptEvaluator:
    """Scores soft prompts [P, K, H] on a list of multiple-choice prompts, batched over (P x Q)."""

    def __init__(self, backend: CausalLMBackend, prompts: list[str], n_options: list[int],
                 position: str = RunConfig.position, system_prompt: str | None = None,
                 batch_rows: int | None = None, memory_budget_mb: float | None = None,
                 reversed_scales: list[bool] | None = None) -> None:
        if position not in POSITIONS:
            raise ValueError(f"soft-prompt position must be one of {', '.join(POSITIONS)} (got {position!r})")
        prompts = _as_list("prompts", prompts, "str")
        bad = [p for p in prompts if not isinstance(p, str)]
        if bad:
            raise TypeError(f"prompts must be a list of str, one per item "
                            f"(got {type(bad[0]).__name__} {bad[0]!r:.60} among them)")
        n_options = [check_int(f"n_options[{i}]", n, 2, "the item's number of answer options")
                     for i, n in enumerate(_as_list("n_options", n_options, "int"))]
        if batch_rows is not None:
            batch_rows = check_int("batch_rows", batch_rows, 1, "the rows per forward; None sizes them by memory")
        if len(prompts) != len(n_options) or not prompts:
            raise ValueError("need one option count per prompt, and at least one prompt")
        self.backend = backend
        self.position = position
        self.system_prompt = system_prompt
        self.memory_budget_mb = memory_budget_mb or default_memory_budget_mb(backend.device)
        device = backend.device
        max_opts = max(n_options)
        self.option_ids = torch.tensor(option_token_ids(backend, max_opts), device=device)
        self.option_mask = (torch.arange(max_opts, device=device)[None, :]
                            < torch.tensor(n_options, device=device)[:, None])          # [Q, O]
        # the value of answer k per prompt: k, or n + 1 - k where the prompt numbers its scale the
        # other way round (counterbalancing), so `expected` is always on the instrument's own scale
        values = torch.arange(1, max_opts + 1, device=device, dtype=torch.float32).repeat(len(prompts), 1)
        if reversed_scales is not None:
            reversed_scales = _as_list("reversed_scales", reversed_scales, "bool")
            bad = [f for f in reversed_scales if not isinstance(f, (bool, np.bool_))]
            if bad:
                raise TypeError(f"reversed_scales must be a list of bool, True where the prompt numbers its "
                                f"scale the other way round (got {type(bad[0]).__name__} {bad[0]!r:.60} among them)")
            if len(reversed_scales) != len(prompts):
                raise ValueError(f"need one reversed_scales flag per prompt ({len(prompts)}; got {len(reversed_scales)})")
            flip = torch.tensor(reversed_scales, device=device)
            top = torch.tensor(n_options, device=device, dtype=torch.float32)[:, None] + 1
            values = torch.where(flip[:, None], top - values, values)
        self.option_values = values                                                          # [Q, O]

        splits = [split_prompt(backend, p, position, system_prompt) for p in prompts]
        heads = [tuple(h) for h, _ in splits]
        unique = list(dict.fromkeys(heads))
        self.head_index = torch.tensor([unique.index(h) for h in heads], device=device)   # [Q]
        self.cache = self._encode_heads(unique)
        tails = [t for _, t in splits]
        self.tail_lengths = torch.tensor([len(t) for t in tails], device=device)           # [Q]
        width = max(len(t) for t in tails)
        pad_id = backend.tokenizer.pad_token_id or 0
        tail_ids = torch.tensor([t + [pad_id] * (width - len(t)) for t in tails], device=device, dtype=torch.long)
        self.tail_embeds = backend.embed(tail_ids)                                          # [Q, T, H]
        self.tail_mask = torch.arange(width, device=device)[None, :] < self.tail_lengths[:, None]
        self.n_items = len(prompts)
        self.head_tokens = [len(h) for h in heads]
        self.tail_tokens = [len(t) for t in tails]
        self.batch_rows = batch_rows
        self.last_batch_rows: int | None = None
        self.forward_tokens = 0  # new tokens run through the model, for throughput accounting
        params = inspect.signature(backend.model.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"  # renamed in transformers 5.x

    @torch.inference_mode()
    def _encode_heads(self, heads: list[tuple[int, ...]]) -> _PrefixCache:
        """One forward per distinct head, unpadded, so its KV equals a plain forward's exactly.

        Each head's KV goes straight into the padded cache, so only one head is held twice."""
        model, device = self.backend.model, self.backend.device
        longest = max(len(h) for h in heads)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        last_hidden = []
        for u, ids in enumerate(heads):
            out = model.model(input_ids=torch.tensor([ids], device=device), use_cache=True)  # no output head
            last_hidden.append(out.last_hidden_state[0, -1])
            past = getattr(out, "cache", None) or out.past_key_values
            if not keys:
                for layer in past.layers:
                    shape = (len(heads), layer.keys.shape[1], longest, layer.keys.shape[3])
                    keys.append(layer.keys.new_zeros(shape))
                    values.append(layer.values.new_zeros(shape))
            for k, v, layer in zip(keys, values, past.layers):
                k[u, :, :len(ids)] = layer.keys[0]
                v[u, :, :len(ids)] = layer.values[0]
            del out, past
        return _PrefixCache(keys, values, torch.tensor([len(h) for h in heads], device=device), torch.stack(last_hidden))

    def rows_per_pack(self, n_soft: int) -> int:
        """Candidates of one item packed into one sequence."""
        return max(1, PACKED_TOKENS // max(1, n_soft + self.tail_embeds.shape[1]))

    def rows_per_batch(self, n_soft: int, population: int | None = None) -> int:
        """Rows (candidate x item) per forward, sized so one batch stays within the memory budget.

        A pack holds at most ``population`` rows (one per candidate), so a small population pays
        more head KV per row: with P = 1 every row gathers and extends its own copy."""
        if self.batch_rows:
            return self.batch_rows
        cfg = self.backend.model.config
        bytes_per = torch.finfo(self.backend.dtype).bits // 8
        per_seq = n_soft + self.tail_embeds.shape[1]
        pack = self.rows_per_pack(n_soft)
        if population:
            pack = min(pack, population)
        new = per_seq * pack
        total = self.cache.keys[0].shape[2] + new
        # per packed sequence: its head KV (gathered, then concatenated: x2), activations, attention scores
        kv = 2 * 2 * len(self.cache.keys) * self.cache.keys[0].shape[1] * self.cache.keys[0].shape[3] * total
        acts = new * (8 * cfg.hidden_size + 3 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size))
        attn = 2 * cfg.num_attention_heads * new * total
        per_row = bytes_per * (kv + acts + attn) / pack + 4 * 3 * cfg.vocab_size  # + fp32 logits, their exp
        return max(1, int(self.memory_budget_mb * 2**20 // per_row))

    @torch.inference_mode()
    def evaluate(self, soft: torch.Tensor | None, mass: bool = True) -> AnswerDistribution:
        """soft: [P, K, H] soft-prompt embeddings (K may be 0), or None for the bare model; an
        array (numpy) is taken as a tensor on the model's device, as torch.as_tensor would.

        ``mass=False`` (the optimisation loop) skips the option mass, a diagnostic: the answers
        need only the option logits, so the output head runs on O rows of its weight instead of
        the whole vocabulary."""
        backend = self.backend
        if soft is None:
            soft = torch.zeros(1, 0, backend.hidden_size, device=backend.device, dtype=backend.dtype)
        elif not isinstance(soft, torch.Tensor):
            soft = torch.as_tensor(soft, device=backend.device)
        if soft.dim() != 3 or soft.shape[2] != backend.hidden_size:
            raise ValueError(f"soft prompts must be [P, K, {backend.hidden_size}], got {list(soft.shape)}")
        if soft.shape[0] == 0:
            raise ValueError("need at least one soft prompt (P >= 1)")
        if not bool(torch.isfinite(soft).all()):  # packed rows share attention: one NaN spreads to all
            raise ValueError("soft prompts must be finite: a NaN or inf in one candidate would turn every "
                             "candidate evaluated beside it into NaN")
        soft = soft.to(device=backend.device, dtype=backend.dtype)
        P, K, Q = soft.shape[0], soft.shape[1], self.n_items
        rows = torch.arange(P * Q, device=backend.device)   # item-major, so a batch packs well
        log_probs = []
        start, step = 0, self.rows_per_batch(K, P)
        while start < rows.numel():
            chunk = rows[start:start + step]
            try:
                log_probs.append(self._forward_rows(soft, chunk % P, chunk // P, mass))
            except torch.OutOfMemoryError:
                if step == 1:
                    raise
                step = max(1, step // 2)
                self.batch_rows = step
                if backend.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            start += chunk.numel()
        self.last_batch_rows = step
        logp = torch.cat(log_probs).view(Q, P, -1).transpose(0, 1)             # [P, Q, 1 + O]
        option_logp = logp[..., 1:].masked_fill(~self.option_mask, float("-inf"))
        probs = torch.softmax(option_logp, dim=-1)
        expected = (probs * self.option_values).sum(-1)
        option_mass = (torch.logsumexp(option_logp, dim=-1) - logp[..., 0]).exp() if mass else None
        return AnswerDistribution(probs=probs, mass=option_mass, expected=expected)

    def _forward_rows(self, soft: torch.Tensor, cand: torch.Tensor, item: torch.Tensor,
                      mass: bool = True) -> torch.Tensor:
        """Rows (cand[i], item[i]) -> [B, 1 + O]: log-normaliser of the full vocabulary (0 if not
        ``mass``), option logits.

        Consecutive rows of one item share a packed sequence (at most ``rows_per_pack``)."""
        model, cache, device = self.backend.model, self.cache, soft.device
        B, K = len(item), soft.shape[1]
        T = self.tail_embeds.shape[1]
        W = K + T                                                                  # tokens per row
        if W == 0:   # the bare model at the reply position: the answer follows the head itself
            return self._answer_logits(cache.last_hidden[self.head_index[item]], mass)
        # pack: a new sequence starts where the item changes or the current one is full
        idx = torch.arange(B, device=device)
        starts = torch.ones(B, dtype=torch.bool, device=device)
        starts[1:] = item[1:] != item[:-1]
        run_start = torch.cummax(torch.where(starts, idx, 0), 0).values
        slot = (idx - run_start) % self.rows_per_pack(K)
        seq = torch.cumsum(starts | (slot == 0), 0) - 1                           # [B] sequence of each row
        n_seq, G = int(seq[-1]) + 1, int(slot.max()) + 1
        seq_item = torch.empty(n_seq, dtype=torch.long, device=device)
        seq_item[seq] = item
        head_len = cache.lengths[self.head_index[seq_item]]                        # [S]

        embeds = soft.new_zeros(n_seq, G, W, soft.shape[2])
        embeds[seq, slot] = torch.cat([soft[cand], self.tail_embeds[item]], dim=1)
        real = torch.zeros(n_seq, G, W, dtype=torch.bool, device=device)
        real[seq, slot] = torch.cat([torch.ones(B, K, dtype=torch.bool, device=device), self.tail_mask[item]], 1)
        offset = torch.arange(W, device=device)
        positions = (head_len[:, None, None] + offset).expand(n_seq, G, W).reshape(n_seq, G * W)

        # additive mask [S, 1, G*W, Lh + G*W]: the item's head, then own earlier real tokens only
        Lh = cache.keys[0].shape[2]
        see_head = (torch.arange(Lh, device=device)[None, :] < head_len[:, None])[:, None, :].expand(n_seq, G * W, Lh)
        group = torch.arange(G, device=device).repeat_interleave(W)
        pos = offset.repeat(G)
        see_new = ((group[:, None] == group[None, :]) & (pos[None, :] <= pos[:, None]))[None] & real.view(n_seq, 1, G * W)
        allowed = torch.cat([see_head, see_new], dim=2)[:, None]
        mask = torch.zeros(allowed.shape, dtype=self.backend.dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(self.backend.dtype).min)

        head = self.head_index[seq_item]
        past = DynamicCache(ddp_cache_data=[(k[head], v[head]) for k, v in zip(cache.keys, cache.values)],
                            config=model.config)
        hidden = model.model(inputs_embeds=embeds.view(n_seq, G * W, -1), attention_mask=mask,
                             position_ids=positions, use_cache=True, **{self._cache_kw: past}).last_hidden_state
        last = slot * W + K + self.tail_lengths[item] - 1
        self.forward_tokens += int(real.sum())
        return self._answer_logits(hidden[seq, last], mass)

    def _answer_logits(self, h: torch.Tensor, mass: bool) -> torch.Tensor:
        """Answer-position hidden states [B, H] -> [B, 1 + O] (see ``_forward_rows``)."""
        model, B = self.backend.model, h.shape[0]
        # the output head on the option tokens' rows only, [B, O]: all the answers need, and the
        # same numbers with or without the mass (a full-vocabulary product may round differently)
        output = model.get_output_embeddings()
        bias = None if output.bias is None else output.bias[self.option_ids]
        options = torch.nn.functional.linear(h, output.weight[self.option_ids], bias).float()
        if not mass:
            return torch.cat([options.new_zeros(B, 1), options], dim=1)
        logits = output(h).float()                                                 # [B, V]: one position per row
        if logits.shape != (B, model.config.vocab_size):
            raise RuntimeError(f"expected answer-position logits [{B}, V], got {list(logits.shape)}")
        return torch.cat([torch.logsumexp(logits, -1, keepdim=True), options], dim=1)
