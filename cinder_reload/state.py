"""The per-service state file: what the last reload did, for people and tools.

``cinder-reload signal --wait`` (the synchronous ``ExecReload=`` and the init
scripts' ``reload``) and ``cinder-reload status`` read it; the engine writes
it atomically (write to a temporary file in the same directory, fsync,
rename) so a reader never sees half a document.
"""

from __future__ import annotations

import os

# Only builtin modules at import time: `cinder-reload signal` (each `systemctl
# reload`, waiter.py) imports this module before its SIGHUP goes out, and json
# (through re) and pathlib (through urllib.parse, ipaddress, fnmatch) cost
# milliseconds there.  They are imported where they are used.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = [
    "DEFAULT_RUNTIME_DIR",
    "STATE_DIR_ENV",
    "ChangeRecord",
    "StateDocument",
    "StateUnreadable",
    "WorkerRecord",
    "load_state",
    "parse_state",
    "read_raw_state",
    "read_state",
    "runtime_dir",
    "runtime_dir_name",
    "state_file_name",
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


DEFAULT_RUNTIME_DIR = "/run/cinder"
#: Overrides where state files live (tests, and services not run by systemd).
STATE_DIR_ENV = "CINDER_RELOAD_STATE_DIR"


def runtime_dir_name(environ: Mapping[str, str] | None = None, override: str | os.PathLike[str] | None = None) -> str:
    """Where state files live: an explicit override, ``$CINDER_RELOAD_STATE_DIR``,
    systemd's ``$RUNTIME_DIRECTORY`` (its first entry: systemd.exec(5) joins
    several with ``:``), else ``/run/cinder``."""
    env = os.environ if environ is None else environ
    if override:
        return os.fspath(override)
    if env.get(STATE_DIR_ENV):
        return env[STATE_DIR_ENV]
    if env.get("RUNTIME_DIRECTORY"):
        return env["RUNTIME_DIRECTORY"].split(":")[0]
    return DEFAULT_RUNTIME_DIR


def state_file_name(service: str, directory: str | os.PathLike[str]) -> str:
    """The state file of ``service`` in ``directory``."""
    if not service or "/" in service or service.startswith("."):
        raise ValueError(f"not a service name: {service!r}")
    return os.path.join(directory, f"{service}.reload.json")


def runtime_dir(environ: Mapping[str, str] | None = None, override: str | os.PathLike[str] | None = None) -> Path:
    """:func:`runtime_dir_name` as a Path."""
    from pathlib import Path

    return Path(runtime_dir_name(environ, override))


def state_path(service: str, directory: str | os.PathLike[str]) -> Path:
    """:func:`state_file_name` as a Path."""
    from pathlib import Path

    return Path(state_file_name(service, directory))


def write_state(path: Path, state: Mapping[str, Any], *, compact: bool = False) -> None:
    """Replace ``path`` atomically with ``state`` as JSON (indented for people; ``compact`` for programs).

    The text is built first and written in one call: ``json.dump`` to the
    file writes every token separately, each through eventlet's green file
    object in a cinder process (~19,000 writes, 20-40 ms, for the running
    document of a 50-backend cinder-volume).  ``compact`` also takes
    CPython's C encoder, which ``indent`` rules out (7x faster on that
    document).
    """
    import json
    import tempfile  # here: the readers (`signal --wait`, ExecReload=) never need it

    if compact:
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))
    else:
        text = json.dumps(state, indent=2, sort_keys=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
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


def read_raw_state(path: str | os.PathLike[str]) -> bytes | None:
    """The state file's bytes, None when there is none (yet); raises
    :class:`StateUnreadable` with the reason when there is something at
    ``path`` that cannot be read (a directory, no permission)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StateUnreadable(f"{path} is a directory, not a state file") from None
    except PermissionError:
        raise StateUnreadable(f"{path} is not readable by uid {os.getuid()} (permission denied)") from None
    except OSError as exc:
        raise StateUnreadable(f"{path} cannot be read: {exc.strerror}") from None


def parse_state(raw: bytes, path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state document from the bytes read at ``path``; :class:`StateUnreadable` if it is not one."""
    import json

    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StateUnreadable(f"{path} is not a state file (not JSON: {exc})") from None
    if not isinstance(data, dict):
        raise StateUnreadable(f"{path} is not a state file (JSON, but not an object)")
    return data


def load_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state document, None when there is none (yet); raises
    :class:`StateUnreadable` with the reason for anything else at ``path``
    (a directory, no permission, not JSON, not a JSON object)."""
    raw = read_raw_state(path)
    return None if raw is None else parse_state(raw, path)


def read_state(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state document, or None when there is none or it cannot be read.

    For pollers (``signal --wait``, a main process reading its workers'):
    the engine replaces the file atomically, so garbage there now is gone
    after its next write.
    """
    try:
        return load_state(path)
    except StateUnreadable:
        return None
