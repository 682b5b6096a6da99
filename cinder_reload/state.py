"""The per-service state file: what the last reload did, for people and tools.

``cinder-reload signal --wait`` (the synchronous ``ExecReload=`` and the init
scripts' ``reload``) and ``cinder-reload status`` read it; the engine writes
it atomically (write to a temporary file in the same directory, fsync,
rename) so a reader never sees half a document.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "DEFAULT_RUNTIME_DIR",
    "STATE_DIR_ENV",
    "ChangeRecord",
    "StateDocument",
    "StateUnreadable",
    "WorkerRecord",
    "load_state",
    "read_state",
    "runtime_dir",
    "state_path",
    "write_state",
]


# The document's schema, for the type checker: its values are plain dicts,
# and typing costs milliseconds of every `cinder-reload signal` (each
# `systemctl reload`, waiter.py), which imports this module before its SIGHUP.
if TYPE_CHECKING:
    from typing import Any, NotRequired, TypedDict

    class ChangeRecord(TypedDict):
        """One changed option; secrets as ``****``."""

        group: str
        option: str
        old: Any
        new: Any
        applied: str  # live | reinit | restart
        #: Why a restart is needed (pending-restart entries only).
        reason: NotRequired[str]


    class WorkerRecord(TypedDict, total=False):
        """One worker process in a cycle (report.py builds it from workers.WorkerResult)."""

        worker: str
        pid: int | None
        result: str  # ok | failed
        message: str
        reinitialized: list[str]
        failed_groups: dict[str, str]
        #: A replaced worker (cinder-volume): the pid before, how long the
        #: backend's RPC was paused, how long the new worker took to consume.
        old_pid: int
        new_pid: int | None
        paused_s: float | None
        paused_at: float
        start_s: float | None
        #: Its old worker's drain: operations in flight when it stopped consuming, seconds waited.
        drained_in_flight: int | None
        drained_s: float | None
        #: At start: whether the backend's driver initialised, and if not, why.
        initialized: bool
        reason: str | None
        #: A worker that ran its own cycle (cinder-backup, cinder-api).
        generation: int
        duration_s: float
        changed: list[ChangeRecord]
        not_applied: list[ChangeRecord]
        pending_restart: list[ChangeRecord]
        problems: list[str]


    class StateDocument(TypedDict, total=False):
        """The state file: written only by the engine (engine.py), atomically.

        ``signal --wait`` and ``status`` read it; so does a main process reading
        its workers' (workers.SignalledWorkers).
        """

        service: str
        pid: int
        generation: int
        result: str  # ok | failed
        message: str  # the STATUS= line
        started_at: str | None
        finished_at: str
        started_monotonic: float | None  # CLOCK_MONOTONIC seconds: which SIGHUP a cycle answered
        duration_s: float
        changed: list[ChangeRecord]
        not_applied: list[ChangeRecord]
        reinitialized: list[str]
        failed_groups: dict[str, str]
        pending_restart: list[ChangeRecord]
        problems: list[str]
        workers: list[WorkerRecord]
        phase: str
        in_progress: dict[str, Any] | None
        waits: dict[str, dict[str, object]]


DEFAULT_RUNTIME_DIR = Path("/run/cinder")
#: Overrides where state files live (tests, and services not run by systemd).
STATE_DIR_ENV = "CINDER_RELOAD_STATE_DIR"


def runtime_dir(environ: Mapping[str, str] | None = None, override: str | os.PathLike[str] | None = None) -> Path:
    """Where state files live: an explicit override, ``$CINDER_RELOAD_STATE_DIR``,
    systemd's ``$RUNTIME_DIRECTORY`` (its first entry: systemd.exec(5) joins
    several with ``:``), else ``/run/cinder``."""
    env = os.environ if environ is None else environ
    if override:
        return Path(override)
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    if env.get("RUNTIME_DIRECTORY"):
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0])
    return DEFAULT_RUNTIME_DIR


def state_path(service: str, directory: Path) -> Path:
    if not service or "/" in service or service.startswith("."):
        raise ValueError(f"not a service name: {service!r}")
    return directory / f"{service}.reload.json"


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    import tempfile  # here: the readers (`signal --wait`, ExecReload=) never need it

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        # The service's user and group only: the document names options,
        # backends and reasons an operator needs, not everyone on the host
        # (secrets are masked, but a masked file is still nobody else's).
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class StateUnreadable(Exception):
    """A state file that exists but cannot be read as a state document."""


def load_state(path: Path) -> dict[str, Any] | None:
    """The state document, None when there is none (yet); raises
    :class:`StateUnreadable` with the reason for anything else at ``path``
    (a directory, no permission, not JSON, not a JSON object)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StateUnreadable(f"{path} is a directory, not a state file") from None
    except PermissionError:
        raise StateUnreadable(f"{path} is not readable by uid {os.getuid()} (permission denied)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateUnreadable(f"{path} is not a state file (not JSON: {exc})") from None
    except OSError as exc:
        raise StateUnreadable(f"{path} cannot be read: {exc.strerror}") from None
    if not isinstance(data, dict):
        raise StateUnreadable(f"{path} is not a state file (JSON, but not an object)")
    return data


def read_state(path: Path) -> dict[str, Any] | None:
    """The state document, or None when there is none or it cannot be read.

    For pollers (``signal --wait``, a main process reading its workers'):
    the engine replaces the file atomically, so garbage there now is gone
    after its next write.
    """
    try:
        return load_state(path)
    except StateUnreadable:
        return None
