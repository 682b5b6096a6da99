"""Re-initialisers, keyed by configuration group.

A re-initialiser rebuilds whatever a group's options configure (a backend's
driver, a cache, a connection pool).  It is called with the group's changes
after the new values are visible through the running ``ConfigOpts`` and while
its drain scope is quiet.  Its contract is *build, then swap*: construct the
new object first and replace the old one only when that succeeded; if it
raises, the engine puts the group's old option values back, so the group keeps
serving on its old config and its old objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .diff import OptionChange

__all__ = ["GroupChange", "Reinitializer", "ReinitRegistry", "Registration"]


@dataclass(frozen=True)
class GroupChange:
    """What changed in one group, handed to its re-initialiser."""

    group: str
    changes: tuple[OptionChange, ...]

    @property
    def options(self) -> list[str]:
        return [c.name for c in self.changes]


Reinitializer = Callable[[GroupChange], None]


@dataclass(frozen=True)
class Registration:
    group: str
    reinit: Reinitializer
    scope: str  # the drain scope quiesced around it


class ReinitRegistry:
    """Which callable rebuilds which group; one per group."""

    def __init__(self) -> None:
        self._by_group: dict[str, Registration] = {}

    def register(self, group: str, reinit: Reinitializer, *, scope: str | None = None) -> None:
        """Register ``reinit`` for ``group``; its drain scope defaults to the group name."""
        if group in self._by_group:
            raise ValueError(f"group {group!r} already has a re-initialiser")
        self._by_group[group] = Registration(group, reinit, scope or group)

    def unregister(self, group: str) -> None:
        self._by_group.pop(group, None)

    def get(self, group: str) -> Registration | None:
        return self._by_group.get(group)

    def groups(self) -> frozenset[str]:
        return frozenset(self._by_group)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._by_group.values()))
