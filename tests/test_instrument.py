"""Instrument tests: the builtin VSM 2013 file, prompts, and TOML loading errors."""

import textwrap
from pathlib import Path

import pytest

from promptopt.objectives import (
    BUILTIN_INSTRUMENTS,
    AnswerScale,
    Block,
    Instrument,
    InstrumentError,
    Item,
    get_instrument,
    load_instrument,
    load_vsm13,
)

IMPORTANCE = ("of utmost importance", "very important", "of moderate importance",
              "of little importance", "of very little or no importance")


def test_vsm13_structure():
    ins = load_vsm13()
    assert ins.name == "vsm13"
    assert ins.item_numbers == tuple(range(1, 25))
    assert ins.n_options == (5,) * 24
    assert all(i.n_options == 5 for i in ins.items)
    assert [d.number for d in ins.demographics] == [25, 26, 27, 28, 29, 30]
    assert ins.demographics[4].free_text and not ins.demographics[1].free_text
    assert set(ins.blocks) == {"A", "B", "C", "D"}
    assert ins.has_alternates
    for it in ins.items:
        assert it.alternate and it.alternate != it.text


def test_vsm13_scales():
    ins = load_vsm13()
    for n in range(1, 15):
        assert ins.item(n).scale.labels == IMPORTANCE
    assert ins.item(15).scale.labels == ("always", "usually", "sometimes", "seldom", "never")
    assert ins.item(16).scale.labels[0] == "always"
    assert ins.item(17).scale.labels == ("yes always", "yes usually", "sometimes", "no seldom", "no never")
    assert ins.item(18).scale.labels == ("very good", "good", "fair", "poor", "very poor")
    assert ins.item(19).scale.labels[-1] == "not proud at all"
    assert ins.item(20).scale.labels == ("never", "seldom", "sometimes", "usually", "always")
    for n in range(21, 25):
        assert ins.item(n).scale.labels[0] == "strongly agree"


def test_prompt_text():
    ins = load_vsm13()
    p = ins.prompt(1)
    assert p.startswith(ins.blocks["A"].intro)
    assert ins.item(1).text in p
    assert "1 = of utmost importance\n2 = very important\n" in p
    assert p.endswith("Answer with a single number from 1 to 5.")
    p20 = ins.prompt(20)
    assert "1 = never\n2 = seldom\n3 = sometimes\n4 = usually\n5 = always" in p20
    prompts = ins.prompts()
    assert len(prompts) == 24 and prompts[0] == p and prompts[19] == p20
    alt = ins.prompts("alternate")
    assert len(alt) == 24
    assert all(a != m for a, m in zip(alt, prompts))
    assert ins.item(1).alternate in alt[0] and ins.blocks["A"].alternate_intro in alt[0]
    with pytest.raises(InstrumentError, match="allowed: main, alternate"):
        ins.prompts("other")


def test_item_prompt_method():
    it = Item("x", 1, "A", "Do you like tea?", AnswerScale(("yes", "no")))
    assert it.prompt("Intro.") == "Intro.\n\nDo you like tea?\n\n1 = yes\n2 = no\n\nAnswer with a single number from 1 to 2."
    assert it.prompt("").startswith("Do you like tea?")
    with pytest.raises(InstrumentError, match="no alternate wording"):
        it.prompt("Intro.", wording="alternate")


def test_construction_validation():
    scale = AnswerScale(("a", "b"))
    blocks = {"A": Block("A", "intro")}
    with pytest.raises(InstrumentError, match="at least 2 labels"):
        AnswerScale(("only",))
    with pytest.raises(InstrumentError, match="scale must be an AnswerScale"):
        Item("x", 1, "A", "t", ("a", "b"))  # type: ignore[arg-type]
    with pytest.raises(InstrumentError, match="number 1 is used twice"):
        Instrument("t", "", blocks, (Item("x", 1, "A", "t", scale), Item("y", 1, "A", "t", scale)))
    with pytest.raises(InstrumentError, match="id 'x'"):
        Instrument("t", "", blocks, (Item("x", 1, "A", "t", scale), Item("x", 2, "A", "t", scale)))
    with pytest.raises(InstrumentError, match="block 'Z'"):
        Instrument("t", "", blocks, (Item("x", 1, "Z", "t", scale),))
    ins = Instrument("t", "", blocks, (Item("x", 1, "A", "t", scale),))
    with pytest.raises(InstrumentError, match=r"items \[1\] have no alternate"):
        ins.prompts("alternate")


