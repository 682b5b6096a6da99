"""cinder-reload: a true, honest SIGHUP reload for OpenStack Cinder services.

The public surface is small; everything else is an implementation detail.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING, and importlib only in __getattr__: every
# `cinder-reload signal` (each `systemctl reload`) imports this package
# before its SIGHUP goes out, and typing, importlib (through warnings) cost
# milliseconds there.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .config import ConfigInvalid, ConfigProblem
    from .diff import ChangeKind, ConfigDiff, OptionChange
    from .drain import DrainGate, DrainGates, DrainTimeout
    from .engine import ReloadEngine
    from .events import EventSink, LoggingEvents, OsloMessagingEvents
    from .notify import SystemdNotifier, build_message
    from .phases import Phase
    from .reinit import GroupChange, ReinitRegistry

# Where each public name lives.  Imported on first use (PEP 562): the
# `cinder-reload signal` command, which is what `systemctl reload` waits on,
# must not pay for importing oslo.config just because it lives in this package.
_WHERE = {
    "ConfigInvalid": "config",
    "ConfigProblem": "config",
    "ChangeKind": "diff",
    "ConfigDiff": "diff",
    "OptionChange": "diff",
    "DrainGate": "drain",
    "DrainGates": "drain",
    "DrainTimeout": "drain",
    "ReloadEngine": "engine",
    "EventSink": "events",
    "LoggingEvents": "events",
    "OsloMessagingEvents": "events",
    "SystemdNotifier": "notify",
    "build_message": "notify",
    "Phase": "phases",
    "GroupChange": "reinit",
    "ReinitRegistry": "reinit",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "ChangeKind",
    "ConfigDiff",
    "ConfigInvalid",
    "ConfigProblem",
    "DrainGate",
    "DrainGates",
    "DrainTimeout",
    "EventSink",
    "GroupChange",
    "LoggingEvents",
    "OptionChange",
    "OsloMessagingEvents",
    "Phase",
    "ReinitRegistry",
    "ReloadEngine",
    "SystemdNotifier",
    "build_message",
]

__version__ = "0.1.0"
