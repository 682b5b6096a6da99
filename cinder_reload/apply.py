"""Applying a validated diff to the running ``ConfigOpts``.

Two mechanisms, because oslo.config has two kinds of option:

* mutable options go through ``mutate_config_files()``, oslo.config's own
  path, so its mutate hooks (oslo.log's debug level, for one) still run;
* immutable options of a re-initialisable group are made visible with
  ``set_override()``, one group at a time, right before that group's
  re-initialiser runs.  ``mutate_config_files()`` cannot do this (it only
  swaps the mutable namespace), and ``reload_config_files()`` swaps every
  group at once, which would leave no way to keep a failed group on its old
  values.  An override is per option, so rolling one group back is exact.

:class:`Overrides` remembers which overrides this helper set, so a rollback
puts back precisely what was there before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from oslo_config import cfg

from .diff import DEFAULT_GROUP, MASK, OptionChange, OptKey

__all__ = ["Overrides", "mutate_live"]

_MISSING = object()


def _group_arg(group: str) -> str | None:
    return None if group == DEFAULT_GROUP else group


class Overrides:
    """The ``set_override()`` calls this helper made, and how to undo them."""

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self._conf = conf
        self._ours: dict[OptKey, Any] = {}

    def set(self, changes: Iterable[OptionChange], *, to_new: bool = True) -> dict[OptKey, Any]:
        """Override each option to its new (or old) value; return an undo record."""
        undo: dict[OptKey, Any] = {}
        for change in changes:
            undo.setdefault(change.key, self._ours.get(change.key, _MISSING))
            value = change.new if to_new else change.old
            self._conf.set_override(change.name, value, _group_arg(change.group))
            self._ours[change.key] = value
        return undo

    def undo(self, record: dict[OptKey, Any]) -> None:
        for (group, name), previous in record.items():
            if previous is _MISSING:
                self._conf.clear_override(name, _group_arg(group))
                self._ours.pop((group, name), None)
            else:
                self._conf.set_override(name, previous, _group_arg(group))
                self._ours[(group, name)] = previous

    def keys(self) -> frozenset[OptKey]:
        return frozenset(self._ours)


class _QuietAppliedImmutables(logging.Filter):
    """Keeps oslo.config's mutate log honest.

    ``mutate_config_files()`` warns "Ignoring change to immutable option" for
    every immutable change, including those this helper applies by
    re-initialising, and logs mutable changes with their values, secrets
    included.  Drop the first kind for options we do apply and mask the second.
    """

    def __init__(self, applied: frozenset[str], secret: frozenset[str]) -> None:
        super().__init__()
        self._applied = applied
        self._secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, dict) or "option" not in args:
            return True
        label = f"{args.get('group') or DEFAULT_GROUP}.{args['option']}"
        if "immutable" in str(record.msg) and label in self._applied:
            return False
        if label in self._secret and "old_val" in args:
            record.args = {**args, "old_val": MASK, "new_val": MASK}
        return True


@contextmanager
def _oslo_log_filter(applied: frozenset[str], secret: frozenset[str]) -> Iterator[None]:
    logger = logging.getLogger("oslo_config.cfg")
    log_filter = _QuietAppliedImmutables(applied, secret)
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


def mutate_live(conf: cfg.ConfigOpts, applied_by_reinit: Iterable[OptionChange], secret_labels: Iterable[str]) -> None:
    """Run oslo.config's ``mutate_config_files()`` with its log kept honest."""
    with _oslo_log_filter(frozenset(c.label for c in applied_by_reinit), frozenset(secret_labels)):
        conf.mutate_config_files()
