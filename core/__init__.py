"""promptopt: black-box optimisation of soft prompts of a frozen language model.

Kept import-light on purpose: the lower layers (optimizers, objectives, models) live in
this namespace, so importing any of them runs this file first.
"""

from importlib.metadata import PackageNotFoundError, version as _version

import pluggy

try:
    __version__ = _version("promptopt")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

hookimpl = pluggy.HookimplMarker("promptopt")
"""Marker for plugin hook implementations: ``@promptopt.hookimpl``."""

# The whole-run API, imported on first use so `import promptopt` (every plugin's first line)
# stays light: promptopt.run(promptopt.build_config(country="SA")) is `promptopt run --country SA`.
_LAZY = {"run": "runner", "resume": "runner", "RunConfig": "config", "build_config": "config",
         "PluginHost": "host"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "hookimpl", *_LAZY]
