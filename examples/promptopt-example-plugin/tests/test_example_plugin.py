"""The example plugin's own tests: the optimizer conformance kit, and the plugin as promptopt loads it.

    pip install -e examples/promptopt-example-plugin && pytest examples/promptopt-example-plugin/tests
"""

from __future__ import annotations

import torch

from promptopt.testing import OptimizerConformance, run_trajectory

from promptopt_example import OnePlusLambdaES, load_workvalues, workvalues_table


class TestOnePlusLambdaES(OptimizerConformance):
    """Every contract test of promptopt.testing, run against this plugin's optimizer."""

    optimizer_class = OnePlusLambdaES
    hyper = {"sigma0": 0.2}


def test_es_improves_on_its_first_generation():
    opt = OnePlusLambdaES(6, bounds=(-2.0, 3.0), popsize=8, seed=0)
    run_trajectory(opt, 1)
    first = opt.best[1]
    run_trajectory(opt, 30)
    assert opt.best[1] < first


def test_x0_is_evaluated_first():
    x0 = torch.linspace(-1, 1, 6)
    opt = OnePlusLambdaES(6, bounds=(-2.0, 3.0), popsize=4, seed=0, x0=x0)
    assert torch.equal(opt.ask()[0], x0)


def test_survey_and_target_table_fit_together():
    instrument = load_workvalues()
    assert instrument.n_items == 6 and instrument.scorer.dimensions == ("AUT", "SEC")
    neutral = instrument.scorer.score(torch.full((6,), 3.0))
    assert neutral.tolist() == [50.0, 50.0]  # the middle answer everywhere scores the midpoint
    table = workvalues_table()
    for target in table.list():
        assert set(target.scores) == set(instrument.scorer.dimensions)
        assert table.resolve(target.code.upper()) == target


def test_plugin_registers_through_promptopt_host():
    import promptopt_example
    from promptopt.host import PluginHost

    host = PluginHost(load_entrypoints=False, extra_plugins=(promptopt_example,))
    assert host.optimizer_class("es") is OnePlusLambdaES
    assert host.create_instrument("workvalues").name == "workvalues"
    assert host.target("balanced", "workvalues").scores == {"AUT": 50.0, "SEC": 50.0}
