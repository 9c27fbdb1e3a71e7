"""The plugin host: built-ins through the same hooks, entry points, failure isolation, lookups."""

from __future__ import annotations

import importlib
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

import promptopt
import promptopt.objectives
from promptopt.errors import PluginError, UsageError
from promptopt.host import PluginHost
from promptopt.optimizers import RandomSearch


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path where a test writes plugin modules; entry points are faked to point there."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fakeplugin")]:
        del sys.modules[name]


def with_entry_points(monkeypatch, *eps: tuple[str, str]) -> None:
    points = [EntryPoint(name, value, "promptopt") for name, value in eps]
    monkeypatch.setattr("promptopt.host.entry_points", lambda group: points if group == "promptopt" else [])


GOOD = textwrap.dedent('''
    import promptopt
    from promptopt.optimizers import RandomSearch

    class Walk(RandomSearch):
        """A random walk, registered by a third party."""
        name = "walk"

    @promptopt.hookimpl
    def promptopt_register_optimizers(register):
        register("walk", Walk)
''')


def test_builtins_are_registered_through_the_hooks_with_their_plugin_names():
    host = PluginHost(load_entrypoints=False)
    assert host.entry("optimizers", "de").plugin == "promptopt.plugins.optimizers"
    assert host.entry("models", "tiny").plugin == "promptopt.plugins.models"
    assert host.entry("instruments", "vsm13").plugin == "promptopt.plugins.instruments"
    assert host.entry("targets", "hofstede").plugin == "promptopt.plugins.targets"
    assert host.optimizer_class("ng:TwoPointsDE").__name__
    assert host.failures == []


