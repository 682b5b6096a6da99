"""Applying a validated diff to the running ``ConfigOpts``.

The running object first reads the validated snapshot (config.install:
every group, from the bytes that were validated, never a second read of the
files).  Then:

* changes that must not take effect yet (pending a restart) are pinned to
  their running value with ``set_override()``;
* each re-initialisable group's changes are pinned old too, and released to
  their new value right before that group is rebuilt (or its worker
  replaced); a failure puts the pin back, so that group keeps exactly its old
  values;
* mutable options take effect at once, and oslo.config's mutate hooks
  (oslo.log's debug level, for one) run with what changed, as
  ``mutate_config_files()`` would have run them.

:class:`Overrides` remembers which overrides this helper set, so a rollback
puts back precisely what was there before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from oslo_config import cfg

from .diff import DEFAULT_GROUP, OptionChange, OptKey

__all__ = ["Overrides", "run_mutate_hooks"]

LOG = logging.getLogger(__name__)

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
            if change.raw:  # no registered option to override
                continue
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


def _opt_names(conf: cfg.ConfigOpts) -> dict[OptKey, str]:
    """(group, dest) -> the option's name as oslo.config's hooks key it."""
    from .config import registered_options

    return {reg.key: reg.opt.name for reg in registered_options(conf)}


def run_mutate_hooks(conf: cfg.ConfigOpts, live: Iterable[OptionChange]) -> None:
    """Log each mutable change (secrets masked) and run oslo.config's mutate hooks.

    ``mutate_config_files()`` would re-read the files to learn what changed;
    the reload already knows.  Its hooks get the same ``{(group or None,
    name): (old, new)}`` it would pass them.  ``_mutate_hooks`` is private:
    oslo.config has no public way to run the hooks without re-reading.
    """
    changes = [c for c in live if not c.raw]
    if not changes:
        return
    names = _opt_names(conf)
    fresh: dict[tuple[str | None, str], tuple[Any, Any]] = {}
    for change in changes:
        old, new = change.shown()
        LOG.info("Option %s changed from [%s] to [%s]", change.label, old, new)
        group = None if change.group == DEFAULT_GROUP else change.group
        fresh[(group, names.get(change.key, change.name))] = (change.old, change.new)
    for hook in list(getattr(conf, "_mutate_hooks", ())):
        hook(conf, fresh)
