"""benchmarks/dimension_shifts.py: per-dimension shifts of aligned prompts on the two wordings, from study cells."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark

dimension_shifts = load_benchmark("dimension_shifts")


def cell(country, seed, optimizer, main, alternate, alt_below=True):
    """A study cell whose prompt shifts (PDI, LTO) by `main` / `alternate`; targets 50, naive 40 / 60."""
    dims = ("PDI", "LTO")
    return {"country": country, "seed": seed, "optimizer": optimizer,
            "target": {"scores": {d: 50.0 for d in dims}},
            "naive_dimensions": {d: 40.0 for d in dims},
            "dimensions": {d: 40.0 + s for d, s in zip(dims, main)},
            "alt_naive_dimensions": {d: 60.0 for d in dims},
            "alt_dimensions": {d: 60.0 + s for d, s in zip(dims, alternate)},
            "alt_naive_loss": 10.0, "alt_loss": 9.0 if alt_below else 11.0}


def test_shifts_are_aligned_minus_bare_on_each_wording_for_the_chosen_optimizer_only():
    cells = [cell("US", 0, "de", (2, 4), (1, 8)), cell("US", 0, "cma", (9, 9), (9, 9))]
    frame = dimension_shifts.shifts(cells, "de")
    assert frame[["dimension", "main", "alternate", "alt_naive_error"]].values.tolist() == [
        ["PDI", 2.0, 1.0, 10.0], ["LTO", 4.0, 8.0, 10.0]]


def test_report_gives_means_sign_counts_correlation_and_runs_below_naive(tmp_path, capsys):
    cells = [cell("US", 0, "de", (2, 1), (1, 3)), cell("US", 1, "de", (4, 3), (3, -1), alt_below=False),
             cell("CN", 0, "de", (6, 5), (5, 2))]
    path = tmp_path / "cells.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in cells))
    assert dimension_shifts.main([str(path)]) == 0
    out = capsys.readouterr().out
    # PDI: main 2, 4, 6 (mean 4), alternate 1, 3, 5 (mean 3, all > 0, r = 1)
    assert "| PDI | 4.0 | 3.0 | 3/3 | 1.0 |" in out
    # LTO: main 1, 3, 5; alternate 3, -1, 2 (mean 1.33, 2 of 3 > 0, r = -2 / sqrt(8 x 8.67) = -0.24)
    assert "| LTO | 3.0 | 1.33 | 2/3 | -0.24 |" in out
    assert "| US | 10.0 | 10.0 | 1/2 |" in out and "| CN | 10.0 | 10.0 | 1/1 |" in out


def test_cells_without_held_out_scores_are_an_error(tmp_path):
    path = tmp_path / "cells.jsonl"
    path.write_text(json.dumps(cell("US", 0, "cma", (1, 1), (1, 1))) + "\n")
    with pytest.raises(SystemExit, match="no de cells with held-out scores"):
        dimension_shifts.main([str(path)])


def test_report_gives_the_alternate_loss_a_fully_carried_over_halving_shift_would_leave(tmp_path, capsys):
    # target 50, bare 40 on the main wording (error -10) and 60 on the alternate (+10): a shift of +5
    # halves the main error and, carried over, leaves the alternate 15 off, above its naive 10
    path = tmp_path / "cells.jsonl"
    path.write_text(json.dumps(cell("US", 0, "de", (2, 4), (1, 8))) + "\n")
    dimension_shifts.main([str(path)])
    assert "| US | 10.0 | 10.0 | 1/1 | 10.0 | 15.0 |" in capsys.readouterr().out
