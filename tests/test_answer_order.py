"""benchmarks/answer_order.py on the tiny model: the bare model's scores with and without counterbalancing."""

from __future__ import annotations

import pytest

from conftest import load_benchmark
from promptopt import session
from promptopt.config import build_config
from promptopt.host import PluginHost

answer_order = load_benchmark("answer_order")


def test_one_row_per_wording_and_order_with_the_bare_models_loss(capsys):
    assert answer_order.main(["--model", "tiny", "--country", "JP"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("| main", "no"), ("| main", "yes"), ("| alternate", "no"),
                                            ("| alternate", "yes")]
    host = PluginHost(load_entrypoints=False)
    for row, (wording, counterbalance) in zip(rows, [("main", False), ("main", True), ("alternate", False),
                                                     ("alternate", True)]):
        config = build_config(None, model="tiny", country="JP", counterbalance=counterbalance, icl_baseline=False)
        objective = session.build_objective(host, config, host.create_model("tiny"), wording=wording)[3]
        assert float(row[8]) == pytest.approx(float(objective(None).loss[0]), abs=0.006)
