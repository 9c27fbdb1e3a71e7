"""SoftPromptEvaluator tests on the tiny random Llama: the cached, batched fast path must equal
a plain one-sequence-at-a-time full forward, and must not depend on how rows are batched."""

from __future__ import annotations

import pytest
import torch

from promptopt.evaluator import SoftPromptEvaluator, split_prompt
from promptopt.models import build_tiny
from promptopt.objectives import load_vsm13

# Short items of different lengths (so heads and tails need padding) and option counts
# (so the option mask matters); the last repeats the first's text, so two items share a head.
SHORT_PROMPTS = ["How much? 1 = a lot, 5 = none.",
                 "Agree? Answer 1 to 3.",
                 "A longer question about the importance of leisure time, from 1 to 4?",
                 "Yes (1) or no (2)?",
                 "How much? 1 = a lot, 5 = none."]
SHORT_OPTIONS = [5, 3, 4, 2, 5]
K = 3
P = 6
TOL = 1e-4
BATCH_TOL = 1e-5


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model is faster on one thread, and much faster when other jobs share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


@pytest.fixture(scope="module")
def soft(tiny):
    """P candidates of K soft tokens scattered around real token embeddings."""
    gen = torch.Generator().manual_seed(1)
    emb = tiny.embedding_matrix.detach()
    ids = torch.randint(4, emb.shape[0], (P, K), generator=gen)
    return emb[ids] + 0.3 * emb.std() * torch.randn(P, K, emb.shape[1], generator=gen)


@pytest.fixture(scope="module")
def evaluators(tiny):
    """(position, system prompt) -> evaluator on the short items, built once."""
    return {(pos, sp): SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, position=pos, system_prompt=sp)
            for pos in ("suffix", "prefix", "reply") for sp in (None, "Answer as a survey respondent.")}


def reference(backend, prompts, n_options, soft, position, system_prompt=None):
    """The straightforward evaluator: one full sequence at a time, full-vocabulary softmax at the end.

    Returns probs [P, Q, O] (zero on missing options), mass [P, Q], expected [P, Q], all float64."""
    model = backend.model
    n_cand = 1 if soft is None else soft.shape[0]
    max_o = max(n_options)
    option_ids = [backend.encode(str(i + 1))[0] for i in range(max_o)]
    probs = torch.zeros(n_cand, len(prompts), max_o, dtype=torch.float64)
    mass = torch.zeros(n_cand, len(prompts), dtype=torch.float64)
    with torch.no_grad():
        for q, text in enumerate(prompts):
            head, tail = split_prompt(backend, text, position, system_prompt)
            for p in range(n_cand):
                parts = [backend.embed(torch.tensor([head]))]
                if soft is not None:
                    parts.append(soft[p:p + 1].to(backend.dtype))
                if tail:   # the reply position has none: the soft tokens end the sequence
                    parts.append(backend.embed(torch.tensor([tail])))
                logits = model(inputs_embeds=torch.cat(parts, dim=1)).logits[0, -1].double()
                full = torch.softmax(logits, -1)[option_ids[:n_options[q]]]
                mass[p, q] = full.sum()
                probs[p, q, :n_options[q]] = full / full.sum()
    expected = (probs * torch.arange(1, max_o + 1, dtype=torch.float64)).sum(-1)
    return probs, mass, expected


def assert_close(out, ref, tol):
    probs, mass, expected = ref
    assert out.probs.shape == probs.shape
    assert (out.probs.double() - probs).abs().max().item() <= tol
    assert (out.mass.double() - mass).abs().max().item() <= tol
    assert (out.expected.double() - expected).abs().max().item() <= 5 * tol
    # relative check on the mass too: it can be small on a random model
    assert ((out.mass.double() - mass).abs() / mass).max().item() <= 1e-3


# ---------------------------------------------------------------------------------------------
# fast path == plain full forward

