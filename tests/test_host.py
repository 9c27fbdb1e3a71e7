"""The plugin host: built-ins through the same hooks, entry points, failure isolation, lookups."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint

import pytest

import promptopt
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


@pytest.mark.parametrize("source, needle", [
    ("raise ImportError('needs a package that is not installed')", "needs a package that is not installed"),
    ("import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimisers(register):\n    pass\n",
     "promptopt_register_optimisers"),
    ("import promptopt\nfrom promptopt.optimizers import RandomSearch\n@promptopt.hookimpl\n"
     "def promptopt_register_optimizers(register):\n    register('de', RandomSearch)\n",
     'optimizer "de" registered twice: by plugin "promptopt.plugins.optimizers" and by plugin "broken"'),
    ("import promptopt\n@promptopt.hookimpl\ndef promptopt_register_optimizers(register):\n"
     "    register('notanoptimizer', dict)\n", "must be a subclass of promptopt.optimizers.Optimizer"),
])
def test_broken_plugin_is_reported_by_name_and_skipped_while_builtins_keep_working(
        plugin_dir, monkeypatch, source, needle):
    (plugin_dir / "fakeplugin_broken.py").write_text(source)
    (plugin_dir / "fakeplugin_fine.py").write_text(GOOD)
    with_entry_points(monkeypatch, ("broken", "fakeplugin_broken"), ("fine", "fakeplugin_fine"))
    host = PluginHost(strict=False)
    assert len(host.failures) == 1
    message = host.failures[0].message()
    assert message.startswith('Error importing plugin "broken"') and needle in message
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
