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

__all__ = ["__version__", "hookimpl"]