@pytest.mark.parametrize("position", ["suffix", "prefix", "reply"])
@pytest.mark.parametrize("system_prompt", [None, "Answer as a survey respondent."])
def test_matches_full_forward_short_items(tiny, evaluators, soft, position, system_prompt):
    ev = evaluators[(position, system_prompt)]
    out = ev.evaluate(soft)
    assert_close(out, reference(tiny, SHORT_PROMPTS, SHORT_OPTIONS, soft, position, system_prompt), TOL)


@pytest.mark.parametrize("position", ["suffix", "prefix", "reply"])
def test_matches_full_forward_bare_model(tiny, evaluators, position):
    out = evaluators[(position, None)].evaluate(None)
    assert out.probs.shape == (1, len(SHORT_PROMPTS), max(SHORT_OPTIONS))
    assert_close(out, reference(tiny, SHORT_PROMPTS, SHORT_OPTIONS, None, position), TOL)


@pytest.mark.parametrize("position", ["prefix", "reply"])
def test_bare_model_same_for_every_position(evaluators, position):
    """With no soft tokens every position runs the same token sequence (reply: no new token at all,
    the answer is read off the cached head's last hidden state)."""
    a = evaluators[("suffix", None)].evaluate(None)
    b = evaluators[(position, None)].evaluate(None)
    assert (a.probs - b.probs).abs().max().item() <= TOL
    assert (a.mass - b.mass).abs().max().item() <= TOL


@pytest.mark.parametrize("position", ["suffix", "prefix", "reply"])
def test_matches_full_forward_vsm13(tiny, soft, position):
    vsm = load_vsm13()
    prompts, n_options = vsm.prompts("main"), list(vsm.n_options)
    ev = SoftPromptEvaluator(tiny, prompts, n_options, position=position)
    out = ev.evaluate(soft[:2])
    assert out.probs.shape == (2, 24, 5)
    items = [0, 7, 23]                       # a few items: the reference runs ~450-token sequences
    ref = reference(tiny, [prompts[i] for i in items], [n_options[i] for i in items], soft[:2], position)
    sub = type(out)(probs=out.probs[:, items], mass=out.mass[:, items], expected=out.expected[:, items])
    assert_close(sub, ref, TOL)


@pytest.mark.parametrize("position", ["suffix", "prefix", "answer", "reply"])
def test_without_mass_the_answers_are_bit_identical_and_match_a_full_forward(tiny, evaluators, soft, position):
    ev = evaluators.get((position, None)) or SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, position=position)
    full, lean = ev.evaluate(soft), ev.evaluate(soft, mass=False)
    assert lean.mass is None and full.mass is not None
    assert torch.equal(lean.probs, full.probs) and torch.equal(lean.expected, full.expected)  # the same numbers
    ref = reference(tiny, SHORT_PROMPTS, SHORT_OPTIONS, soft, position)
    assert (lean.probs.double() - ref[0]).abs().max().item() <= TOL


def test_zero_option_probability_off_the_item(evaluators, soft):
    out = evaluators[("suffix", None)].evaluate(soft)
    for q, n in enumerate(SHORT_OPTIONS):
        assert torch.all(out.probs[:, q, n:] == 0)
        assert torch.all(out.expected[:, q] <= n)


# ---------------------------------------------------------------------------------------------
# batching invariance

@pytest.mark.parametrize("position", ["suffix", "prefix", "reply"])
def test_independent_of_batch_rows_and_batch_mates(tiny, evaluators, soft, position):
    default = evaluators[(position, None)].evaluate(soft)
    for rows in (1, 5):
        ev = SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, position=position, batch_rows=rows)
        out = ev.evaluate(soft)
        assert ev.last_batch_rows == rows
        for name in ("probs", "mass", "expected"):
            assert (getattr(out, name) - getattr(default, name)).abs().max().item() <= BATCH_TOL, (rows, name)
    # each candidate alone, and in a different company
    for p in range(P):
        alone = evaluators[(position, None)].evaluate(soft[p:p + 1])
        assert (alone.probs[0] - default.probs[p]).abs().max().item() <= BATCH_TOL
        assert (alone.mass[0] - default.mass[p]).abs().max().item() <= BATCH_TOL
    mixed = evaluators[(position, None)].evaluate(torch.cat([soft[4:5], 5 * soft[:3], soft[1:2]]))
    assert (mixed.probs[0] - default.probs[4]).abs().max().item() <= BATCH_TOL
    assert (mixed.probs[4] - default.probs[1]).abs().max().item() <= BATCH_TOL


