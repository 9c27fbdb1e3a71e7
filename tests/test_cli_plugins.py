"""What plugins add to the command line: commands that cannot replace others, listings that
survive one broken plugin, and plugin objects that meet only the documented contract."""

from __future__ import annotations

import json

import click
import pytest

import promptopt
from promptopt import cli
from promptopt.host import PluginHost

from conftest import invoke


@pytest.fixture
def with_plugins(monkeypatch):
    """The CLI on a host of these in-process plugins; the root group's commands restored after."""
    def use(*plugins):
        monkeypatch.setattr(cli, "_host", PluginHost(load_entrypoints=False, extra_plugins=plugins))
        monkeypatch.setattr(cli.cli, "commands", dict(cli.cli.commands))
        monkeypatch.setattr(cli.cli, "_plugin_commands_added", False, raising=False)
        return cli._host
    return use


def _commands(plugin_name: str, *names: str):
    def hello():
        click.echo(f"hello from {plugin_name}")

    class Commands:
        @promptopt.hookimpl
        def promptopt_register_commands(self, cli):
            for name in names:
                if name == "decorated":
                    cli.command("decorated")(hello)
                else:
                    cli.add_command(click.command(name)(hello))

    Commands.__name__ = plugin_name
    return Commands()


def test_a_plugin_command_cannot_replace_a_built_in_or_another_plugins(with_plugins, caplog):
    host = with_plugins(_commands("first", "hello", "decorated"), _commands("second", "run", "hello", "own"))
    code, out, err = invoke(["hello"])
    assert (code, out) == (0, "hello from first\n")
    code, out, _ = invoke(["decorated"])
    assert (code, out) == (0, "hello from first\n")
    # "second" clashed on its first name, so its hook stopped there: reported once, nothing replaced
    assert 'Error in plugin "second", hook promptopt_register_commands' in caplog.text
    assert 'command "run" is already registered by promptopt (built in)' in caplog.text
    assert "own" not in cli.cli.commands
    code, _, err = invoke(["run", "--model", "tiny", "--popsize", "4", "--generations", "1", "--bogus"])
    assert code == 2 and "No such option" in err and "--bogus" in err   # the built-in run, not a stand-in
    assert host.info["first"].registered == {"commands": ["hello", "decorated"]}


def test_a_clash_between_two_plugins_names_the_first(with_plugins, caplog):
    with_plugins(_commands("first", "hello"), _commands("second", "hello"))
    invoke(["hello"])
    assert 'command "hello" is already registered by plugin "first"' in caplog.text


def test_plugins_lists_the_commands_a_plugin_added(with_plugins):
    with_plugins(_commands("first", "hello"))
    code, out, _ = invoke(["plugins"])
    assert code == 0
    assert "first ((in-process))\n  commands: hello\n" in out
    code, out, _ = invoke(["plugins", "--json"])
    assert {p["name"]: p for p in json.loads(out)["plugins"]}["first"]["registered"] == {"commands": ["hello"]}


class BrokenTable:
    @promptopt.hookimpl
    def promptopt_register_targets(self, register):
        def broken():
            raise RuntimeError("table file missing")
        register("broken", broken)


def test_list_targets_shows_a_broken_table_on_its_row_and_lists_the_rest(with_plugins):
    with_plugins(BrokenTable())
    code, out, _ = invoke(["list", "targets"])
    assert code == 0
    broken = out.index("broken ")
    assert 'cannot list it: target table "broken" (plugin "BrokenTable") failed: RuntimeError: table file missing' \
        in out[broken:]
    assert "United States" in out   # the built-in table is still listed


class PlainScorer:
    @promptopt.hookimpl
    def promptopt_register_scorers(self, register):
        def plain(constants=None):
            from promptopt.host import PluginHost

            real = PluginHost(load_entrypoints=False).create_scorer(PluginHost(load_entrypoints=False)
                                                                   .create_instrument("vsm13"))

            class Plain:  # only what docs/plugins.md asks of a scorer: no `name`
                dimensions = real.dimensions

                def score(self, means):
                    return real.score(means)

                def describe(self):
                    return {"formulas": "VSM13's"}

            return Plain()
        register("plain", plain)


def test_validate_accepts_a_scorer_that_meets_only_the_documented_contract(with_plugins, tmp_path):
    with_plugins(PlainScorer())
    config = tmp_path / "run.toml"
    config.write_text('scorer = "plain"\nmodel = "tiny"\n')
    code, out, err = invoke(["validate", str(config)])
    assert code == 0, err
    assert "scorer Plain," in out
