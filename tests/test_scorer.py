"""Scorer tests: formulas evaluated by hand, independently of the weight-matrix implementation."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from promptopt.objectives import DIMENSIONS, LinearScorer, ScorerError, load_vsm13, vsm13_scorer


def hand_scores(m: dict[int, float], c: dict[str, float] | None = None) -> list[float]:
    """The VSM 2013 manual formulas written out literally."""
    c = c or {d: 50.0 for d in DIMENSIONS}
    return [
        35 * (m[7] - m[2]) + 25 * (m[20] - m[23]) + c["PDI"],
        35 * (m[4] - m[1]) + 35 * (m[9] - m[6]) + c["IDV"],
        35 * (m[5] - m[3]) + 35 * (m[8] - m[10]) + c["MAS"],
        40 * (m[18] - m[15]) + 25 * (m[21] - m[24]) + c["UAI"],
        40 * (m[13] - m[14]) + 25 * (m[19] - m[22]) + c["LTO"],
        35 * (m[12] - m[11]) + 40 * (m[17] - m[16]) + c["IVR"],
    ]


# A hand-built vector of means for items 1..24.
MEANS = [1.8, 2.1, 2.4, 1.6, 2.0, 1.9, 2.7, 2.3, 3.1, 2.9,
         2.2, 3.4, 2.5, 2.6, 3.3, 2.2, 3.0, 2.0, 1.7, 3.2,
         2.4, 2.1, 3.5, 2.8]


def test_dimensions_and_items():
    s = vsm13_scorer()
    assert s.dimensions == DIMENSIONS == ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")
    assert s.item_numbers == tuple(range(1, 25))
    assert s.constants == {d: 50.0 for d in DIMENSIONS}


def test_all_threes_score_fifty():
    out = vsm13_scorer().score(torch.full((24,), 3.0))
    assert out.tolist() == [50.0] * 6


def test_hand_built_vector():
    m = {i + 1: v for i, v in enumerate(MEANS)}
    expected = hand_scores(m)
    # spot check one formula fully by hand: PDI = 35*(2.7-2.1) + 25*(3.2-3.5) + 50 = 21 - 7.5 + 50
    assert expected[0] == pytest.approx(63.5)
    got = vsm13_scorer().score(torch.tensor(MEANS, dtype=torch.float64))
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(expected)


def test_mas_uses_manual_35_35():
    m = {i: 3.0 for i in range(1, 25)}
    m[8], m[10] = 4.0, 3.0  # second MAS term: 35 * 1
    got = vsm13_scorer().score(torch.tensor([m[i] for i in range(1, 25)]))
    assert got[2].item() == pytest.approx(85.0)


def test_batching_shapes():
    s = vsm13_scorer()
    P = 7
    x = torch.rand(P, 24) * 4 + 1
    out = s.score(x)
    assert out.shape == (P, 6)
    for p in range(P):
        assert out[p].tolist() == pytest.approx(s.score(x[p]).tolist(), abs=1e-4)
    assert s.score(torch.rand(2, 3, 24)).shape == (2, 3, 6)


def test_constants_override():
    s = vsm13_scorer({"PDI": 0.0})
    base = vsm13_scorer()
    assert base.constants["PDI"] == 50.0  # original untouched
    s2 = base.with_constants(IDV=10, IVR=-5)
    x = torch.full((24,), 3.0)
    assert s.score(x).tolist() == [0.0, 50, 50, 50, 50, 50]
    assert s2.score(x).tolist() == [50, 10, 50, 50, 50, -5]
    assert s2.describe()["constants"]["IDV"] == 10.0
    with pytest.raises(ScorerError, match="XYZ"):
        base.with_constants(XYZ=1)
    with pytest.raises(ScorerError, match="constant for PDI is True; it must be a number"):
        base.with_constants(PDI=True)


def test_fit_constants_anchors_reference():
    s = vsm13_scorer()
    means = torch.tensor(MEANS)
    target = torch.tensor([40.0, 91, 62, 46, 26, 68])
    anchored = s.fit_constants(means, target)
    assert anchored.score(means.double()).tolist() == pytest.approx(target.tolist())


def test_wrong_width_is_clear_error():
    with pytest.raises(ScorerError, match="last dimension 24"):
        vsm13_scorer().score(torch.ones(5, 23))


def test_describe_records_formulas_and_constants():
    d = vsm13_scorer().describe()
    assert d["formulas"]["PDI"] == "PDI = 35*m07 - 35*m02 + 25*m20 - 25*m23 + 50"
    assert d["terms"]["MAS"] == [[35.0, 5], [-35.0, 3], [35.0, 8], [-35.0, 10]]
    assert d["constants"] == {k: 50.0 for k in DIMENSIONS}


def test_builtin_scorer_is_the_instruments():
    assert load_vsm13().scorer == vsm13_scorer()


def test_linear_scorer_validation():
    with pytest.raises(ScorerError, match="item 9"):
        LinearScorer("x", ("A",), {"A": [(1.0, 9)]}, {"A": 0.0}, (1, 2))
    with pytest.raises(ScorerError, match="no formula"):
        LinearScorer("x", ("A", "B"), {"A": [(1.0, 1)]}, {"A": 0.0, "B": 0.0}, (1, 2))
    s = LinearScorer("x", ("A", "B"), {"A": [(2.0, 1), (1.0, 1)], "B": [(-1.0, 2)]}, {"A": 1.0, "B": 0.0}, (1, 2))
    assert s.score(torch.tensor([[1.0, 2.0]])).tolist() == [[4.0, -2.0]]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(1, 5), min_size=24, max_size=24))
def test_matches_hand_formulas_property(values):
    m = {i + 1: v for i, v in enumerate(values)}
    got = vsm13_scorer().score(torch.tensor(values, dtype=torch.float64)).tolist()
    assert got == pytest.approx(hand_scores(m), abs=1e-9)
