"""The README's "From Python" snippet runs as written: the documented whole-run API exists."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promptopt

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_python_snippet_runs_and_resumes_a_run(tmp_path, monkeypatch, capsys):
    section = README.read_text().split("## From Python", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    summary = json.loads((tmp_path / "runs" / "sa-de" / "summary.json").read_text())
    assert summary["evaluations"] == 32 and summary["target"]["code"] == "SA"
    (printed,) = [line.split() for line in capsys.readouterr().out.splitlines() if " -> " in line]
    assert float(printed[0]) > 0 and float(printed[2]) > 0 and printed[3] == "budget"


def test_the_whole_run_api_is_importable_from_the_package_without_loading_torch_first():
    import subprocess
    import sys

    probe = "import sys, promptopt; light = 'torch' not in sys.modules; promptopt.run; print(light, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True"]
    assert set(promptopt.__all__) >= {"run", "resume", "build_config", "RunConfig", "PluginHost", "hookimpl"}
