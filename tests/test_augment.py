"""--augment: perturbed copies of the survey's wording fitted alongside the plain one, for training only."""

from __future__ import annotations

import json

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import invoke
from promptopt.config import build_config
from promptopt.host import PluginHost
from promptopt.objectives import load_vsm13, word_dropout
from promptopt.session import build_objective

words = st.lists(st.text(st.characters(blacklist_characters=" "), min_size=1, max_size=8), min_size=1, max_size=30)


@settings(max_examples=80, deadline=None)
@given(words, st.integers(0, 2**32), st.floats(0, 0.9))
def test_word_dropout_keeps_a_nonempty_in_order_subset_of_the_words(text_words, seed, rate):
    dropped = word_dropout(seed, rate)(" ".join(text_words)).split(" ")
    assert dropped
    rest = iter(text_words)
    assert all(any(w == v for v in rest) for w in dropped)   # a subsequence: nothing added or reordered


def test_word_dropout_is_seeded_and_drops_about_its_rate():
    text = " ".join(f"w{i}" for i in range(2000))
    a, b = word_dropout("0:0")(text), word_dropout("0:0")(text)
    assert a == b and a != word_dropout("0:1")(text)
    assert 0.17 < 1 - len(a.split(" ")) / 2000 < 0.23   # WORD_DROPOUT = 0.2
    assert word_dropout(0, rate=0)(text) == text


def test_a_rewrite_changes_the_intros_and_item_texts_and_leaves_scales_and_instruction_whole():
    vsm = load_vsm13()
    plain, rewritten = vsm.prompts(), vsm.prompts(rewrite=lambda s: s.upper())
    for p, r in zip(plain, rewritten):
        *question, scale, instruction = p.split("\n\n")
        *r_question, r_scale, r_instruction = r.split("\n\n")
        assert (r_scale, r_instruction) == (scale, instruction) and r_question == [q.upper() for q in question]
    alternate = vsm.prompts("alternate", rewrite=lambda s: s.upper())
    assert alternate[0].split("\n\n")[1] == vsm.items[0].alternate.upper()


def test_augmented_copies_are_extra_blocks_of_the_training_objective_only(tiny_backend):
    host = PluginHost(load_entrypoints=False)
    config = build_config(None, model="tiny", augment=2)
    _, _, _, train = build_objective(host, config, tiny_backend, train=True)
    _, _, _, plain = build_objective(host, config, tiny_backend)   # what evaluate, ICL and the held-out check ask
    assert train.respondents == 3 and train.evaluator.n_items == 3 * 24 and plain.evaluator.n_items == 24
    soft = torch.randn(2, 1, tiny_backend.hidden_size, generator=torch.Generator().manual_seed(0))
    blocks = train.evaluator.evaluate(soft).expected.view(2, 3, 24)
    assert torch.allclose(blocks[:, 0], plain.evaluator.evaluate(soft).expected, atol=1e-5)
    assert not torch.allclose(blocks[:, 1], blocks[:, 0]) and not torch.allclose(blocks[:, 1], blocks[:, 2])


def test_run_with_augment_and_a_bad_count(tmp_path):
    code, _, err = invoke(["run", "--model", "tiny", "--popsize", "4", "--generations", "1", "--augment", "1",
                           "--no-icl", "--quiet", "--out", str(tmp_path / "r")])
    assert code == 0, err
    assert json.loads((tmp_path / "r" / "config.json").read_text())["config"]["augment"] == 1
    # the result is the survey as asked: evaluate (which never augments) gives the run's own loss back
    code, out, err = invoke(["evaluate", "--soft-prompt", str(tmp_path / "r"), "--json"])
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert code == 0 and abs(json.loads(out)["loss"] - summary["loss"]) < 1e-4, err
    assert "respondents 0, augment 1 |" in (tmp_path / "r" / "report.md").read_text()   # named in the report when on
    code, _, err = invoke(["run", "--model", "tiny", "--augment", "-1", "--quiet", "--out", str(tmp_path / "s")])
    assert code == 2 and "--augment must be >= 0" in err and not (tmp_path / "s").exists()
