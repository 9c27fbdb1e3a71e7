"""benchmarks/frontier.py: which tuning runs meet issue 8's line 1 and its held-out line, per country."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark

frontier = load_benchmark("frontier")


def row(country, loss, alt_loss, position="reply", naive=20.0, alt_naive=10.0):
    """A tuning row as tune_alignment.py --alternate writes it (only the fields the frontier reads)."""
    return {"variant": "v", "country": country, "seed": 0, "budget": 480, "settings": {"position": position},
            "loss": loss, "naive_loss": naive, "alt_loss": alt_loss, "alt_naive_loss": alt_naive}


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_summary_counts_runs_meeting_both_lines_and_the_best_of_each_line_given_the_other(tmp_path):
    rows = [row("US", 8.0, 12.0),                      # -60% main, +20% alternate: line 1 only
            row("US", 15.0, 9.0, position="answer"),   # -25%, -10%: held-out only
            row("US", 10.0, 9.5),                      # -50% exactly, -5%: both
            row("CN", 4.0, 5.0), {**row("CN", 1.0, 1.0), "alt_loss": None}]  # the second has no held-out score
    table = frontier.summary(frontier.runs([write(tmp_path / "t.jsonl", rows)]))
    assert table.loc["US"].tolist() == [3, 1, "-5%", "-50%"]
    assert table.loc["CN"].tolist() == [1, 1, "-50%", "-80%"]
    assert list(table.index) == ["US", "CN"]  # most runs first


def test_a_country_with_no_run_on_one_side_of_a_line_shows_a_dash(tmp_path):
    table = frontier.summary(frontier.runs([write(tmp_path / "t.jsonl", [row("MX", 18.0, 12.0)])]))
    assert table.loc["MX"].tolist() == [1, 0, "\u2013", "\u2013"]


def test_main_prints_the_table_and_writes_the_figure_without_temp_files(tmp_path, capsys):
    rows = write(tmp_path / "t.jsonl", [row("US", 8.0, 12.0), row("SA", 9.0, 8.0, position="answer")])
    png = tmp_path / "img" / "frontier.png"
    png.parent.mkdir()
    assert frontier.main([str(rows), "--png", str(png)]) == 0
    assert "| US | 1 | 0 | +20% | \u2013 |" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["frontier.png"]


def test_rows_without_held_out_scores_are_an_error(tmp_path):
    path = write(tmp_path / "t.jsonl", [{**row("US", 8.0, 1.0), "alt_loss": None}])
    with pytest.raises(SystemExit, match="no run with a held-out score"):
        frontier.main([str(path)])


def test_a_missing_file_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        frontier.main([str(tmp_path / "absent.jsonl")])
    assert exit_.value.code == 2 and "no such tuning file" in capsys.readouterr().err
