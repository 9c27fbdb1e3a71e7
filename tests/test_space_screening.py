"""benchmarks/space_screening.py on the tiny model: start losses, the row filter, the rank correlation."""

from __future__ import annotations

import json

import pytest

from conftest import load_benchmark
from promptopt.config import RunConfig
from promptopt.host import PluginHost

screening = load_benchmark("space_screening")


def _row(country, seed, loss, **settings):
    base = {"position": RunConfig.position, "tokens": RunConfig.tokens, "subspace": 64, "radius": 1.0}
    return {"variant": "v", "options": {"model": "tiny"}, "country": country, "seed": seed, "loss": loss,
            "naive_loss": 100.0, "settings": {**base, **settings}}


def test_spaces_whose_de_results_follow_their_start_loss_correlate_perfectly(tmp_path, capsys):
    host = PluginHost(load_entrypoints=False)
    starts = {s: screening.start_losses(host, "tiny", "US", s, samples=3) for s in range(4)}
    assert starts[0] == screening.start_losses(host, "tiny", "US", 0, samples=3)  # seeded: same space, same draws
    assert len({round(v["x0"], 6) for v in starts.values()}) == 4, "each seed should give its own space"
    # final results exactly ordered like x0's loss, plus a row in another space that must be ignored
    rows = [_row("US", s, v["x0"]) for s, v in starts.items()] + [_row("US", 0, 1e6, tokens=RunConfig.tokens + 3)]
    path = tmp_path / "tuning.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert screening.main(["--rows", str(path), "--model", "tiny", "--countries", "US", "--seeds", "0", "1", "2", "3",
                           "--samples", "3"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| US"))
    cells = [c.strip() for c in line.split("|")[1:-1]]
    assert cells[:3] == ["US", "4", "4"] and cells[4] == "0" and cells[5] == "+1.00"  # one run per seed: no within


def test_missing_rows_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        screening.main(["--rows", str(tmp_path / "none.jsonl"), "--model", "tiny"])
    assert exit_info.value.code == 2 and "tuning.jsonl" in capsys.readouterr().err