@pytest.mark.parametrize("position", ["suffix", "prefix", "answer", "reply"])
@pytest.mark.parametrize("packed_tokens", [1, 2 * (K + 6), 10_000])
def test_packing_candidates_of_an_item_into_one_sequence_changes_nothing(tiny, soft, position, packed_tokens,
                                                                         monkeypatch):
    """One candidate per sequence, a few per sequence (packs split inside an item), or all at once:
    the same answers as a one-sequence-at-a-time full forward."""
    import promptopt.evaluator as evaluator_module

    monkeypatch.setattr(evaluator_module, "PACKED_TOKENS", packed_tokens)
    ev = SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, position=position, batch_rows=7)
    assert ev.rows_per_pack(K) == max(1, packed_tokens // (K + ev.tail_embeds.shape[1]))
    out = ev.evaluate(soft)
    assert_close(out, reference(tiny, SHORT_PROMPTS, SHORT_OPTIONS, soft, position), TOL)


@pytest.mark.parametrize("position", ["suffix", "prefix", "reply"])
def test_independent_of_population_order(evaluators, soft, position):
    ev = evaluators[(position, None)]
    out = ev.evaluate(soft)
    perm = torch.randperm(P, generator=torch.Generator().manual_seed(3))
    permuted = ev.evaluate(soft[perm])
    for name in ("probs", "mass", "expected"):
        assert (getattr(permuted, name) - getattr(out, name)[perm]).abs().max().item() <= BATCH_TOL


def test_default_batch_rows_sizing(tiny):
    ev = SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS)
    assert ev.rows_per_batch(K) >= 1
    small = SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, memory_budget_mb=1e-3)
    assert small.rows_per_batch(K) == 1


def test_forward_tokens_counts_real_new_tokens(tiny, soft):
    ev = SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, batch_rows=4)
    assert ev.forward_tokens == 0
    ev.evaluate(soft)
    assert ev.forward_tokens == P * sum(K + t for t in ev.tail_tokens)


def test_a_reply_row_runs_only_its_soft_tokens_and_the_bare_model_runs_none(evaluators, soft):
    ev = evaluators[("reply", None)]
    assert ev.tail_tokens == [0] * len(SHORT_PROMPTS)
    before = ev.forward_tokens
    ev.evaluate(None)
    assert ev.forward_tokens == before
    ev.evaluate(soft)
    assert ev.forward_tokens == before + P * K * len(SHORT_PROMPTS)


# ---------------------------------------------------------------------------------------------
# output invariants

@pytest.mark.parametrize("position", ["suffix", "prefix", "reply"])
def test_output_ranges(evaluators, soft, position):
    out = evaluators[(position, None)].evaluate(soft)
    Q = len(SHORT_PROMPTS)
    assert out.probs.shape == (P, Q, max(SHORT_OPTIONS))
    assert out.mass.shape == out.expected.shape == (P, Q)
    assert torch.isfinite(out.probs).all() and torch.isfinite(out.mass).all()
    assert torch.allclose(out.probs.sum(-1), torch.ones(P, Q), atol=1e-5)
    assert (out.probs >= 0).all()
    assert (out.mass > 0).all() and (out.mass <= 1 + 1e-6).all()
    assert (out.expected >= 1 - 1e-6).all() and (out.expected <= 5 + 1e-6).all()


# ---------------------------------------------------------------------------------------------
# frozen model, no autograd

