"""cinder-reload: a true, honest SIGHUP reload for OpenStack Cinder services.

The public surface is small; everything else is an implementation detail.
"""

from .config import ConfigInvalid, ConfigProblem
from .diff import ChangeKind, ConfigDiff, OptionChange
from .drain import DrainGate, DrainGates, DrainTimeout
from .engine import ReloadEngine
from .events import EventSink, LoggingEvents, OsloMessagingEvents
from .notify import SystemdNotifier, build_message
from .phases import Phase
from .reinit import GroupChange, ReinitRegistry

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
