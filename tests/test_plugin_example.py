"""The example third-party plugin (examples/promptopt-example-plugin), installed as pip would see it.

Installing for real needs a build (seconds to minutes, network for build isolation), so the
test does what an install leaves behind that matters to promptopt: a ``*.dist-info`` folder
with ``METADATA`` and ``entry_points.txt`` (generated from the package's own pyproject.toml)
on sys.path next to the package source. ``importlib.metadata.entry_points`` then finds the
plugin exactly as it finds an installed one, distribution name and version included.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from promptopt.host import PluginHost
from promptopt.testing import OptimizerConformance

from conftest import invoke

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "promptopt-example-plugin"


def _load_example_es():
    """The example's optimizer module, loaded from its file (no sys.path change at import time)."""
    spec = importlib.util.spec_from_file_location("_example_es", EXAMPLE / "src" / "promptopt_example" / "es.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TestExampleOptimizerConformance(OptimizerConformance):
    """The example's (1+lambda)-ES against promptopt.testing (its own tests run the same kit)."""

    optimizer_class = _load_example_es().OnePlusLambdaES
    generations = 4


def fake_install(site: Path) -> dict:
    """Write the dist-info pip would write for the example package; returns its [project] table."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    dist_info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    group = "promptopt"
    lines = [f"[{group}]"] + [f"{k} = {v}" for k, v in project["entry-points"][group].items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return project


@pytest.fixture
def example_installed(tmp_path, monkeypatch):
    project = fake_install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PROMPTOPT_STRICT_PLUGINS", "1")  # the example must load cleanly
    monkeypatch.setattr("promptopt.cli._host", None)     # the CLI caches its host per process
    yield project
    for name in [m for m in sys.modules if m == "promptopt_example" or m.startswith("promptopt_example.")]:
        del sys.modules[name]


def test_example_plugin_is_found_through_its_entry_point(example_installed):
    host = PluginHost()
    info = host.info["example"]
    assert (info.distribution, info.version) == ("promptopt-example-plugin", example_installed["version"])
    assert info.registered == {"instruments": ["workvalues"], "optimizers": ["es"], "targets": ["workvalues"]}
    instrument = host.create_instrument("workvalues")
    assert instrument.n_items == 6 and host.create_scorer(instrument).dimensions == ("AUT", "SEC")
    assert host.target("autonomy", "workvalues").scores == {"AUT": 80.0, "SEC": 30.0}
    assert host.optimizer_class("es").__module__ == "promptopt_example.es"


def test_example_plugin_runs_end_to_end_from_the_cli(example_installed, tmp_path):
    config = tmp_path / "wv.toml"
    config.write_text('instrument = "workvalues"\ntargets = "workvalues"\ncountry = "autonomy"\n')
    out = tmp_path / "run"
    code, stdout, stderr = invoke(["run", "--config", str(config), "--optimizer", "es", "--instrument", "workvalues",
                                   "--model", "tiny", "--popsize", "6", "--generations", "2", "--out", str(out),
                                   "--quiet"])
    assert code == 0, stderr
    assert "Autonomy seeker" in stdout
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["instrument"]["name"] == "workvalues"
    assert resolved["optimizer"]["class"] == "OnePlusLambdaES"
    assert resolved["target"]["code"] == "autonomy"
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["generation"]) for r in rows] == [1, 2]
    assert {"AUT", "SEC"} <= set(rows[0]) and int(rows[-1]["evaluations"]) == 12
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["dimensions"]) == {"AUT", "SEC"}
    assert summary["target"]["scores"] == {"AUT": 80.0, "SEC": 30.0}
    assert summary["loss"] >= 0 and summary["evaluations"] >= 12
    assert summary["loss_definition"] == "L1 = mean absolute difference over the two dimensions"
    assert "over the two dimensions" in stdout and "six" not in stdout
    assert (out / "best" / "soft_prompt.safetensors").is_file()

    code, stdout, _ = invoke(["plugins", "--json"])
    assert code == 0
    example = {p["name"]: p for p in json.loads(stdout)["plugins"]}["example"]
    assert example["version"] == "0.1.0" and example["distribution"] == "promptopt-example-plugin"
    assert "promptopt_register_optimizers" in example["hooks"]


def test_the_icl_persona_describes_only_dimensions_it_knows(example_installed):
    from promptopt.baselines import icl_system_prompt

    host = PluginHost()
    profile = icl_system_prompt(host.target("autonomy", "workvalues"))   # AUT, SEC: not Hofstede's
    assert "Autonomy seeker" in profile and "Hofstede" not in profile and "\n" not in profile
    us = icl_system_prompt(host.target("US"))
    assert us.startswith(profile.replace("Autonomy seeker", "the United States"))
    assert "in Hofstede's terms" in us and len(us.splitlines()) == 7   # the persona, then one line per dimension


def test_unknown_profile_is_a_usage_error(example_installed, tmp_path):
    config = tmp_path / "wv.toml"
    config.write_text('instrument = "workvalues"\ntargets = "workvalues"\ncountry = "nobody"\n')
    code, _, stderr = invoke(["run", "--config", str(config), "--optimizer", "es", "--model", "tiny",
                              "--popsize", "6", "--generations", "1", "--out", str(tmp_path / "r"), "--quiet"])
    assert code == 2 and "unknown work-values profile 'nobody'" in stderr


def test_python_api_example_runs_in_seconds():
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "best L1 loss" in proc.stdout
    assert time.perf_counter() - started < 60  # ~15 s on an idle 2-core machine
