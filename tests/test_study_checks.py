"""benchmarks/study_checks.py: issue 8's lines decided from a study summary's numbers."""

from __future__ import annotations

from conftest import load_benchmark

checks = load_benchmark("study_checks")
COUNTRIES = ("SA", "US", "CN", "IN", "DE")


def _table(de=5.0, naive=20.0, icl=21.0, alt=10.0, alt_naive=15.0, others=None):
    """A summary table where every country has the same numbers; ``others``: optimizer -> loss."""
    others = {"random": 15.0, "cma": 8.0, "ng:TwoPointsDE": 9.0, **(others or {})}
    return {c: {"naive": (naive, {}), "icl": (icl, {}), "alt_naive": alt_naive,
                "optimizers": {"de": {"loss": de, "alt_loss": alt}, **{o: {"loss": v} for o, v in others.items()}}}
            for c in COUNTRIES}


def _by_claim(table):
    return [c.passed for c in checks.checks(table)]


def test_a_study_that_meets_every_line_passes_every_check():
    assert _by_claim(_table()) == [True] * 6


def test_the_reduction_line_fails_when_one_reference_country_misses_half_and_names_it():
    table = _table()
    table["US"]["optimizers"]["de"]["loss"] = 10.1    # -49.5%: short of -50%
    found = checks.reduction_check(table)
    assert found.passed is False and "US -49.5%" in found.detail and found.detail.endswith("(fails: US)")
    table["US"]["optimizers"]["de"]["loss"] = 10.0    # exactly -50% meets "at least 50%"
    assert checks.reduction_check(table).passed is True


def test_the_icl_line_fails_when_de_ties_icl_in_one_country():
    table = _table()
    table["IN"]["icl"] = (5.0, {})
    assert checks.icl_check(table).passed is False


def test_de_must_beat_random_strictly_but_may_tie_its_rivals():
    assert [c.passed for c in checks.optimizer_checks(_table(others={"random": 5.0, "cma": 5.0}))] == \
        [False, True, True]
    assert checks.optimizer_checks(_table(others={"cma": 4.9}))[1].passed is False


def test_the_held_out_line_fails_for_any_country_at_or_above_its_naive_loss_and_counts_the_rest():
    table = _table()
    table["DE"]["optimizers"]["de"]["alt_loss"] = 15.0   # equal to naive is not below it
    found = checks.held_out_check(table)
    assert found.passed is False and found.detail.startswith("4 of 5") and "DE 15.00 vs 15.00" in found.detail


def test_lines_without_cells_are_not_run_rather_than_passed():
    table = _table()
    del table["SA"]
    for row in table.values():
        row["optimizers"].pop("cma")
    found = {c.claim: c.passed for c in checks.checks(table)}
    assert [v for k, v in found.items() if "SA" in k] == [None, None]
    assert [v for k, v in found.items() if "cma" in k] == [None]


def test_the_report_marks_failures_in_bold():
    table = _table(alt=20.0)
    text = "\n".join(checks.report(checks.checks(table)))
    assert text.count("| pass |") == 5 and text.count("| **fail** |") == 1


def test_optimizers_are_compared_over_the_countries_both_have_cells_for():
    table = _table(others={"cma": 6.0})
    del table["DE"]["optimizers"]["cma"]
    table["DE"]["optimizers"]["de"]["loss"] = 1.0   # DE only: over all its countries DE's median would tie cma's
    for country in ("SA", "US"):
        table[country]["optimizers"]["de"]["loss"], table[country]["optimizers"]["cma"]["loss"] = 7.0, 4.0
    found = checks.optimizer_checks(table)[1]       # over SA, US, CN, IN: de 6.00 vs cma 5.00
    assert found.passed is False and found.detail.startswith("6.00 vs 5.00")
    assert "over the 4 countries both have: SA, US, CN, IN" in found.detail


def test_an_optimizer_line_counts_the_countries_de_wins_and_tests_them_as_pairs():
    found = checks.optimizer_checks(_table())[0]   # de 5.0 below random 15.0 in all 5 countries
    # every pair favours DE: the exact one-sided signed-rank p is the chance of that under the null, 1/2**5
    assert f"de lower in 5 of 5 countries, Wilcoxon signed-rank p = {1 / 2 ** 5:.3g} (one-sided)" in found.detail
    table = _table()
    for country in ("SA", "US"):
        table[country]["optimizers"]["random"]["loss"] = 1.0   # DE loses two countries: no longer every pair
    p_mixed = float(checks.optimizer_checks(table)[0].detail.split("p = ")[1].split(" ")[0])
    assert "de lower in 3 of 5" in checks.optimizer_checks(table)[0].detail and p_mixed > 1 / 2 ** 5


def test_an_optimizer_line_with_every_country_tied_gives_no_p_value():
    found = checks.optimizer_checks(_table(others={"cma": 5.0}))[1]
    assert found.passed is True and found.detail.endswith("de lower in 0 of 5 countries")
