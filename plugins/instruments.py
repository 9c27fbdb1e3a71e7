"""Built-in instrument and scorer: Hofstede's VSM 2013, defined as data (objectives/data/vsm13.toml)."""

import promptopt
from promptopt.objectives import load_vsm13, vsm13_scorer


@promptopt.hookimpl
def promptopt_register_instruments(register):
    register("vsm13", load_vsm13, description="Hofstede & Minkov's Values Survey Module 2013, 24 content items")


@promptopt.hookimpl
def promptopt_register_scorers(register):
    register("vsm13", vsm13_scorer, description="VSM 2013 index formulas (manual), constants C = 50 by default")