def test_never_changes_weights_and_needs_no_grad(tiny, soft):
    before = {k: v.detach().clone() for k, v in tiny.model.state_dict().items()}
    checksum = sum(float(v.double().sum()) for v in before.values())
    leaf = soft.clone().requires_grad_(True)         # an optimizer's tensor may carry grad
    for position in ("suffix", "prefix", "reply"):
        ev = SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, position=position, batch_rows=4)
        out = ev.evaluate(leaf)
        ev.evaluate(None)
        assert not out.probs.requires_grad and not out.mass.requires_grad and not out.expected.requires_grad
    with torch.no_grad():                            # also fine inside a caller's no_grad
        ev.evaluate(soft)
    after = tiny.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sum(float(v.double().sum()) for v in after.values()) == checksum
    assert all(p.grad is None and not p.requires_grad for p in tiny.model.parameters())
    assert leaf.grad is None


# ---------------------------------------------------------------------------------------------
# errors

@pytest.mark.parametrize("shape", [(K, 32), (2, K, 31), (2, K, 33), (2, 1, K, 32), (32,)])
def test_bad_soft_shape(evaluators, shape):
    with pytest.raises(ValueError, match="soft prompts must be"):
        evaluators[("suffix", None)].evaluate(torch.zeros(shape))


@pytest.mark.parametrize("position", ["middle", "Suffix", "", None])
def test_unknown_position(tiny, position):
    with pytest.raises(ValueError, match="position"):
        SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS, position=position)


def test_mismatched_options(tiny):
    with pytest.raises(ValueError):
        SoftPromptEvaluator(tiny, SHORT_PROMPTS, SHORT_OPTIONS[:-1])
    with pytest.raises(ValueError):
        SoftPromptEvaluator(tiny, [], [])


def test_out_of_memory_halves_the_batch_and_gives_the_same_answers(tiny_backend, monkeypatch):
    """A batch that does not fit is retried at half the rows; the result is unchanged and recorded."""
    from promptopt.evaluator import SoftPromptEvaluator

    prompts = ["Pick 1 to 5.", "How much? 1 to 5.", "Rate it from 1 to 5, please."]
    evaluator = SoftPromptEvaluator(tiny_backend, prompts, [5, 5, 5], batch_rows=8)
    soft = torch.randn(4, 2, tiny_backend.hidden_size, generator=torch.Generator().manual_seed(5))
    expected = evaluator.evaluate(soft)
    real = evaluator._forward_rows

    def small_memory(soft, cand, item, mass=True):
        if len(item) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(soft, cand, item, mass)

    monkeypatch.setattr(evaluator, "_forward_rows", small_memory)
    got = evaluator.evaluate(soft)
    assert evaluator.last_batch_rows == 2 and evaluator.batch_rows == 2
    assert torch.allclose(got.probs, expected.probs, atol=1e-6)


def test_answer_position_matches_a_full_forward_and_its_naive_equals_suffix_naive(tiny_backend):
    """Soft tokens at the answer cue (before the prompt's last token): exact, and K = 0 is the bare prompt."""
    from promptopt.evaluator import SoftPromptEvaluator, split_prompt

    prompts = ["Pick 1 to 5.", "How much, from 1 to 5?"]
    answer = SoftPromptEvaluator(tiny_backend, prompts, [5, 5], position="answer")
    suffix = SoftPromptEvaluator(tiny_backend, prompts, [5, 5], position="suffix")
    assert answer.tail_tokens == [1, 1]
    assert torch.allclose(answer.evaluate(None).probs, suffix.evaluate(None).probs, atol=1e-6)
    soft = torch.randn(3, 2, tiny_backend.hidden_size, generator=torch.Generator().manual_seed(9))
    fast = answer.evaluate(soft)
    with torch.inference_mode():
        for q, text in enumerate(prompts):
            head, tail = split_prompt(tiny_backend, text, "answer", None)
            for p in range(3):
                seq = torch.cat([tiny_backend.embed(torch.tensor(head)), soft[p], tiny_backend.embed(torch.tensor(tail))])
                logits = tiny_backend.model(inputs_embeds=seq[None]).logits[0, -1]
                assert torch.allclose(torch.softmax(logits[answer.option_ids], -1), fast.probs[p, q], atol=1e-4)
