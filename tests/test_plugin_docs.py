"""docs/plugins.md documents every hook in core/hookspecs.py, and only those; its optimizer
constructor example is what the host builds and checks."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import torch

from promptopt import hookspecs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def hook_names() -> set[str]:
    return {name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
            if hasattr(fn, "promptopt_spec")}


def doc_sections() -> dict[str, str]:
    """`### promptopt_xxx` heading -> the text up to the next heading."""
    text = DOCS.read_text()
    parts = re.split(r"^#{1,6} (.+)$", text, flags=re.M)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])
            if title.strip().startswith("promptopt_")}


def test_every_hook_has_a_section_and_every_section_a_hook():
    hooks, sections = hook_names(), doc_sections()
    assert len(hooks) >= 9
    assert hooks - set(sections) == set(), "hooks without a `### name` section in docs/plugins.md"
    assert set(sections) - hooks == set(), "docs/plugins.md documents hooks that do not exist"


def test_each_section_shows_the_signature_and_when_it_is_called():
    sections = doc_sections()
    for name in hook_names():
        spec = getattr(hookspecs, name)
        args = ", ".join(inspect.signature(spec).parameters)
        body = sections[name]
        assert re.search(rf"{name}\({re.escape(args)}", body.replace(": RunState", "").replace(": dict", "")
                         .replace(": click.Group", "").replace(": str", "")), f"{name}: signature ({args}) not shown"
        assert "Called" in body, f"{name}: say when the host calls it"


def test_the_optimizer_constructor_example_is_built_and_its_hyper_checked_as_in_a_run():
    from promptopt.errors import UsageError
    from promptopt.optimizers import Optimizer
    from promptopt.validation import check_hyper

    block = next(b for b in re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
                 if "def __init__" in b and "class Walk" in b)
    namespace = {"Optimizer": Optimizer, "torch": torch}
    exec(block, namespace)
    walk = namespace["Walk"]
    check_hyper("walk", walk, {"step": 0.2})
    with pytest.raises(UsageError, match="stpe"):
        check_hyper("walk", walk, {"stpe": 0.2})
    opt = walk(4, bounds=(torch.full((4,), -1.0), torch.ones(4)), popsize=3, seed=1, device="cpu",
               x0=torch.zeros(4), step=0.2)   # as session.make_optimizer calls it: no dtype
    assert (opt.step, opt.dtype, opt.popsize) == (0.2, torch.float32, 3)
