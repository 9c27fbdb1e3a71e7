"""Named things of one kind (models, optimizers, ...), each remembered with the plugin that gave it."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .errors import PluginError, UsageError


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Any
    description: str
    plugin: str


class Registry:
    """Name -> Entry for one kind; a name ending in ``:*`` stands for a family of names."""

    def __init__(self, kind: str, validate: Callable[[str, Any], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._validate = validate

    def add(self, name: str, factory: Any, description: str = "", *, plugin: str) -> None:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise PluginError(f'plugin "{plugin}" registered an invalid {self.kind} name {name!r}; a name is a '
                              f"non-empty string without spaces, e.g. {'my-' + self.kind.replace(' ', '-')!r}")
        if name in self._entries:
            other = self._entries[name].plugin
            raise PluginError(f'{self.kind} "{name}" registered twice: by plugin "{other}" and by plugin "{plugin}"')
        if not callable(factory):
            raise PluginError(f'plugin "{plugin}" registered {self.kind} "{name}" with a non-callable factory')
        if self._validate is not None:
            self._validate(name, factory)
        self._entries[name] = Entry(name, factory, description or _first_line(factory), plugin)

    def get(self, name: str) -> Entry:
        """The entry for name; for ``family:member`` the family's entry (its factory takes the member)."""
        if name in self._entries:
            return self._entries[name]
        family, sep, _ = name.partition(":")
        if sep and f"{family}:*" in self._entries:
            return self._entries[f"{family}:*"]
        close = difflib.get_close_matches(name, list(self._entries), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UsageError(f"unknown {self.kind} {name!r}{hint} (registered: {', '.join(sorted(self._entries))})")

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def remove_plugin(self, plugin: str) -> None:
        self._entries = {k: e for k, e in self._entries.items() if e.plugin != plugin}


def _first_line(obj: Any) -> str:
    doc = getattr(obj, "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
