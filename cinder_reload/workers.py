"""The workers' step of a reload: what a pre-fork service's main process
asks of its worker processes once it has validated the files.

The main process validates once and applies the result to itself; then the
cycle's ``workers`` step hands a :class:`WorkerPlan` to the service's
:class:`WorkerPool`, which carries it out and returns one
:class:`WorkerResult` per worker.  Two pools exist:

* cinder-volume's backends (cinder_reload/cinder/backends.py): a changed
  backend's worker is drained and replaced by a new one that cinder's own
  start path brings up; the others are only told the live changes.  The
  same pool drives cinder-backup's processes and cinder-api's workers
  (cinder_reload/cinder/api.py).
* :class:`SignalledWorkers` here, for workers that still run a reload
  cycle of their own (under oslo.service's threading backend): SIGHUP, then each
  worker's state file (``SERVICE.WORKER.reload.json``) is read back for a
  cycle that started after the signal.  A worker that dies or does not
  finish in time fails the cycle; it never hangs it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .apply import Overrides
from .diff import ChangeKind, ConfigDiff, OptionChange, OptKey
from .state import read_state, state_path
from .waiter import finished_after, monotonic, pid_alive

if TYPE_CHECKING:
    from oslo_config import cfg

    from .state import WorkerRecord

__all__ = ["SignalledWorkers", "WorkerPlan", "WorkerResult", "Workers", "worker_service_name"]


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
    #: A replaced worker: the pid it had before, how long its RPC consumption
    #: was paused (old worker stops consuming -> new one consumes), and how
    #: long the new worker took from fork to consuming.
    old_pid: int | None = None
    paused_s: float | None = None
    start_s: float | None = None
    #: The old worker's drain: operations in flight when it stopped consuming,
    #: and how long it waited for them to finish.
    drained_in_flight: int | None = None
    drained_s: float | None = None
    #: CLOCK_MONOTONIC when the pause began: with ``paused_s``, when the
    #: backend consumed nothing (a roll replaces one backend after another).
    paused_at: float | None = None
    #: Options outside the workers' groups this result carried out (a backend
    #: added or removed: ``enabled_backends``); see Workers.owned_options().
    applied_options: tuple[OptKey, ...] = ()

    def as_dict(self) -> WorkerRecord:
        doc: WorkerRecord = {
            "worker": self.name,
            "pid": self.pid,
            "result": "ok" if self.ok else "failed",
            "message": self.message,
            "reinitialized": list(self.reinitialized),
            "failed_groups": dict(self.failed_groups),
        }
        if self.old_pid is not None:
            doc["old_pid"], doc["new_pid"] = self.old_pid, self.pid
            doc["paused_s"], doc["start_s"] = self.paused_s, self.start_s
            doc["drained_in_flight"], doc["drained_s"] = self.drained_in_flight, self.drained_s
            if self.paused_at is not None:
                doc["paused_at"] = self.paused_at
        if self.report is not None:
            # What a worker that ran its own cycle reported about it.
            report = self.report
            for key in ("generation", "duration_s", "changed", "not_applied", "pending_restart", "problems"):
                if key in report:
                    doc[key] = report[key]
        return doc


@dataclass(frozen=True)
class WorkerPlan:
    """What the workers are to do, from the main process's validated cycle."""

    generation: int
    diff: ConfigDiff
    #: Worker groups (backends) whose section changed, in order.
    changed_groups: tuple[str, ...]
    #: The main process's pins: a pool releases a group's pin (its new values)
    #: before it starts that group's new worker, and puts it back on failure.
    overrides: Overrides
    timeout: float
    drain_timeout: float

    @property
    def live(self) -> tuple[OptionChange, ...]:
        return self.diff.of_kind(ChangeKind.LIVE)

    def changes_of(self, group: str) -> tuple[OptionChange, ...]:
        return tuple(c for c in self.diff.in_group(group) if c.kind is ChangeKind.REINIT)

    def change(self, key: OptKey) -> OptionChange | None:
        """The change of one option, if it changed."""
        return next((c for c in self.diff.changes if c.key == key), None)


class Workers(Protocol):
    """The workers of a main process, as the cycle's workers step drives them."""

    def groups(self) -> Collection[str]:
        """Config groups the workers own: the main process classifies their
        changes as re-initialisable and leaves the work to the workers."""
        ...

    def reload(self, plan: WorkerPlan) -> list[WorkerResult]:
        """Carry the plan out; one result per worker, never raises."""
        ...

    def shared_groups(self) -> Collection[str]:
        """Those of :meth:`groups` that every worker reads: a change replaces them all, one at a time."""
        ...

    def owned_options(self) -> Collection[OptKey]:
        """Options outside the groups whose change the workers carry out
        (cinder-volume: ``enabled_backends``, a backend added or removed)."""
        ...

    def required_groups(self) -> Collection[str]:
        """Groups that must stay in the files (their removal needs a restart)."""
        ...

    def candidate_groups(self, candidate: cfg.ConfigOpts) -> Collection[str]:
        """Groups the workers will own once ``candidate`` is in effect (backends being added)."""
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

    def shared_groups(self) -> Collection[str]:
        return ()

    def owned_options(self) -> Collection[OptKey]:
        return ()

    def required_groups(self) -> Collection[str]:
        return self._groups

    def candidate_groups(self, candidate: cfg.ConfigOpts) -> Collection[str]:
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

    def reload(self, plan: WorkerPlan) -> list[WorkerResult]:
        timeout = plan.timeout
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
        # The main process now runs with the workers' new values too, so the
        # next cycle compares the files against what is in effect.
        for result in results.values():
            for group in result.reinitialized:
                plan.overrides.set(plan.changes_of(group))
        return [results[name] for name in sorted(results)]
