"""RunConfig: flags over file, unknown keys and wrong types rejected by name, budget arithmetic."""

from __future__ import annotations

import pytest

from promptopt.config import RunConfig, build_config
from promptopt.errors import UsageError


def write(tmp_path, text: str):
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def test_flags_override_the_file_and_the_file_overrides_defaults(tmp_path):
    path = write(tmp_path, 'country = "CN"\npopsize = 8\n[constants]\nPDI = 40\n')
    config = build_config(path, popsize=12, country=None)
    assert (config.country, config.popsize, config.constants) == ("CN", 12, {"PDI": 40})
    assert config.optimizer == RunConfig().optimizer


def test_a_run_table_is_accepted(tmp_path):
    assert build_config(write(tmp_path, '[run]\noptimizer = "cma"\n')).optimizer == "cma"


@pytest.mark.parametrize("text, needle", [
    ("popsiz = 8", "unknown key 'popsiz' in .*; did you mean 'popsize'\\? allowed keys: "),
    ("icl = false", "unknown key 'icl' in .*; the key is icl_baseline \\(true or false\\); allowed keys: "),
    ("quiet = true", "unknown key 'quiet' in .*; --quiet is a command-line flag only; allowed keys: "),
    ('popsize = "8"', "config key 'popsize' must be int, got str"),
    ("seed = true", "config key 'seed' must be int"),
    ("country = 3", "config key 'country' must be str"),
    ("popsize = [", "not valid TOML"),
    ('basis = "pca"', "--basis must be one of gaussian, tokens"),
    ("min_mass = 1.5", "--min-mass must be a share of probability in \\[0, 1\\)"),
    ("min_mass = -0.1", "--min-mass must be a share of probability in \\[0, 1\\)"),
    ("max_entropy = 0", "--max-entropy must be in \\(0, 1\\]"),
    ("max_entropy = 1.2", "--max-entropy must be in \\(0, 1\\]"),
    ("shift_weight = -1", "--shift-weight must be >= 0"),
    ("[constants]\nPDI = true", "config key 'constants' must be a table of numbers, got PDI = True"),
    ('[constants]\nIDV = "40"', "config key 'constants' must be a table of numbers, got IDV = '40'"),
])
def test_bad_config_files_name_the_key(tmp_path, text, needle):
    with pytest.raises(UsageError, match=needle):
        build_config(write(tmp_path, text))


def test_missing_config_file():
    with pytest.raises(UsageError, match="does not exist"):
        build_config("/no/such/run.toml")


def test_generations_come_from_the_budget_in_whole_generations():
    assert build_config(None, budget=100, popsize=16).total_generations == 6
    assert build_config(None, generations=3).total_generations == 3
    # neither given: the default budget, whatever the population size
    for popsize in (4, 8, 16, 32):
        assert build_config(None, popsize=popsize).total_generations == RunConfig.DEFAULT_BUDGET // popsize
    with pytest.raises(UsageError, match="not both"):
        build_config(None, generations=3, budget=64)
    with pytest.raises(UsageError, match="--budget must be at least one generation"):
        build_config(None, budget=5, popsize=8)


def test_the_option_mass_floor_is_on_by_default_and_zero_turns_it_off():
    assert build_config(None).min_mass == RunConfig.min_mass == 0.1
    assert build_config(None, min_mass=0).min_mass is None      # one spelling of "no floor" in config.json
    assert build_config(None, min_mass=0.2).min_mass == 0.2


@pytest.mark.parametrize("text, flags, expected", [
    ("generations = 1\n", {"budget": 16}, {"budget": 16, "generations": None}),
    ("budget = 64\n", {"generations": 3}, {"budget": None, "generations": 3}),
    ('init = "screen"\n', {"init_text": "A person from {country}"}, {"init": "random", "init_text": "A person from {country}"}),
    ('init_text = "Hello"\n', {"init": "screen"}, {"init": "screen", "init_text": None}),
    ('executor = "ray"\nactors = 2\nray_address = "auto"\n', {"executor": "local"},
     {"executor": "local", "actors": None, "ray_address": None}),
])
def test_a_flag_replaces_the_files_alternative_to_it_instead_of_clashing_with_it(tmp_path, text, flags, expected):
    config = build_config(write(tmp_path, text), **flags)
    assert {k: getattr(config, k) for k in expected} == expected


def test_an_executor_flag_for_ray_keeps_the_files_ray_settings(tmp_path):
    from promptopt.config import replaced

    file = {"actors": 4, "ray_address": "auto", "popsize": 16}
    assert replaced(file, {"executor": "ray"}) == file
    assert replaced(file, {"executor": "local"}) == {"popsize": 16}


def test_a_relative_instrument_path_in_a_config_is_read_from_the_files_folder(tmp_path, monkeypatch):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "survey.toml").write_text("")
    config = folder / "run.toml"
    config.write_text('instrument = "survey.toml"\nmodel = "smollm2"\n')
    monkeypatch.chdir(tmp_path)   # run from elsewhere: the path still means the file beside the config
    built = build_config(config)
    assert built.instrument == str((folder / "survey.toml").resolve())
    assert built.model == "smollm2"   # a registered name, not a file there, is left as it is


def test_a_relative_out_in_a_config_stays_relative_to_the_working_directory(tmp_path, monkeypatch):
    """Output goes where the user runs from, as a flag's would; only inputs are read beside the file."""
    folder = tmp_path / "study"
    folder.mkdir()
    config = folder / "run.toml"
    config.write_text('out = "runs/us"\n')
    monkeypatch.chdir(tmp_path)
    assert build_config(config).out == "runs/us"
