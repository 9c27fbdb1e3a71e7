"""Target resolution against the bundled Hofstede 2015-08-16 dataset and estimates."""

import math

import pycountry
import pytest
import torch

from promptopt.objectives import (
    DIMENSIONS,
    MissingDimensionsError,
    TargetError,
    UnknownTargetError,
    list_targets,
    load_hofstede_2015,
    resolve_target,
)

US = [40, 91, 62, 46, 26, 68]
CN = [80, 20, 66, 30, 87, 24]
IN = [77, 48, 56, 40, 51, 26]
SA = [72, 48, 43, 64, 27, 14]


@pytest.mark.parametrize(
    "queries,code,expected",
    [
        (["US", "USA", "United States", "united states", "us", "U.S.A.", "United States of America"], "US", US),
        (["CN", "CHN", "China", "china"], "CN", CN),
        (["IN", "IND", "India", "india"], "IN", IN),
    ],
)
def test_resolution(queries, code, expected):
    for q in queries:
        t = resolve_target(q)
        assert t.code == code, q
        assert [t.scores[d] for d in DIMENSIONS] == expected, q
        assert "2015-08-16" in t.source


def test_saudi_arabia_estimate():
    for q in ["SA", "SAU", "Saudi Arabia", "saudi arabia", "sa"]:
        t = resolve_target(q)
        assert t.code == "SA" and t.name == "Saudi Arabia"
        assert t.scores_tensor().tolist() == SA
        assert "Hofstede Insights" in t.source and "estimate" in t.source
        assert "LTO 36" in t.source and "IVR 52" in t.source
    with pytest.raises(MissingDimensionsError, match="PDI, IDV, MAS, UAI"):
        resolve_target("SA", prefer_estimate=False)


def test_regions_by_name():
    arab = resolve_target("Arab countries")
    assert arab.kind == "region"
    assert [arab.scores[d] for d in ("PDI", "IDV", "MAS", "UAI")] == [80, 38, 53, 68]
    assert resolve_target("africa west").scores["PDI"] == 77
    assert resolve_target(arab.code).name == "Arab countries"


def test_non_iso_labels():
    assert resolve_target("Great Britain").code == "GB"
    assert resolve_target("uk").code == "GB"
    assert resolve_target("Korea South").code == "KR"
    assert resolve_target("Czech Rep").code == "CZ"
    assert resolve_target("Turkey").code == "TR"


def test_missing_dimensions_error():
    with pytest.raises(MissingDimensionsError) as ei:
        resolve_target("Albania")
    msg = str(ei.value)
    assert "PDI, IDV, MAS, UAI" in msg and "Albania" in msg
    assert isinstance(ei.value, ValueError)


def test_unknown_with_suggestion():
    with pytest.raises(UnknownTargetError) as ei:
        resolve_target("Untied States")
    msg = str(ei.value)
    assert "United States" in msg and "promptopt list targets" in msg
    assert isinstance(ei.value, KeyError) and isinstance(ei.value, ValueError)
    assert not msg.startswith("'")  # one clean line, not KeyError's repr
    with pytest.raises(UnknownTargetError, match="promptopt list targets"):
        resolve_target("Atlantis")
    with pytest.raises(UnknownTargetError, match="not in the Hofstede"):
        resolve_target("Benin")
    with pytest.raises(UnknownTargetError, match="CN or CHN"):
        resolve_target("CHI")  # Hofstede's own code for China


def test_every_csv_row_maps():
    df = load_hofstede_2015()
    assert len(df) == 111
    countries = df[df.kind == "country"]
    for code in countries.code:
        assert pycountry.countries.get(alpha_2=code) is not None
    assert countries.code.is_unique
    regions = set(df[df.kind == "region"].label)
    assert {"Arab countries", "Africa West", "Africa East"} <= regions
    assert len(regions) == 10
    alb = df[df.label == "Albania"].iloc[0]
    assert math.isnan(alb.PDI) and alb.LTO == 61


def test_list_targets():
    ts = list_targets()
    assert all(t.complete for t in ts)
    by_code = {t.code: t for t in ts}
    assert by_code["SA"].scores_tensor().tolist() == SA
    assert "AL" not in by_code
    assert len([t for t in ts if t.code == "SA"]) == 1
    assert {"US", "CN", "IN", "arab-countries"} <= set(by_code)


def test_scores_tensor():
    t = resolve_target("US")
    x = t.scores_tensor(dtype=torch.float64)
    assert x.dtype == torch.float64 and x.tolist() == US
    assert t.scores_tensor(("IVR", "PDI")).tolist() == [68, 40]
    with pytest.raises(TargetError, match="XYZ"):
        t.scores_tensor(("XYZ",))
    assert t.describe()["scores"]["IDV"] == 91
