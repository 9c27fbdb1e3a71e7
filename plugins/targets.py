"""Built-in target table: Hofstede's published 6-D scores (2015) plus the Saudi Arabia estimate."""

import promptopt
from promptopt.objectives import hofstede_table


@promptopt.hookimpl
def promptopt_register_targets(register):
    register("hofstede", hofstede_table,
             description="Hofstede 6-D dataset 2015-08-16, plus Hofstede Insights' Saudi Arabia estimate")
