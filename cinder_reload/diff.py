"""The configuration diff: ``(old values, new values) -> ConfigDiff``.

Pure: no ConfigOpts, no files.  Every changed option is classified the way
PostgreSQL classifies a changed GUC:

* ``live``     - a ``mutable=True`` option; applied in place, with
  oslo.config's mutate hooks run (apply.run_mutate_hooks).
* ``reinit``   - an immutable option in a group that has a re-initialiser; it
  takes effect when that group is rebuilt.
* ``restart``  - anything else; reported as ``pending_restart`` and left at its
  running value, so what the service reports is what it runs.

Values of ``secret=True`` options never leave this module unmasked.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import ChangeRecord

__all__ = [
    "ChangeKind",
    "ConfigDiff",
    "OptionChange",
    "OptionValue",
    "OptKey",
    "classify",
    "diff_values",
    "raw_changes",
    "MASK",
]

MASK = "****"
DEFAULT_GROUP = "DEFAULT"

#: ``(group, option)``; options of the DEFAULT section use ``"DEFAULT"``.
OptKey = tuple[str, str]


class ChangeKind(enum.StrEnum):
    LIVE = "live"
    REINIT = "reinit"
    RESTART = "restart"


@dataclass(frozen=True)
class OptionValue:
    """An option's effective value and the two flags that decide its fate."""

    value: Any
    mutable: bool = False
    secret: bool = False


def _printable(value: Any) -> Any:
    """A JSON-friendly rendering of an option value."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_printable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _printable(v) for k, v in value.items()}
    return str(value)


@dataclass(frozen=True)
class OptionChange:
    group: str
    name: str
    old: Any
    new: Any
    kind: ChangeKind
    secret: bool = False
    mutable: bool = False
    #: Known to this process only as text in the files (an option a driver
    #: registers in its worker): no typed value, nothing to override.
    raw: bool = False

    @property
    def key(self) -> OptKey:
        return (self.group, self.name)

    @property
    def label(self) -> str:
        return f"{self.group}.{self.name}"

    def shown(self) -> tuple[Any, Any]:
        """(old, new) as they may be shown to anyone: secrets masked."""
        if self.secret:
            return MASK, MASK
        return _printable(self.old), _printable(self.new)

    def as_dict(self) -> ChangeRecord:
        old, new = self.shown()
        return {"group": self.group, "option": self.name, "old": old, "new": new, "applied": self.kind.value}

    def __repr__(self) -> str:  # never let a secret reach a log through repr()
        old, new = self.shown()
        return f"OptionChange({self.label}: {old!r} -> {new!r}, {self.kind.value})"


@dataclass(frozen=True)
class ConfigDiff:
    changes: tuple[OptionChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    def of_kind(self, kind: ChangeKind) -> tuple[OptionChange, ...]:
        return tuple(c for c in self.changes if c.kind is kind)

    def groups(self, kind: ChangeKind) -> list[str]:
        """Groups with at least one change of ``kind``, sorted, DEFAULT first."""
        return sorted({c.group for c in self.of_kind(kind)}, key=_group_order)

    def in_group(self, group: str) -> tuple[OptionChange, ...]:
        return tuple(c for c in self.changes if c.group == group)

    def as_list(self) -> list[ChangeRecord]:
        return [c.as_dict() for c in self.changes]

    def summary(self) -> str:
        """e.g. ``3 changed: 1 live, 1 reinit, 1 restart``."""
        if not self.changes:
            return "no changes"
        parts = [f"{len(self.of_kind(k))} {k.value}" for k in ChangeKind if self.of_kind(k)]
        return f"{len(self.changes)} changed: " + ", ".join(parts)


def _group_order(group: str) -> tuple[int, str]:
    return (0 if group == DEFAULT_GROUP else 1, group)


def classify(
    key: OptKey, mutable: bool, reinit_groups: Collection[str], restart_only: Collection[OptKey]
) -> ChangeKind:
    """How a change of option ``key`` takes effect (the rules of :func:`diff_values`)."""
    if key in restart_only:
        return ChangeKind.RESTART
    if mutable:
        return ChangeKind.LIVE
    if key[0] in reinit_groups:
        return ChangeKind.REINIT
    return ChangeKind.RESTART


def diff_values(
    old: Mapping[OptKey, OptionValue],
    new: Mapping[OptKey, OptionValue],
    reinit_groups: Collection[str] = (),
    restart_only: Collection[OptKey] = (),
) -> ConfigDiff:
    """Compare two snapshots and classify each change.

    ``restart_only`` lists options that can never change live even if they
    are mutable or in a re-initialisable group (``transport_url``,
    ``enabled_backends``...): the integration knows, the option flag does not.
    Options present in only one snapshot (registered meanwhile) are ignored.
    """
    changes: list[OptionChange] = []
    for key in sorted(old.keys() & new.keys(), key=lambda k: (_group_order(k[0]), k[1])):
        before, after = old[key], new[key]
        if before.value == after.value:
            continue
        kind = classify(key, after.mutable, reinit_groups, restart_only)
        changes.append(
            OptionChange(key[0], key[1], before.value, after.value, kind, before.secret or after.secret, after.mutable)
        )
    return ConfigDiff(tuple(changes))


def raw_changes(
    old: Mapping[str, Mapping[str, Any]],
    new: Mapping[str, Mapping[str, Any]],
    known: Collection[OptKey],
) -> ConfigDiff:
    """Keys of whole sections (``{section: {key: raw value}}``) that changed
    and that no typed option covers: each a ``reinit`` change of its section.

    Their values are shown masked: without the option's definition nothing
    says whether a key is a password.
    """
    changes: list[OptionChange] = []
    for section in sorted(old.keys() | new.keys(), key=_group_order):
        before, after = old.get(section, {}), new.get(section, {})
        for key in sorted(before.keys() | after.keys()):
            if (section, key) in known or before.get(key) == after.get(key):
                continue
            changes.append(
                OptionChange(section, key, before.get(key), after.get(key), ChangeKind.REINIT, secret=True, raw=True)
            )
    return ConfigDiff(tuple(changes))


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every non-trivial secret value in ``text`` (last line of defence)."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
