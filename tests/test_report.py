"""`promptopt.report`: PNG (size, validity) and Markdown table (numbers = summary.json) from a real tiny run."""

from __future__ import annotations

import json
import struct

import pytest

from conftest import finished_tiny_run

DIMS = ["PDI", "IDV", "MAS", "UAI", "LTO", "IVR"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return finished_tiny_run(tmp_path_factory.mktemp("report") / "run", popsize=6, generations=3)


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the PNG signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def table(md: str) -> dict[str, dict[str, str]]:
    """The first Markdown table: row label -> {column: cell}."""
    rows = [line for line in md.splitlines() if line.startswith("| dimension")]
    assert rows, md
    lines = md.splitlines()
    start = lines.index(rows[0])
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    parsed = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        parsed[cells[0]] = dict(zip(header[1:], cells[1:]))
    return parsed


def test_report_png_and_markdown_match_the_run(run_dir):
    from matplotlib import image

    from promptopt.report import make_report

    png, md = make_report(run_dir)
    assert png == run_dir / "report.png" and md == run_dir / "report.md"
    assert png_size(png) == (1200, 500)
    pixels = image.imread(png)  # decodes the whole file: a truncated PNG fails here
    assert pixels.shape[:2] == (500, 1200) and pixels.std() > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    text = md.read_text()
    rows = table(text)
    assert list(rows) == DIMS + ["L1"]
    columns = {"target": summary["target"]["scores"], "naive": summary["naive_dimensions"],
               "aligned": summary["dimensions"]}
    losses = {"naive": summary["naive_loss"], "aligned": summary["loss"]}
    if summary.get("icl_dimensions"):  # the ICL baseline is scored unless the run said --no-icl
        columns["ICL"], losses["ICL"] = summary["icl_dimensions"], summary["icl_loss"]
    assert set(rows["PDI"]) == set(columns)
    for name, scores in columns.items():
        assert [float(rows[dim][name]) for dim in DIMS] == [scores[dim] for dim in DIMS], name
    for name, loss in losses.items():
        assert float(rows["L1"][name]) == pytest.approx(loss, abs=5e-4), name
    assert "L1 = mean absolute difference over the six dimensions" in text
    assert not list(run_dir.glob(".report*")), "temp files left behind"


def _copy_run(run_dir, dest, **changes):
    summary = {**json.loads((run_dir / "summary.json").read_text()), **changes}
    dest.mkdir()
    (dest / "summary.json").write_text(json.dumps(summary))
    (dest / "history.csv").write_text((run_dir / "history.csv").read_text())
    return dest, summary


def test_report_without_icl_has_no_icl_column(run_dir, tmp_path):
    from promptopt.report import make_report

    run, _ = _copy_run(run_dir, tmp_path / "no-icl", icl_dimensions=None, icl_loss=None)
    png, md = make_report(run)
    assert png_size(png) == (1200, 500)
    rows = table(md.read_text())
    assert set(rows["PDI"]) == {"target", "naive", "aligned"}


def test_report_computes_a_missing_icl_loss_and_writes_elsewhere(run_dir, tmp_path):
    from promptopt.report import make_report

    icl = {d: 10.0 * (i + 1) for i, d in enumerate(DIMS)}
    run, summary = _copy_run(run_dir, tmp_path / "icl", icl_dimensions=icl, icl_loss=None)
    out = tmp_path / "elsewhere"
    png, md = make_report(run, out=out)
    assert png.parent == out and md.parent == out and png_size(png) == (1200, 500)
    assert not (run / "report.png").exists()
    rows = table(md.read_text())
    assert [float(rows[d]["ICL"]) for d in DIMS] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    expected = sum(abs(icl[d] - summary["target"]["scores"][d]) for d in DIMS) / 6
    assert float(rows["L1"]["ICL"]) == pytest.approx(expected, abs=5e-4)


def test_report_of_an_unfinished_run_is_a_clear_error(tmp_path):
    from promptopt.errors import CheckpointError
    from promptopt.report import make_report

    with pytest.raises(CheckpointError, match="summary.json"):
        make_report(tmp_path)


def test_report_md_restates_the_runs_constants_soft_prompt_and_software(run_dir):
    from promptopt.report import make_report

    _, md = make_report(run_dir)
    text = md.read_text()
    config = json.loads((run_dir / "config.json").read_text())
    assert "| scorer constants C | 50 (every dimension) |" in text
    assert f"| soft prompt | position {config['config']['position']}, {config['config']['tokens']} token(s)" in text
    assert f"torch {config['versions']['torch']}" in text and "| budget | 18 evaluations, popsize 6 |" in text
    settings = config["config"]
    assert (f"| answers | min_mass {settings['min_mass']:g}, max_entropy none, shift_weight none, counterbalance "
            "off, respondents 0 |") in text   # as the flags spell them, not Python's None/False


def test_report_md_carries_the_closing_tables_warning_and_survives_a_broken_config(run_dir, tmp_path):
    from promptopt.report import make_report

    run, _ = _copy_run(run_dir, tmp_path / "under-floor", option_mass=0.05, min_mass=0.1)
    (run / "config.json").write_text("{not json")
    text = make_report(run)[1].read_text()
    assert "**Warning:** the aligned prompt leaves 5.0% of the next token on the answers, under this run's --min-mass 0.1" in text
    assert "scorer constants" not in text   # no provenance rows from a config.json that cannot be read
