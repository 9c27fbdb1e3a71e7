"""Hard-prompt baselines: the In-Context-Learning persona prompt written from a target's scores."""

from __future__ import annotations

import re

DESCRIPTIONS = {
    "PDI": ("power distance", "people accept that power is distributed unequally and defer to authority",
            "people expect power to be shared and question authority"),
    "IDV": ("individualism", "people look after themselves and their immediate family first",
            "people belong to tight groups that look after them in exchange for loyalty"),
    "MAS": ("masculinity", "society is driven by competition, achievement and success",
            "caring for others and quality of life matter more than standing out"),
    "UAI": ("uncertainty avoidance", "people feel threatened by ambiguity and prefer rules and structure",
            "people are relaxed about ambiguity and rules are flexible"),
    "LTO": ("long-term orientation", "people value thrift, persistence and preparing for the future",
            "people value tradition, steadiness and the present"),
    "IVR": ("indulgence", "people freely enjoy life and having fun",
            "people restrain their desires and follow strict social norms"),
}


def _level(score: float) -> str:
    return "high" if score >= 65 else "low" if score <= 35 else "moderate"


# Country names English writes with "the": unions and federations, republics and kingdoms named by their
# form of state, island groups and the plural names (as the target table spells them: pycountry's names)
_TAKES_THE = re.compile(r"^(United|Central African|Dominican|Czech) |(Federation|Republic|Kingdom|Islands|Emirates)$"
                        r"|^(Netherlands|Philippines|Bahamas|Maldives|Comoros|Seychelles|Gambia)$")


# the dataset's regions put the compass point last ("Africa East"); English puts it first
_COMPASS_LAST = re.compile(r"^(\w+) (East|West|North|South)$")


def place_name(name: str) -> str:
    """A target's name as it reads after "from": "the United States", "China", "East Africa"."""
    if region := _COMPASS_LAST.match(name):
        return f"{region[2]} {region[1]}"
    return f"the {name}" if _TAKES_THE.search(name) else name


def icl_system_prompt(target) -> str:
    """A system prompt telling the model whom to answer as, describing the culture from its scores."""
    place = place_name(target.name)
    persona = (f"You are a typical adult from {place}, answering a survey about your own values and "
               f"views. Answer as a person from {place} would.")
    described = [dim for dim in DESCRIPTIONS if dim in target.scores]
    if not described:  # a plugin's target on other dimensions: the persona alone
        return persona
    lines = [f"{persona} Your culture, in Hofstede's terms:"]
    for dim in described:
        name, high, low = DESCRIPTIONS[dim]
        score = target.scores[dim]
        level = _level(score)
        gloss = high if level == "high" else low if level == "low" else f"balanced: {high}, yet {low}"
        lines.append(f"- {name} is {level} ({score:.0f} of 100): {gloss}.")
    return "\n".join(lines)