GOOD = """
[instrument]
name = "mini"
description = "two items"
source = "test"

[scales.yn]
labels = ["yes", "no"]

[blocks.A]
intro = "About you."

[[items]]
number = 1
block = "A"
text = "Do you like tea?"
alternate = "Is tea something you enjoy?"
scale = "yn"

[[items]]
number = 2
block = "A"
text = "Do you like coffee?"
scale = ["a lot", "a little", "not at all"]

[scorer]
[scorer.formulas]
X = [[10, 1], [-10, 2]]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "inst.toml"
    p.write_text(textwrap.dedent(text))
    return p


def test_load_minimal(tmp_path):
    ins = load_instrument(write(tmp_path, GOOD))
    assert ins.item_numbers == (1, 2)
    assert ins.item(1).id == "q01"
    assert ins.n_options == (2, 3)
    assert ins.scorer is not None and ins.scorer.constants == {"X": 50.0}
    assert ins.prompt(2).endswith("3 = not at all\n\nAnswer with a single number from 1 to 3.")
    assert get_instrument(write(tmp_path, GOOD)).name == "mini"


@pytest.mark.parametrize(
    "old,new,match",
    [
        ('text = "Do you like coffee?"\n', "", r"items\[1\] \(number 2\): missing key 'text'"),
        ('scale = "yn"', 'scale = "nope"', r"key 'scale' = 'nope' is not defined"),
        ('scale = ["a lot", "a little", "not at all"]', 'scale = ["only one"]', r"key 'scale'.*at least 2 labels"),
        ('labels = ["yes", "no"]', 'labels = "yes"', r"\[scales.yn\] key 'labels'"),
        ("number = 2", "number = 1", r"number 1 is used twice"),
        ('name = "mini"\n', "", r"\[instrument\]: missing key 'name'"),
        ('block = "A"\ntext = "Do you like tea?"', 'block = "B"\ntext = "Do you like tea?"', r"key 'block' = 'B'"),
        ("X = [[10, 1], [-10, 2]]", "X = [[10, 1], [-10, 7]]", r"\[scorer\].*item 7"),
        ("X = [[10, 1], [-10, 2]]", "X = [[10, 1], [-10]]", r"scorer.formulas.X"),
        ('alternate = "Is tea something you enjoy?"', 'colour = "red"', r"items\[0\].*unknown key 'colour'"),
        # a misspelt optional key at any level is an error, not a silent default
        ('intro = "About you."', 'intro = "About you."\nalternat_intro = "You."',
         r"\[blocks.A\]: unknown key 'alternat_intro'; did you mean 'alternate_intro'\?"),
        ('source = "test"', 'source = "test"\nanswer_instructions = "x"',
         r"\[instrument\]: unknown key 'answer_instructions'; did you mean 'answer_instruction'\?"),
        ('labels = ["yes", "no"]', 'labels = ["yes", "no"]\nlabel = ["y"]', r"\[scales.yn\]: unknown key 'label'"),
        ("[scorer]\n", "[scorer]\nconstant = 40\n", r"\[scorer\]: unknown key 'constant'; did you mean 'constants'\?"),
        ("[instrument]", "[targets]\nUS = 1\n\n[instrument]", r"unknown key 'targets'; allowed: instrument, "),
        ('name = "mini"', 'name = " "', r"\[instrument\]: key 'name' is empty"),
        ('labels = ["yes", "no"]', 'labels = ["yes", "yes"]', r"labels \['yes'\] appear twice"),
        ("X = [[10, 1], [-10, 2]]", "X = []", r"formula for X has no terms"),
    ],
)
def test_load_errors_name_file_and_key(tmp_path, old, new, match):
    assert old in GOOD
    p = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(InstrumentError, match=match) as ei:
        load_instrument(p)
    msg = str(ei.value)
    assert str(p) in msg and "\n" not in msg


def test_load_file_errors(tmp_path):
    with pytest.raises(InstrumentError, match="not found"):
        load_instrument(tmp_path / "missing.toml")
    with pytest.raises(InstrumentError, match="is a directory; give the instrument's .toml file in it"):
        get_instrument(tmp_path)
    with pytest.raises(InstrumentError, match="invalid TOML"):
        load_instrument(write(tmp_path, "[instrument\nname="))
    with pytest.raises(InstrumentError, match="unknown instrument"):
        get_instrument("vsm99")


def test_builtin_registry():
    assert BUILTIN_INSTRUMENTS["vsm13"].is_file()
    assert get_instrument("vsm13") is load_vsm13()
