"""Plugins from entry points, loaded so that a bad one cannot hurt the host.

Each entry point is loaded with ``EntryPoint.load()`` (the standard ``module:attr`` form, or a module
that defines the expected attribute). A plugin that fails to import, or loads something of the wrong
kind, is recorded as broken with its error (``edgesmith passes`` lists it) and every command goes on;
two distributions claiming one name is an error naming both, raised only when that name is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from edgesmith.errors import ConfigError


@dataclass(frozen=True)
class Broken:
    name: str  # the entry point's name
    distribution: str
    error: str


@dataclass
class Loaded:
    """What one entry-point group gave: objects by name, where each came from, what failed, what clashed."""

    objects: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    broken: list[Broken] = field(default_factory=list)
    conflicts: dict[str, list[str]] = field(default_factory=dict)  # name -> every distribution claiming it

    def check_claim(self, name: str, what: str) -> None:
        """Refuse a name two distributions claim, naming both."""
        if name in self.conflicts:
            raise ConfigError(
                f"{what} {name!r} is claimed by more than one package: {' and '.join(self.conflicts[name])}",
                hint="uninstall one of them; `edgesmith passes` lists every pass and where it comes from",
            )

    def add(self, name: str, obj: Any, origin: str) -> None:
        if name in self.conflicts:
            self.conflicts[name] = sorted([*self.conflicts[name], origin])
        elif name in self.objects:
            self.conflicts[name] = sorted([self.origin.pop(name), origin])
            del self.objects[name]
        else:
            self.objects[name], self.origin[name] = obj, origin


def load_group(group: str, loaded: Loaded, accept: Callable[[Any], Any], attr: str) -> None:
    """Load every entry point of ``group`` into ``loaded``. ``accept`` returns the registrable object
    (or None) from what the entry point names; a module is searched for ``attr``."""

    for ep in entry_points(group=group):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
        try:
            obj = ep.load()
        except BaseException as exc:  # noqa: BLE001 - a plugin's import error (even SystemExit) must not take the host down
            if isinstance(exc, KeyboardInterrupt):
                raise
            loaded.broken.append(Broken(ep.name, dist, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"))
            continue
        if isinstance(obj, ModuleType):
            obj = getattr(obj, attr, None)
        item = accept(obj)
        if item is None:
            loaded.broken.append(Broken(ep.name, dist, f"{ep.value} is not a {attr} object (got {type(obj).__name__})"))
            continue
        loaded.add(item.name, item, f"distribution {dist!r}")
