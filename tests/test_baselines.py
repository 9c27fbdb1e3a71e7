"""The ICL persona prompt reads as English does."""

from __future__ import annotations

import pytest

from promptopt.baselines import icl_system_prompt
from promptopt.host import PluginHost


@pytest.mark.parametrize("code, place", [
    ("US", "the United States"), ("GB", "the United Kingdom"), ("RU", "the Russian Federation"),
    ("NL", "the Netherlands"), ("PH", "the Philippines"), ("CN", "China"), ("SA", "Saudi Arabia"),
    ("KR", "South Korea"), ("TT", "Trinidad and Tobago"), ("arab-countries", "Arab countries"),
    ("africa-east", "East Africa"), ("africa-west", "West Africa"),
])
def test_the_icl_persona_names_its_country_with_the_article_english_gives_it(code, place):
    prompt = icl_system_prompt(PluginHost(load_entrypoints=False).target(code))
    assert prompt.startswith(f"You are a typical adult from {place}, ") and f"as a person from {place} would." in prompt
