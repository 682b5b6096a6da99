"""How each class of option takes effect in each cinder service: the table in the devref (reload-cycle).

Built from the same names the services use at run time (options.py,
backends.py, scheduler.py, backup.py), and rendered by the documentation's
own build (doc/source/_ext/applied_options.py), so it cannot drift from the
code.  Importing this module does not import cinder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..diff import OptKey
from .backends import ENABLED_BACKENDS, SHARED_GROUPS
from .backup import _READ_ONCE as BACKUP_READ_ONCE
from .options import (
    _COMMON_RESTART_ONLY,
    _MAIN_PROCESS_LIBRARIES,
    _PER_SERVICE_RESTART_ONLY,
    API_MAIN_PROCESS_GROUPS,
    API_MAIN_PROCESS_OPTIONS,
    DATABASE_OPTIONS,
    RESTART_REASONS,
    TRANSPORT_OPTIONS,
)
from .scheduler import CACHED_OPTIONS, PER_DECISION_OPTIONS

__all__ = ["LIVE", "PENDING", "REPLACED", "rows", "rst"]

LIVE = "live, in every process"
REPLACED = "worker replacement"
REBUILT = "rebuilt in place"
PENDING = "pending restart"

#: A row: service, options, how they take effect, why.
Row = tuple[str, str, str, str]


def _keys(keys: Iterable[OptKey]) -> str:
    return ", ".join(f"`[{group}] {name}`" for group, name in sorted(keys))


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"`{name}`" for name in sorted(names))


def _restart_rows(service: str, exclude: frozenset[OptKey] = frozenset()) -> list[Row]:
    keys = (set(_COMMON_RESTART_ONLY) | set(_PER_SERVICE_RESTART_ONLY.get(service, ()))) - exclude
    by_reason: dict[str, list[OptKey]] = {}
    for key in sorted(keys):
        by_reason.setdefault(RESTART_REASONS[key], []).append(key)
    return [(service, _keys(group), PENDING, reason) for reason, group in by_reason.items()]


def rows() -> list[Row]:
    """Every option class of every service, in the order the document shows them."""
    mutable = "every mutable option (`debug`, `log_config_append`, ...)"
    mutable_why = "oslo.config's mutate hooks, in the main process and each worker"
    rolled = TRANSPORT_OPTIONS | DATABASE_OPTIONS
    shared = ", ".join(f"`[{g}]`" for g in SHARED_GROUPS)
    libraries = ", ".join(sorted(_MAIN_PROCESS_LIBRARIES))
    table: list[Row] = [
        ("cinder-volume", mutable, LIVE, mutable_why),
        (
            "cinder-volume",
            "every option of a backend's section (`[<backend>]`)",
            f"{REPLACED}: that backend's",
            "drained, a new worker from cinder's own start path; the other backends untouched",
        ),
        (
            "cinder-volume",
            "`[DEFAULT] enabled_backends`",
            f"{REPLACED}: backends added or removed",
            "a new backend's worker started, a removed one drained and stopped (eventlet and cotyledon)",
        ),
        (
            "cinder-volume",
            f"every other option of {shared}: the transports' and the database's ({_keys(rolled)}) too",
            f"{REPLACED}: every backend's, one at a time",
            "read by every worker; the transports and the database engine are set up again first; "
            "a backend that cannot take it puts the others back (eventlet and cotyledon)",
        ),
        (
            "cinder-volume",
            f"every immutable `[DEFAULT]` option of oslo.log and oslo.service (entry points {libraries})",
            PENDING,
            "logging and process management are set up once, in the main process, and every worker inherits them",
        ),
        ("cinder-volume", "`[<backend>] backend_host`", PENDING, RESTART_REASONS[("DEFAULT", "host")]),
        *_restart_rows("cinder-volume", exclude=rolled | {ENABLED_BACKENDS}),
        ("cinder-scheduler", mutable, LIVE, mutable_why),
        (
            "cinder-scheduler",
            _names(CACHED_OPTIONS),
            REBUILT,
            "the host manager's filters and weighers, the filter scheduler's attempts: resolved again, "
            "swapped in while its RPC calls are drained",
        ),
        (
            "cinder-scheduler",
            _names(PER_DECISION_OPTIONS),
            REBUILT,
            "read at every scheduling decision: in effect once the reload releases them",
        ),
        *_restart_rows("cinder-scheduler"),
        ("cinder-backup", mutable, LIVE, mutable_why),
        (
            "cinder-backup",
            f"every `[DEFAULT] backup_*` option but {_names(BACKUP_READ_ONCE)}",
            f"{REBUILT} (one process) / {REPLACED}: every process, one at a time (`backup_workers` > 1)",
            "the backup driver built again after the running backups finished",
        ),
        *_restart_rows("cinder-backup"),
        ("cinder-api", mutable, LIVE, mutable_why),
        (
            "cinder-api",
            "every other option (`osapi_max_limit`, `api_paste_config`, the policy's, the WSGI server's, ...) "
            "and the files the WSGI application reads (api-paste.ini), at every reload",
            f"{REPLACED}: every worker, the new ones first",
            "new workers from cinder's own WSGIService on the socket bound at start; the old ones stop accepting "
            "and finish their requests (eventlet; on cotyledon pending restart)",
        ),
        (
            "cinder-api",
            f"every immutable `[DEFAULT]` option of oslo.log and oslo.service (entry points {libraries})",
            PENDING,
            "logging and process management are set up once, in the main process, and every worker inherits them",
        ),
        *[
            (
                "cinder-api",
                f"every immutable option of `[{prefix}*]`"
                if prefix.endswith("_")
                else f"every immutable option of `[{prefix}]`",
                PENDING,
                why,
            )
            for prefix, why in API_MAIN_PROCESS_GROUPS.items()
        ],
        ("cinder-api", _keys(API_MAIN_PROCESS_OPTIONS), PENDING, next(iter(API_MAIN_PROCESS_OPTIONS.values()))),
        *_restart_rows("cinder-api"),
        (
            "all",
            "any other immutable option",
            PENDING,
            "read once when the process starts; no live path applies it yet",
        ),
    ]
    return table


def _literal(cell: str) -> str:
    """The table's `code` spans as reStructuredText literals."""
    return re.sub(r"`([^`]+)`", r"``\1``", cell)


def rst() -> str:
    """The table as a reStructuredText list-table (the devref's ``cinder-reload-applied-options`` directive)."""
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 12 38 20 30", ""]
    for row in [("service", "options", "how a reload applies them", "why"), *rows()]:
        first, *rest = (_literal(cell) for cell in row)
        lines.append(f"   * - {first}")
        lines += [f"     - {cell}" for cell in rest]
    return "\n".join(lines) + "\n"