def test_entry_point_plugin_module_is_loaded_after_builtins(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_good.py").write_text(GOOD)
    with_entry_points(monkeypatch, ("good", "fakeplugin_good"))
    host = PluginHost()
    assert host.entry("optimizers", "walk").plugin == "good"
    assert host.optimizer_class("walk").__name__ == "Walk"
    assert list(host.info)[-1] == "good"


def test_entry_point_naming_a_class_works(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_cls.py").write_text(textwrap.dedent('''
        import promptopt
        from promptopt.optimizers import RandomSearch

        class Plugin:
            @promptopt.hookimpl
            def promptopt_register_optimizers(self, register):
                register("walk2", RandomSearch)
    '''))
    with_entry_points(monkeypatch, ("cls", "fakeplugin_cls:Plugin"))
    assert PluginHost().entry("optimizers", "walk2").plugin == "cls"


@pytest.mark.parametrize("source, stage, needle", [
    ("raise ImportError('needs a package that is not installed')", "importing", "needs a package that is not installed"),
    ("import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimisers(register):\n    pass\n",
     "registering", "promptopt_register_optimisers is not a promptopt hook; did you mean promptopt_register_optimizers?"),
    ("import promptopt\nfrom promptopt.optimizers import RandomSearch\n@promptopt.hookimpl\n"
     "def promptopt_register_optimizers(register):\n    register('de', RandomSearch)\n", "registering",
     'optimizer "de" registered twice: by plugin "promptopt.plugins.optimizers" and by plugin "broken"'),
    ("import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimizers(register):\n"
     "    register('notanoptimizer', dict)\n", "registering", "must be a subclass of promptopt.optimizers.Optimizer"),
    ("import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimizers(reg):\n    pass\n", "registering",
     "promptopt_register_optimizers takes (register), not argument 'reg'; rename it to 'register'"),
    ("import promptopt\nfrom promptopt.optimizers import RandomSearch\n@promptopt.hookimpl\n"
     "def promptopt_register_optimizers(register):\n    register('x', RandomSearch, 'a walk', 'extra')\n", "registering",
     "TypeError: register() takes from 2 to 3 positional arguments but 4 were given"),
])
def test_broken_plugin_is_reported_by_name_and_skipped_while_builtins_keep_working(
        plugin_dir, monkeypatch, source, stage, needle):
    (plugin_dir / "fakeplugin_broken.py").write_text(source)
    (plugin_dir / "fakeplugin_fine.py").write_text(GOOD)
    with_entry_points(monkeypatch, ("broken", "fakeplugin_broken"), ("fine", "fakeplugin_fine"))
    host = PluginHost(strict=False)
    assert len(host.failures) == 1
    message = host.failures[0].message()
    assert message.startswith(f'Error {stage} plugin "broken"') and needle in message
    assert host.entry("optimizers", "de").plugin == "promptopt.plugins.optimizers"
    assert host.entry("optimizers", "walk").plugin == "fine"
    assert "broken" not in host.info

    with pytest.raises(PluginError, match="broken"):
        PluginHost(strict=True)


def test_strict_switch_comes_from_the_environment(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_broken.py").write_text("raise RuntimeError('boom')")
    with_entry_points(monkeypatch, ("broken", "fakeplugin_broken"))
    monkeypatch.setenv("PROMPTOPT_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match='"broken".*boom'):
        PluginHost()


def test_allowlist_and_blocklist(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_good.py").write_text(GOOD)
    with_entry_points(monkeypatch, ("good", "fakeplugin_good"))
    monkeypatch.setenv("PROMPTOPT_DISABLE_PLUGINS", "good")
    assert "good" not in PluginHost().info
    monkeypatch.delenv("PROMPTOPT_DISABLE_PLUGINS")
    monkeypatch.setenv("PROMPTOPT_LOAD_PLUGINS", "other")
    assert "good" not in PluginHost().info
    monkeypatch.setenv("PROMPTOPT_LOAD_PLUGINS", "good")
    assert "good" in PluginHost().info


def test_in_process_plugin_registers_with_its_description():
    class Plugin:
        @promptopt.hookimpl
        def promptopt_register_optimizers(self, register):
            register("rec", RandomSearch, description="recording")

    rec = Plugin()
    host = PluginHost(load_entrypoints=False, extra_plugins=(rec,))
    assert host.entry("optimizers", "rec").description == "recording"


def test_unknown_name_lists_the_registered_ones():
    host = PluginHost(load_entrypoints=False)
    with pytest.raises(UsageError, match=r"unknown optimizer 'rnd'.*registered: cma, de, ng:\*, random"):
        host.entry("optimizers", "rnd")


# -- validation: the same checks for built-ins and third-party plugins -----------------------

def _plugin(hook: str, *registrations):
    """An in-process plugin whose registration hook registers (name, factory) pairs."""
    def impl(self, register):
        for name, factory in registrations:
            register(name, factory)

    impl.__name__ = hook
    return type("Plugin", (), {hook: promptopt.hookimpl(impl)})()


def test_builtins_pass_through_the_same_validators(monkeypatch):
    import promptopt.validation as validation

    seen = []
    for kind, check in list(validation.VALIDATORS.items()):
        monkeypatch.setitem(validation.VALIDATORS, kind,
                            lambda name, factory, kind=kind, check=check: (seen.append((kind, name)), check(name, factory)))
    created = []
    real_check = validation.check_instrument
    monkeypatch.setattr(validation, "check_instrument", lambda name, obj: (created.append(name), real_check(name, obj)))
    host = PluginHost(load_entrypoints=False)
    assert {("models", "tiny"), ("models", "smollm2"), ("instruments", "vsm13"), ("scorers", "vsm13"),
            ("optimizers", "de"), ("optimizers", "ng:*"), ("targets", "hofstede")} <= set(seen)
    host.create_instrument("vsm13")
    host.create_instrument("vsm13")
    assert created == ["vsm13"]  # what a factory returns is checked once, on first creation


@pytest.mark.parametrize("hook, name, factory, needle", [
    ("promptopt_register_models", "m", lambda: None, "cannot be called as factory(device=..., dtype=...)"),
    ("promptopt_register_scorers", "s", lambda weights: None, "cannot be called as factory(constants=...)"),
    ("promptopt_register_instruments", "i", lambda path: None, "cannot be called as factory()"),
    ("promptopt_register_targets", "t", lambda table, year: None, "cannot be called as factory()"),
    ("promptopt_register_optimizers", "o", type("Sub", (RandomSearch,), {}), None),
    ("promptopt_register_optimizers", "o2", type("NoTell", (promptopt.optimizers.Optimizer,),
                                                  {"_ask": lambda self: None}), "does not implement _tell"),
    ("promptopt_register_models", "m2", "not callable", "non-callable factory"),
])
def test_registration_is_validated(hook, name, factory, needle):
    host = PluginHost(load_entrypoints=False, strict=False, extra_plugins=(_plugin(hook, (name, factory)),))
    if needle is None:  # a valid registration (a subclass of a built-in optimizer) passes
        assert host.failures == [] and name in host.registries["optimizers"]
        return
    assert len(host.failures) == 1 and needle in host.failures[0].message(), host.failures
    assert name not in host.registries[hook.rpartition("_")[2]]


class _NoResolve:
    def list(self):
        return []


class _JunkTable:
    def resolve(self, query):
        return {"PDI": 1}

    def list(self):
        return []


@pytest.mark.parametrize("hook, name, factory, create, needle", [
    ("promptopt_register_instruments", "i", lambda: {"items": []}, lambda h: h.create_instrument("i"),
     "expected a promptopt.objectives.Instrument"),
    ("promptopt_register_targets", "t", _NoResolve, lambda h: h.target("US", "t"), "expected an object with resolve"),
    ("promptopt_register_targets", "t", _JunkTable, lambda h: h.target("US", "t"), "expected a promptopt.objectives.Target"),
    ("promptopt_register_scorers", "vsm13x", lambda constants: object(),
     lambda h: h.create_scorer(h.create_instrument("vsm13"), "vsm13x"), "expected an object with dimensions"),
    ("promptopt_register_models", "m", lambda device, dtype: object(), lambda h: h.create_model("m"),
     "expected a promptopt.models.CausalLMBackend"),
])
def test_what_a_factory_returns_is_checked_on_first_creation(hook, name, factory, create, needle):
    host = PluginHost(load_entrypoints=False, extra_plugins=(_plugin(hook, (name, factory)),))
    assert host.failures == []  # registration is cheap: nothing is built at start-up
    with pytest.raises(PluginError, match=needle):
        create(host)


def test_instrument_without_scorer_names_the_fix():
    from promptopt.objectives import load_vsm13
    import dataclasses

    bare = dataclasses.replace(load_vsm13(), name="bare", scorer=None)
    host = PluginHost(load_entrypoints=False,
                      extra_plugins=(_plugin("promptopt_register_instruments", ("bare", lambda: bare)),))
    with pytest.raises(UsageError, match="no \\[scorer\\] section and no scorer named 'bare'.*--scorer"):
        host.create_scorer(host.create_instrument("bare"))


def test_the_instruments_own_scorer_answers_to_the_name_validate_shows(tmp_path):
    host = PluginHost(load_entrypoints=False)
    instrument = host.create_instrument("vsm13")
    assert instrument.scorer.name == "vsm13"  # the name config.json records is one --scorer accepts
    assert host.create_scorer(instrument, "vsm13").dimensions == instrument.scorer.dimensions
    toml = tmp_path / "mine.toml"
    toml.write_text((Path(promptopt.objectives.__file__).parent / "data" / "vsm13.toml").read_text()
                    .replace('[scorer]\nname = "vsm13"', '[scorer]\nname = "mine-formulas"'))
    mine = host.create_instrument(toml)  # a Path works as well as a str
    assert host.create_scorer(mine, "mine-formulas") is mine.scorer
    with pytest.raises(UsageError, match="unknown scorer|no scorer"):
        host.create_scorer(mine, "other-formulas")


# -- pluggy pitfalls, lifecycle isolation, entry-point duplicates ------------------------------

def test_hook_argument_with_a_default_is_rejected(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_default.py").write_text(
        "import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimizers(register=None):\n    pass\n")
    with_entry_points(monkeypatch, ("default", "fakeplugin_default"))
    host = PluginHost(strict=False)
    assert "'register' has a default value" in host.failures[0].message()


LIFECYCLE = textwrap.dedent('''
    import promptopt
    calls = []

    @promptopt.hookimpl
    def promptopt_run_end(state, summary):
        calls.append(summary)
        raise RuntimeError("tracker offline")
''')


def test_a_failing_lifecycle_hook_does_not_stop_the_run(plugin_dir, monkeypatch, caplog):
    from types import SimpleNamespace

    state = SimpleNamespace(run_dir=plugin_dir)  # the built-in event log writes events.jsonl there
    (plugin_dir / "fakeplugin_tracker.py").write_text(LIFECYCLE)
    with_entry_points(monkeypatch, ("tracker", "fakeplugin_tracker"))
    host = PluginHost(strict=False)
    host.pm.hook.promptopt_run_end(state=state, summary={"loss": 1})
    host.pm.hook.promptopt_run_end(state=state, summary={"loss": 2})
    assert sys.modules["fakeplugin_tracker"].calls == [{"loss": 1}, {"loss": 2}]
    assert [e.plugin for e in host.hook_errors] == ["tracker", "tracker"]
    assert 'Error in plugin "tracker", hook promptopt_run_end: RuntimeError: tracker offline' in caplog.text
    assert caplog.text.count("tracker offline") == 1  # reported once, not once per call

    with pytest.raises(PluginError, match="tracker offline"):
        PluginHost(strict=True).pm.hook.promptopt_run_end(state=state, summary={})


def test_same_entry_point_seen_twice_loads_once_and_a_clash_is_reported(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_good.py").write_text(GOOD)
    (plugin_dir / "fakeplugin_cls.py").write_text("")
    with_entry_points(monkeypatch, ("good", "fakeplugin_good"), ("good", "fakeplugin_good"))
    host = PluginHost(strict=False)
    assert host.failures == [] and host.entry("optimizers", "walk").plugin == "good"
    with_entry_points(monkeypatch, ("good", "fakeplugin_good"), ("good", "fakeplugin_cls"))
    host = PluginHost(strict=False)
    assert "entry point name already used" in host.failures[0].message()


def test_unknown_name_mentions_plugins_that_failed_to_load(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_broken.py").write_text("raise ImportError('no module named walkies')")
    with_entry_points(monkeypatch, ("walker", "fakeplugin_broken"))
    host = PluginHost(strict=False)
    with pytest.raises(UsageError, match="unknown optimizer 'walk'.*failed to load: \"walker\".*walkies"):
        host.optimizer_class("walk")


def test_plugins_json_lists_versions_hooks_registrations_and_failures(plugin_dir, monkeypatch):
    import json

    from conftest import invoke

    (plugin_dir / "fakeplugin_good.py").write_text(GOOD)
    (plugin_dir / "fakeplugin_broken.py").write_text("raise ImportError('needs torch-nightly')")
    with_entry_points(monkeypatch, ("good", "fakeplugin_good"), ("broken", "fakeplugin_broken"))
    monkeypatch.setattr("promptopt.cli._host", None)
    code, out, err = invoke(["plugins", "--json"])
    assert code == 0
    data = json.loads(out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["good"]["registered"] == {"optimizers": ["walk"]}
    assert by_name["good"]["hooks"] == ["promptopt_register_optimizers"]
    assert by_name["promptopt.plugins.optimizers"]["version"] == promptopt.__version__
    assert data["failed"] == [{"name": "broken", "distribution": "unknown", "error": "ImportError: needs torch-nightly"}]
    assert err.count('Error importing plugin "broken"') == 1
    described = PluginHost(strict=False).describe()  # the same record, for the Python API
    assert described["failed"] == data["failed"]
    assert {p["name"]: p["registered"] for p in described["plugins"]} == {n: p["registered"] for n, p in by_name.items()}


@pytest.mark.parametrize("strict, code", [("0", 0), ("1", 1)])
def test_cli_reports_a_broken_plugin_once_and_exits_by_the_strict_switch(plugin_dir, monkeypatch, strict, code):
    from conftest import invoke

    (plugin_dir / "fakeplugin_broken.py").write_text("raise ImportError('no module named yaml')")
    with_entry_points(monkeypatch, ("broken", "fakeplugin_broken"))
    monkeypatch.setenv("PROMPTOPT_STRICT_PLUGINS", strict)
    monkeypatch.setattr("promptopt.cli._host", None)  # the CLI caches its host per process
    status, out, err = invoke(["list", "optimizers"])
    assert status == code
    assert err.count('plugin "broken"') == 1 and "no module named yaml" in err
    if code == 0:
        assert err.startswith('Error importing plugin "broken"')
        assert "de " in out  # the built-ins keep working
    else:
        assert err.startswith('Error: could not import plugin "broken"') and err.count("\n") == 1


# -- audit: silent pitfalls, deterministic order, whose factory failed, one-line reasons ------

@pytest.mark.parametrize("source, needle", [
    ("def promptopt_register_targets(register):\n    pass\n",
     "promptopt_register_targets is not marked @promptopt.hookimpl; decorate it"),
    ("def promptopt_register_optimisers(register):\n    pass\n",
     "promptopt_register_optimisers is not marked @promptopt.hookimpl and is not a promptopt hook; "
     "did you mean promptopt_register_optimizers?"),
    ("class promptopt_thing:\n    pass\n", "promptopt_thing is not marked @promptopt.hookimpl and is not a promptopt hook"),
])
def test_an_undecorated_promptopt_function_fails_its_plugin(plugin_dir, monkeypatch, source, needle):
    (plugin_dir / "fakeplugin_plain.py").write_text("import promptopt\n" + source)
    with_entry_points(monkeypatch, ("plain", "fakeplugin_plain"))
    host = PluginHost(strict=False)
    assert [f.plugin for f in host.failures] == ["plain"] and needle in host.failures[0].reason
    assert "plain" not in host.info
    with pytest.raises(PluginError, match="plain.*not marked"):
        PluginHost(strict=True)


def test_an_undecorated_method_of_an_in_process_plugin_fails_it():
    class Plugin:
        def promptopt_register_optimizers(self, register):
            register("undecorated", RandomSearch)

    host = PluginHost(load_entrypoints=False, strict=False, extra_plugins=(Plugin(),))
    assert host.failures[0].reason == "promptopt_register_optimizers is not marked @promptopt.hookimpl; decorate it"
    assert "undecorated" not in host.registries["optimizers"]


def test_entry_points_load_in_order_of_name_then_distribution(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_a.py").write_text(GOOD)
    (plugin_dir / "fakeplugin_b.py").write_text(GOOD)
    with_entry_points(monkeypatch, ("zeta", "fakeplugin_b"), ("alpha", "fakeplugin_a"))
    host = PluginHost(strict=False)
    assert host.entry("optimizers", "walk").plugin == "alpha"  # not the first one sys.path found
    assert [f.plugin for f in host.failures] == ["zeta"] and "registered twice" in host.failures[0].reason

    dists = {"fakeplugin_a": "dist-b", "fakeplugin_b": "dist-a"}  # one name in two distributions
    points = [SimpleNamespace(name="same", value=v, dist=SimpleNamespace(name=d, version="1"),
                              load=lambda v=v: importlib.import_module(v)) for v, d in dists.items()]
    monkeypatch.setattr("promptopt.host.entry_points", lambda group: points)
    host = PluginHost(strict=False)
    assert host.info["same"].distribution == "dist-a"
    assert host.failures[0].distribution == "dist-b" and "already used by distribution dist-a" in host.failures[0].reason


def _lazy(hook: str, name: str, factory):
    """A module-like in-process plugin named "lazy" whose factory fails only when called."""
    plugin = _plugin(hook, (name, factory))
    plugin.__name__ = "lazy"
    return plugin


def _raise(exc):
    raise exc


@pytest.mark.parametrize("hook, name, factory, create", [
    ("promptopt_register_instruments", "brokeninst", lambda: _raise(RuntimeError("no data")),
     lambda h: h.create_instrument("brokeninst")),
    ("promptopt_register_models", "brokenmodel", lambda device, dtype: _raise(RuntimeError("no data")),
     lambda h: h.create_model("brokenmodel")),
    ("promptopt_register_scorers", "brokenscorer", lambda constants: _raise(RuntimeError("no data")),
     lambda h: h.create_scorer(None, "brokenscorer")),
    ("promptopt_register_targets", "brokentable", lambda: _raise(RuntimeError("no data")),
     lambda h: h.target("US", "brokentable")),
    ("promptopt_register_optimizers", "fam:*", lambda member: _raise(RuntimeError("no data")),
     lambda h: h.optimizer_class("fam:*")),
])
def test_a_third_party_factory_error_names_the_thing_and_its_plugin(hook, name, factory, create):
    host = PluginHost(load_entrypoints=False, extra_plugins=(_lazy(hook, name, factory),))
    noun = host.registries[hook.rpartition("_")[2]].kind
    with pytest.raises(PluginError) as info:
        create(host)
    assert str(info.value) == f'{noun} "{name}" (plugin "lazy") failed: RuntimeError: no data'


def test_a_third_party_usage_error_keeps_its_class_and_gains_whose_it_is():
    class Table:
        def resolve(self, query):
            raise KeyError(f"no country {query!r}")

        def list(self):
            return []

    host = PluginHost(load_entrypoints=False, extra_plugins=(
        _lazy("promptopt_register_instruments", "brokeninst", lambda: _raise(UsageError("set BROKEN_DATA"))),))
    with pytest.raises(UsageError) as info:
        host.create_instrument("brokeninst")
    assert str(info.value) == 'instrument "brokeninst" (plugin "lazy"): set BROKEN_DATA' and info.value.exit_code == 2
    host = PluginHost(load_entrypoints=False, extra_plugins=(_lazy("promptopt_register_targets", "t", Table),))
    with pytest.raises(UsageError, match=r"^target table \"t\" \(plugin \"lazy\"\): no country 'ZZ'$"):
        host.target("ZZ", "t")


def test_built_in_factory_errors_are_left_as_they_are():
    host = PluginHost(load_entrypoints=False)
    with pytest.raises(UsageError) as info:
        host.target("Atlantis")
    assert "plugin" not in str(info.value)


def test_a_strict_hook_error_says_fatal_not_ignored(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_misc.py").write_text(
        "import promptopt\n@promptopt.hookimpl\ndef promptopt_generation_end(state, record):\n"
        "    raise RuntimeError('boom')\n")
    with_entry_points(monkeypatch, ("misc", "fakeplugin_misc"))
    with pytest.raises(PluginError) as info:
        PluginHost(strict=True).pm.hook.promptopt_generation_end(state=None, record={})
    assert str(info.value) == ('plugin "misc", hook promptopt_generation_end raised RuntimeError: boom '
                               "(fatal: PROMPTOPT_STRICT_PLUGINS=1)")


def test_registration_failures_do_not_say_importing(plugin_dir, monkeypatch):
    host = PluginHost(load_entrypoints=False, strict=False,
                      extra_plugins=(_plugin("promptopt_register_optimizers", ("de", RandomSearch)),))
    assert host.failures[0].message().startswith('Error registering plugin "Plugin" (distribution (in-process)): '
                                                  'optimizer "de" registered twice')
    (plugin_dir / "fakeplugin_broken.py").write_text("raise ImportError('no yaml')")
    with_entry_points(monkeypatch, ("broken", "fakeplugin_broken"))
    assert PluginHost(strict=False).failures[0].message().startswith('Error importing plugin "broken"')


def test_a_hook_argument_named_wrong_is_a_one_line_plugin_failure(plugin_dir, monkeypatch):
    source = "import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimizers(reg):\n    pass\n"
    module = ModuleType("wrongarg")
    exec(source, module.__dict__)
    host = PluginHost(load_entrypoints=False, strict=False, extra_plugins=(module,))
    (plugin_dir / "fakeplugin_wrongarg.py").write_text(source)
    with_entry_points(monkeypatch, ("wrongarg", "fakeplugin_wrongarg"))
    for failures in (host.failures, PluginHost(strict=False).failures):
        assert [f.plugin for f in failures] == ["wrongarg"]
        assert "'reg'" in failures[0].reason and "\n" not in failures[0].reason
    assert host.entry("optimizers", "de")  # the built-ins keep working
    with pytest.raises(PluginError, match="wrongarg"):
        PluginHost(load_entrypoints=False, strict=True, extra_plugins=(module,))


def test_describe_lists_hook_errors(plugin_dir, monkeypatch):
    (plugin_dir / "fakeplugin_tracker.py").write_text(LIFECYCLE)
    with_entry_points(monkeypatch, ("tracker", "fakeplugin_tracker"))
    host = PluginHost(strict=False)
    for _ in range(2):
        host.pm.hook.promptopt_run_end(state=SimpleNamespace(run_dir=plugin_dir), summary={})
    assert host.describe()["hook_errors"] == [
        {"plugin": "tracker", "hook": "promptopt_run_end", "error": "RuntimeError: tracker offline"}]


def test_a_name_with_a_space_is_refused_saying_what_a_name_may_be():
    host = PluginHost(load_entrypoints=False, strict=False,
                      extra_plugins=(_plugin("promptopt_register_optimizers", ("my opt", RandomSearch)),))
    assert host.failures[0].reason == ('plugin "Plugin" registered an invalid optimizer name \'my opt\'; a name is a '
                                       "non-empty string without spaces, e.g. 'my-optimizer'")


@pytest.mark.parametrize("hook, create, needle", [
    ("promptopt_register_instruments", lambda h: h.create_instrument("strinst"),
     'instrument "strinst" (plugin "Plugin"): factory returned str'),
    ("promptopt_register_targets", lambda h: h.target_table("strinst"),
     'target table "strinst" (plugin "Plugin"): factory returned str'),
])
def test_what_a_third_party_factory_returned_is_refused_naming_its_plugin(hook, create, needle):
    host = PluginHost(load_entrypoints=False, extra_plugins=(_plugin(hook, ("strinst", lambda: "not it")),))
    with pytest.raises(PluginError) as e:
        create(host)
    assert str(e.value).startswith(needle)
