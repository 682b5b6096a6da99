"""Reloading a pre-fork service: the main process and its workers.

A service that forks workers (oslo.service's ``ProcessLauncher``: one child per
cinder-volume backend) reloads in two levels.  The main process runs its own
cycle first, so a broken file fails the reload *before any worker is
signalled*; then every worker runs its own cycle (its own engine, its own
drain gates and re-initialisers) and the main process collects each result.

The protocol is the one ``cinder-reload signal --wait`` already uses, one
level down: each worker's engine writes its own state file
(``SERVICE.WORKER.reload.json``); the main process sends the worker SIGHUP and
waits for a finished cycle that started after the signal.  A worker that dies
or does not finish in time fails the cycle; it never hangs it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .state import read_state, state_path
from .waiter import finished_after, monotonic, pid_alive

__all__ = ["SignalledWorkers", "WorkerResult", "Workers", "worker_service_name"]


def worker_service_name(service: str, worker: str) -> str:
    """The name a worker's engine (and its state file) goes by."""
    return f"{service}.{worker}"


@dataclass(frozen=True)
class WorkerResult:
    """What one worker's cycle did, as the main process saw it."""

    name: str
    pid: int | None
    ok: bool
    message: str
    reinitialized: tuple[str, ...] = ()
    failed_groups: Mapping[str, str] = field(default_factory=dict)
    report: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "worker": self.name,
            "pid": self.pid,
            "result": "ok" if self.ok else "failed",
            "message": self.message,
            "reinitialized": list(self.reinitialized),
            "failed_groups": dict(self.failed_groups),
        }
        if self.report is not None:
            for key in ("generation", "duration_s", "changed", "not_applied", "pending_restart", "problems"):
                if key in self.report:
                    doc[key] = self.report[key]
        return doc


class Workers(Protocol):
    """The workers of a main process, as the engine drives them."""

    def groups(self) -> Collection[str]:
        """Config groups the workers re-initialise: the main process classifies
        their changes as re-initialisable and leaves the work to the workers."""
        ...

    def reload(self, generation: int, timeout: float) -> list[WorkerResult]:
        """Run one cycle in every worker; one result per worker, never raises."""
        ...


class SignalledWorkers:
    """Workers reached by SIGHUP and read back through their state files.

    ``pids()`` returns the current worker processes by name (it is called at
    every cycle: a respawned worker has a new pid).
    """

    def __init__(
        self,
        service: str,
        pids: Callable[[], Mapping[str, int]],
        state_dir: Path,
        groups: Collection[str] = (),
        *,
        poll: float = 0.05,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.service = service
        self._pids = pids
        self._state_dir = Path(state_dir)
        self._groups = frozenset(groups)
        self._poll = poll
        self._sleep = sleep

    def groups(self) -> Collection[str]:
        return self._groups

    def state_file(self, worker: str) -> Path:
        return state_path(worker_service_name(self.service, worker), self._state_dir)

    def ready_state(self, worker: str, pid: int) -> Mapping[str, Any] | None:
        """The worker's state document once its engine is ready, else None."""
        doc = read_state(self.state_file(worker))
        if doc and doc.get("pid") == pid and doc.get("phase") in ("idle", None) and not doc.get("in_progress"):
            return doc
        return None

    def not_ready(self) -> dict[str, int]:
        """Workers whose engine has not reported ready yet."""
        return {name: pid for name, pid in self._pids().items() if self.ready_state(name, pid) is None}

    def wait_ready(self, timeout: float | None = None, should_stop: Callable[[], bool] = lambda: False) -> bool:
        """Wait until every current worker is ready; False on timeout or stop."""
        deadline = None if timeout is None else monotonic() + timeout
        while True:
            if self._pids() and not self.not_ready():
                return True
            if should_stop() or (deadline is not None and monotonic() >= deadline):
                return False
            self._sleep(self._poll)

    def reload(self, generation: int, timeout: float) -> list[WorkerResult]:
        sent = monotonic()
        deadline = sent + timeout
        waiting: dict[str, tuple[int, int]] = {}  # name -> (pid, generation before)
        results: dict[str, WorkerResult] = {}
        for name, pid in sorted(self._pids().items()):
            doc = self.ready_state(name, pid)
            if doc is None:
                # Starting (or respawned): it reads the files as they are now
                # when it comes up, but it has not reloaded, so say so.
                results[name] = WorkerResult(name, pid, False, f"worker {name} (pid {pid}) is not ready (starting)")
                continue
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                results[name] = WorkerResult(name, pid, False, f"worker {name} (pid {pid}) is not running")
                continue
            waiting[name] = (pid, int(doc.get("generation") or 0))
        while waiting:
            for name, (pid, before) in list(waiting.items()):
                doc = read_state(self.state_file(name))
                if finished_after(doc, pid, before, sent):
                    assert doc is not None
                    results[name] = WorkerResult(
                        name,
                        pid,
                        doc.get("result") == "ok",
                        str(doc.get("message") or doc.get("result")),
                        tuple(doc.get("reinitialized") or ()),
                        dict(doc.get("failed_groups") or {}),
                        doc,
                    )
                    del waiting[name]
                elif not pid_alive(pid):
                    results[name] = WorkerResult(
                        name, pid, False, f"worker {name} (pid {pid}) exited during the reload"
                    )
                    del waiting[name]
            if not waiting:
                break
            if monotonic() >= deadline:
                for name, (pid, _before) in waiting.items():
                    doc = read_state(self.state_file(name))
                    phase = (doc or {}).get("phase", "unknown")
                    results[name] = WorkerResult(
                        name,
                        pid,
                        False,
                        f"worker {name} (pid {pid}) did not finish its reload within {timeout:g}s (phase: {phase})",
                    )
                break
            self._sleep(self._poll)
        return [results[name] for name in sorted(results)]
