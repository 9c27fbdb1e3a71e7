"""promptopt example plugin: a work-values survey, its target table, and a (1+lambda)-ES.

This module is what the entry point names, so it holds only the hook implementations:
each hook is called once when promptopt's plugin host starts and registers a name with a
factory. Nothing heavy happens here; the survey file is read when it is first used.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import promptopt

from .es import OnePlusLambdaES
from .targets import workvalues_table

__all__ = ["OnePlusLambdaES", "load_workvalues", "workvalues_table"]
__version__ = "0.1.0"


@lru_cache(maxsize=None)
def load_workvalues():
    """The work-values survey (6 items, scorer AUT and SEC), parsed from its TOML data file."""
    from promptopt.objectives import load_instrument

    return load_instrument(files(__package__) / "data" / "workvalues.toml")


@promptopt.hookimpl
def promptopt_register_instruments(register):
    register("workvalues", load_workvalues, description="work values (example plugin): 6 items, AUT and SEC")


@promptopt.hookimpl
def promptopt_register_targets(register):
    register("workvalues", workvalues_table, description="three made-up work-value profiles (example plugin)")


@promptopt.hookimpl
def promptopt_register_optimizers(register):
    register("es", OnePlusLambdaES, description="(1+lambda) evolution strategy (example plugin)")
