"""cinder-volume's backends in the main process: replace a changed backend's worker.

The spec chose "everything is shut down, the memory is cleaned up" over
flushing caches in place ("things could get missed"), and so do nginx,
Apache's graceful restart and gunicorn: a changed backend's worker is
drained and exits (its driver, connections, greenthreads and memory go with
it), and a new worker comes up through cinder's *own* start path with the
new configuration.  Unchanged backends keep their process and do nothing
but take the live (mutable) values the main process validated.

For one changed backend, in order (the reason for each step is the next):

1. release the backend's pinned options (its new values) and run cinder's
   own ``cinder.cmd.volume._launch_service()`` for it in a thread, as
   cinder-volume's ``main()`` does at start: ``Service.create()`` (the
   manager, the driver object, the service record) runs in this process
   while step 2 goes on; the launcher holds the fork (``may_fork``);
2. retire the old worker (backend_worker.py): it stops consuming, its
   queued messages wait in the broker, in-flight work finishes; a drain that
   does not finish in ``drain_timeout`` leaves it serving, the fork is
   cancelled, and the reload fails for that backend with what was still in
   flight.  A drained worker stays alive, quiet (no RPC, its periodic tasks
   skip their turn), until step 4;
3. fork: cinder's ``init_host`` cleans up operations it finds unfinished,
   so it runs only once the old worker has none in flight and can start
   none;
4. the new worker reports ``ready`` once its driver initialised and its RPC
   servers consume: the old one leaves through cinder's own graceful stop
   and the reload waits until it is gone.  ``failed`` (with the driver's
   reason), no report within ``worker_timeout``, or no fork because
   ``Service.create()`` raised: the pins go back and the old worker, which
   never stopped running, consumes again (if it died meanwhile, the same
   start path brings the backend up on its previous values).

oslo.service respawns a worker that dies from the ``ServiceWrapper`` it was
launched with (cotyledon: from the service it was ``add()``-ed with); each
launch here makes a new one, so a crashed worker comes back with the
configuration of its last successful launch.  The fork itself is the
launcher's: eventlet's ``_start_child()`` (launchers.py), cotyledon's
supervisor thread (threading_backend.CotyledonForks); both hand this class
the same WorkerHandle, and ``WorkerHandle.wrap.workers`` says whether a dead
worker is forked again.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from typing import Any

from ..channel import Channel, ChannelClosed, Message
from ..diff import OptionChange, OptKey
from ..waiter import pid_alive
from ..workers import WorkerPlan, WorkerResult
from .logcapture import capturing_errors

__all__ = ["BackendWorkers", "WorkerHandle"]

LOG = logging.getLogger(__name__)

#: How long a retired worker may take to exit after it drained (cinder's own
#: graceful stop lets a running periodic task finish) before it is killed.
EXIT_GRACE = 15.0


@dataclass
class WorkerHandle:
    """One forked backend worker, as the main process sees it."""

    name: str
    pid: int
    wrap: Any  # oslo.service's ServiceWrapper: its ``workers`` count decides respawning
    channel: Channel
    forked_at: float
    strict: bool
    outcome: Message | None = None  # the worker's "ready" or "failed" event
    started: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    replies: queue.Queue[Message] = field(default_factory=queue.Queue)
    _next_id: int = 0

    def listen(self) -> None:
        threading.Thread(target=self._read, name=f"reload-channel-{self.name}-{self.pid}", daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                message = self.channel.receive()
                if "event" in message:
                    self.outcome = message
                    self.started.set()
                else:
                    self.replies.put(message)
        except ChannelClosed:
            pass
        finally:
            self.channel.close()
            self.exited.set()
            self.started.set()  # a worker that died before reporting has an outcome too: none

    @property
    def ready_at(self) -> float:
        """CLOCK_MONOTONIC when the worker reported its start (now, if it did not say)."""
        return float((self.outcome or {}).get("at") or time.monotonic())

    @property
    def ready(self) -> bool:
        return bool(self.outcome and self.outcome.get("event") == "ready")

    def request(self, op: str, wait: float, **fields: Any) -> Message:
        """Send one request and wait for its answer; ChannelClosed if the worker is gone."""
        return self.reply_to(self.send_request(op, wait, **fields))

    def send_request(self, op: str, wait: float, **fields: Any) -> tuple[str, int, float]:
        """Send one request; what :meth:`reply_to` needs to wait for its answer (up to ``wait`` seconds)."""
        self._next_id += 1
        ident = self._next_id
        deadline = time.monotonic() + wait
        # CLOCK_MONOTONIC is one clock for every process on the host: a
        # worker that reads this after we gave up (SIGSTOPped, starved) must
        # not act on it, or the reload reported failed would apply after all.
        self.channel.send({"op": op, "id": ident, "deadline": deadline, **fields})
        return op, ident, deadline

    def reply_to(self, sent: tuple[str, int, float]) -> Message:
        """The answer to a request :meth:`send_request` sent; TimeoutError past its deadline."""
        op, ident, deadline = sent
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer to {op!r} in time")
            try:
                reply = self.replies.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                if self.exited.is_set():
                    raise ChannelClosed(f"worker {self.name} (pid {self.pid}) exited") from None
                continue
            if reply.get("id") == ident:
                return reply

    def wait_exited(self, timeout: float) -> bool:
        """Until the process is gone (its channel ended and it is no longer running).

        Then a moment more, until oslo.service's wait loop reaped it: after
        the reload no process of the old worker is left, not even a zombie.
        """
        deadline = time.monotonic() + timeout
        self.exited.wait(timeout)
        # Short polls: this wait is on the path to READY=1 (the reap itself
        # comes within oslo.service's 10 ms wait interval).
        while pid_alive(self.pid) and time.monotonic() < deadline:
            time.sleep(0.002)
        if pid_alive(self.pid):
            return False
        reaped_by = min(deadline, time.monotonic() + 1.0)
        while os.path.exists(f"/proc/{self.pid}") and time.monotonic() < reaped_by:
            time.sleep(0.002)
        return True

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def ensure_gone(self, grace: float) -> None:
        """Until the process is gone; after ``grace`` seconds it is killed."""
        if not self.wait_exited(grace):
            LOG.warning("reload: worker %s (pid %d) did not exit within %gs; killing it", self.name, self.pid, grace)
            self.kill()
            self.wait_exited(5.0)

    def retire(self, drain_timeout: float) -> Callable[[], Message]:
        """Ask the worker to stop consuming and drain (backend_worker.BackendWorker.retire).

        Returns at once, with the function that waits for the worker's reply:
        the worker drains in its own process while the caller goes on.
        """
        try:
            sent = self.send_request("retire", drain_timeout + 10.0, timeout=drain_timeout)
        except ChannelClosed as exc:
            failed: Message = {"ok": False, "reason": f"no answer from the worker: {exc}"}
            return lambda: failed

        def reply() -> Message:
            try:
                return self.reply_to(sent)
            except (ChannelClosed, TimeoutError) as exc:
                return {"ok": False, "reason": f"no answer from the worker: {exc}"}

        return reply


#: The option that says which backends run: cinder-volume's workers step adds
#: and removes backends when it changes, instead of leaving it to a restart.
ENABLED_BACKENDS: OptKey = ("DEFAULT", "enabled_backends")

#: Sections every backend's worker reads (cinder's own options, the drivers'
#: shared defaults, the transports'): a change there is applied by replacing
#: every worker, one at a time.  Options the main process set up for all of
#: them and cannot set up again (logging, process management) are
#: restart-only (options.py) and never reach this step.
SHARED_GROUPS: tuple[str, ...] = (
    "DEFAULT",
    "backend_defaults",
    "database",
    "oslo_messaging_notifications",
    "oslo_messaging_rabbit",
    "oslo_messaging_kafka",
)

#: The [DEFAULT] options of the transports; with any option of an
#: ``oslo_messaging_*`` section they make a roll set the transports up again.
_TRANSPORT_DEFAULTS = frozenset({"transport_url", "rpc_response_timeout", "control_exchange"})


def _moves_transport(change: OptionChange) -> bool:
    return change.group.startswith("oslo_messaging_") or (
        change.group == "DEFAULT" and change.name in _TRANSPORT_DEFAULTS
    )


_NOT_STARTED = "not started: cinder could not create its service (see the log); the next reload tries again"


def _live_values(plan: WorkerPlan) -> list[Message]:
    """The reload's live changes, as an ``apply`` request carries them to a worker."""
    return [{"group": c.group, "name": c.name, "value": c.new, "secret": c.secret} for c in plan.live if not c.raw]


def _backend_list(value: Any) -> list[str]:
    return [b for b in (value or []) if b]


class BackendWorkers:
    """The workers' step of cinder-volume's reload (workers.Workers)."""

    def __init__(
        self,
        launch: Callable[[str], None],
        backends: Callable[[], Collection[str]],
        membership: Callable[[str, bool], None] | None = None,
        *,
        reset_transports: Callable[[], None] | None = None,
        reset_database: Callable[[], None] | None = None,
        shared: Callable[[], Collection[OptKey]] | None = None,
        launched_by: str = "cinder.cmd.volume",
        overlap: bool = False,
    ) -> None:
        #: cinder's own start path for one worker (cinder.cmd.volume._launch_service).
        self._launch = launch
        #: Drops this process's RPC and notification transports, so that the
        #: next start path sets them up from the configuration as it is then
        #: (cinder's Service.__init__ calls rpc.init() when there are none).
        self._reset_transports = reset_transports
        #: The same for the database engine (the next query starts a new one).
        self._reset_database = reset_database
        self._backends = backends
        #: Adds (True) or removes (False) a backend where the launcher names
        #: its workers; None: backends are fixed until a restart.
        self._membership = membership
        #: Identical workers (cinder-backup's processes) rather than one per
        #: config section: these options, used by every worker, are carried
        #: out by replacing the workers one after the other (_roll).
        self._shared = shared
        #: The module whose error records say why cinder could not create a worker's service.
        self.launched_by = launched_by
        #: Identical workers that own nothing but their connections (cinder-api's,
        #: on one shared listening socket): every reload starts a new set
        #: first and retires the old one once it is up (_replace_overlapping).
        self._overlap = overlap
        #: Counts the sets of new workers started (overlap): the launcher builds
        #: one service per set and forks every worker of the set from it.
        self.batch = 0
        self.handles: dict[str, WorkerHandle] = {}
        self._strict: set[str] = set()
        #: Launches a reload started whose fork waits for its go (_Launch).
        self._held: dict[str, _Launch] = {}
        #: Live values a worker did not take (it did not answer in time, or
        #: refused), by (group, option): the main process runs them, so no
        #: later diff shows them; the next reload sends them again.
        self._owed: dict[str, dict[tuple[str, str], Message]] = {}
        self._lock = threading.Lock()

    # -- what the launcher tells us --------------------------------------------
    def strict_next(self, name: str) -> bool:
        """Whether the next fork of ``name`` is a reload's new worker (and clear it)."""
        with self._lock:
            if name in self._strict:
                self._strict.discard(name)
                return True
            return False

    def forked(self, handle: WorkerHandle) -> None:
        with self._lock:
            self.handles[handle.name] = handle
            # A new process inherits the main process's values: it owes nothing.
            self._owed.pop(handle.name, None)
        if handle.strict:
            # Not respawned by oslo.service until it proved it can come up:
            # a driver that cannot start would otherwise be forked again and
            # again, each time consuming nothing but a database connection.
            handle.wrap.workers = 0
        handle.listen()

    def channels(self) -> list[Channel]:
        with self._lock:
            return [h.channel for h in self.handles.values()]

    # -- start -----------------------------------------------------------------
    def wait_ready(self, should_stop: Callable[[], bool] = lambda: False, launched: Collection[str] = ()) -> bool:
        """Until every backend cinder launched reported its start; False if stopped first.

        cinder's own start skips a backend whose ``Service.create()`` raised
        (it logs it and goes on with the others): there is no worker to wait
        for, and waiting would keep READY=1 from ever being sent.
        ``launched``: backends launched but maybe not forked yet (cotyledon
        forks them one by one once its manager runs): each must have a worker.
        """
        while not should_stop():
            with self._lock:
                handles = list(self.handles.values())
                forked = set(launched) <= set(self.handles)
            if handles and forked and all(h.started.is_set() for h in handles):
                return True
            time.sleep(0.05)
        return False

    def missing(self) -> list[str]:
        """Backends in the configuration with no worker (cinder could not create their service)."""
        with self._lock:
            return sorted(set(self._backends()) - set(self.handles))

    def describe(self) -> list[dict[str, Any]]:
        """Each backend's worker as started, for the state file."""
        with self._lock:
            handles = sorted(self.handles.values(), key=lambda h: h.name)
        started = [
            {
                "worker": h.name,
                "pid": h.pid,
                "result": "ok",
                "message": f"{h.name} (pid {h.pid}): started",
                "initialized": bool((h.outcome or {}).get("initialized")),
                "reason": (h.outcome or {}).get("reason"),
            }
            for h in handles
        ]
        return started + [
            {"worker": name, "pid": None, "result": "failed", "message": f"{name}: {_NOT_STARTED}"}
            for name in self.missing()
        ]

    def summary(self) -> str:
        with self._lock:
            handles = sorted(self.handles.values(), key=lambda h: h.name)
        parts = []
        for h in handles:
            text = f"{h.name} (pid {h.pid})"
            if h.outcome and not h.outcome.get("initialized", True):
                text += f": driver not initialised: {h.outcome.get('reason')}"
            parts.append(text)
        parts += [f"{name}: {_NOT_STARTED}" for name in self.missing()]
        return ", ".join(parts)

    # -- the reload ------------------------------------------------------------
    def groups(self) -> Collection[str]:
        # Identical workers are named backup1..N: no config section of theirs.
        if self._shared is not None:
            return frozenset()
        return frozenset(self._backends()) | frozenset(self.shared_groups())

    def shared_groups(self) -> Collection[str]:
        # Backends (one worker per section): identical workers roll on
        # their own options (_roll_identical).
        return frozenset(SHARED_GROUPS) if self._membership is not None and self._shared is None else frozenset()

    def owned_options(self) -> Collection[OptKey]:
        if self._shared is not None:
            return tuple(self._shared())
        return (ENABLED_BACKENDS,) if self._membership is not None else ()

    def required_groups(self) -> Collection[str]:
        # Which sections must exist follows enabled_backends (a candidate
        # check names a listed backend without one); a backend taken out of
        # the list may lose its section.  Without membership changes there
        # are no shared groups either (shared_groups()), and identical
        # workers (backup1..N) have no section at all (groups()).
        return () if self._membership is not None else self.groups()

    def candidate_groups(self, candidate: Any) -> Collection[str]:
        if self._membership is None:
            return self.groups()
        return frozenset(self.groups()) | frozenset(_backend_list(candidate.enabled_backends))

    def _connections_follow(self, shared: tuple[OptionChange, ...]) -> None:
        """Where a roll changes the transports or the database: the next worker's start
        connects with the values now in force.

        The old workers keep what they were forked with (their own copies,
        connected in their own process) until they are replaced.
        """
        if self._reset_transports is not None and any(_moves_transport(c) for c in shared):
            self._reset_transports()
        if self._reset_database is not None and any(c.group == "database" for c in shared):
            self._reset_database()

    def _shared_changes(self, plan: WorkerPlan) -> tuple[OptionChange, ...]:
        """Changes of the sections every worker reads, but not those this step carries out itself."""
        owned = set(self.owned_options())
        changes = (c for group in self.shared_groups() for c in plan.changes_of(group))
        return tuple(c for c in changes if c.key not in owned)

    def reload(self, plan: WorkerPlan) -> list[WorkerResult]:
        if self._overlap:
            return self._replace_overlapping(plan)
        if self._shared is not None:
            return self._roll_identical(plan)
        membership = plan.change(ENABLED_BACKENDS) if self._membership is not None else None
        old = _backend_list(membership.old) if membership else []
        new = _backend_list(membership.new) if membership else []
        added = [b for b in new if b not in old and b not in self.handles]
        removed = [b for b in old if b not in new and b in self.handles]
        changed = [g for g in plan.changed_groups if g in self.handles and g not in removed]
        # A backend whose service cinder could not create at start (or at an
        # earlier reload's replacement) has no worker: each reload tries again.
        retried = [b for b in self.missing() if b not in removed and (membership is None or b in new)]
        results: dict[str, WorkerResult] = {}
        shared = self._shared_changes(plan)
        # From here on a new worker inherits the new shared values: a backend
        # added (or started again) by this reload too.
        undo_shared = plan.overrides.set(shared) if shared else {}
        self._connections_follow(shared)
        if membership is not None:
            membership_results = self._change_membership(plan, membership, added, removed)
            results.update(membership_results)
        for name in retried:
            results[name] = self.add(name, plan, member=False)

        if shared:
            running = sorted(set(self.handles) - set(removed))
            results.update(self._roll(plan, shared, undo_shared, running, results))
            return [results[name] for name in sorted(results)]

        # Each backend is its own resource (its queue, its array): changed
        # ones are replaced side by side, the others are never paused.
        threads = _side_by_side(plan, [(name, self.replace) for name in changed], results)
        live = _live_values(plan)
        # An unchanged backend does nothing at all when only other backends
        # changed.  It is told when there are live values to take, and on a
        # reload that changed nothing anywhere: that SIGHUP is how operators
        # make cinder drop its cached RPC version pins after a rolling
        # upgrade, and the worker's reset() does it, as oslo.service's did.
        untouched = bool(changed or added or removed or retried) and not live
        for name in sorted(set(self.handles) - set(changed) - set(added) - set(removed) - set(retried)):
            if untouched and not self.owes(name):
                pid = self.handles[name].pid
                results[name] = WorkerResult(name, pid, True, f"{name} (pid {pid}): unchanged")
            else:
                results[name] = self.tell(name, live, plan)
        for thread in threads:
            thread.join()
        return [results[name] for name in sorted(results)]

    def _roll_identical(self, plan: WorkerPlan) -> list[WorkerResult]:
        """Identical workers: a change of the options they share replaces them one after the other.

        One at a time, so the service never has more than one worker paused
        (its other workers consume the shared queue meanwhile).  The first
        worker that cannot be replaced (no drain in time, a new worker that
        does not come up) stops the roll: it keeps serving on its previous
        configuration, the workers after it are not touched and the reload
        fails.  The workers replaced before it run the new values (their
        results say so); the options stay pinned to the previous ones and
        count as not applied, so the next reload replaces every worker again.
        """
        assert self._shared is not None
        changes = tuple(c for key in self._shared() if (c := plan.change(key)) is not None)
        live = _live_values(plan)
        names = sorted(self.handles)
        results: list[WorkerResult] = []
        if not changes:
            results += [self.tell(name, live, plan) for name in names]
            return results + [WorkerResult(name, None, False, f"{name}: {_NOT_STARTED}") for name in self.missing()]
        stopped: str | None = None
        for name in names:
            if stopped is not None:
                pid = self.handles[name].pid
                results.append(
                    WorkerResult(name, pid, False, f"{name} (pid {pid}): not replaced ({stopped} could not be)")
                )
                continue
            try:
                done = self.replace(name, plan)
            except Exception as exc:  # a bug must not leave the others unreported
                LOG.exception("reload #%d: %s: internal error", plan.generation, name)
                done = WorkerResult(name, None, False, f"internal error: {type(exc).__name__}: {exc}")
            results.append(done)
            if not done.ok:
                stopped = name
        if stopped is None:
            results = [replace(r, applied_options=tuple(c.key for c in changes)) for r in results]
        else:
            # What runs is mixed: the options say what the next reload must redo.
            plan.overrides.set(changes, to_new=False)
        return results

    def _replace_overlapping(self, plan: WorkerPlan) -> list[WorkerResult]:
        """Every worker replaced, the new ones first: all of them up, then the old ones retire.

        For workers that share a listening socket (cinder-api's, api.py): a
        new worker accepts from the moment it is up, so the service never
        has fewer workers accepting, and an old one only stops accepting
        once all its successors do; it answers what its connections still
        bring, then leaves through cinder's graceful stop.  All or nothing:
        when one new worker does not come up, the ones that did are retired
        the same way, the old ones (never paused) keep serving on the
        previous configuration, and the reload fails with the reason.
        """
        assert self._shared is not None
        changes = tuple(c for key in self._shared() if (c := plan.change(key)) is not None)
        names = sorted(self.handles)
        olds = {name: self.handles[name] for name in names}
        undo = plan.overrides.set(changes)  # the values the new workers start with
        self.batch += 1
        new: dict[str, WorkerHandle] = {}
        failure: tuple[str, str] | None = None
        for name in names:
            handle, why = _Launch(self, name, strict=True).fork(plan.timeout)
            if handle is None or why is not None:
                failure = (name, why or "unknown")
                break
            new[name] = handle
        if failure is not None:
            failed_name, why = failure
            plan.overrides.undo(undo)
            LOG.error(
                "reload #%d: a new worker (%s) did not come up (%s); the running workers keep serving",
                plan.generation,
                failed_name,
                why,
            )
            for handle in new.values():
                handle.retire(plan.drain_timeout)()
                self._retire(handle)
            with self._lock:
                self.handles.update(olds)
            live = _live_values(plan)
            results = []
            for name in names:
                told = self.tell(name, live, plan) if live else None
                what = f"new worker failed: {why}" if name == failed_name else f"not replaced ({failed_name} failed)"
                results.append(
                    WorkerResult(
                        name,
                        olds[name].pid,
                        False,
                        f"{name}: {what}; its worker (pid {olds[name].pid}) keeps serving on the previous "
                        "configuration" + (f" ({told.message})" if told is not None else ""),
                        failed_groups={name: why} if name == failed_name else {},
                    )
                )
            return results
        for name in names:
            olds[name].wrap.workers = 0  # their exit is ours, not oslo.service's respawn
            new[name].wrap.workers = 1
        # Side by side: each old worker stops accepting and answers what it holds.
        drains = {name: olds[name].retire(plan.drain_timeout) for name in names}
        results = []
        for name in names:
            old, handle = olds[name], new[name]
            reply = drains[name]()
            self._retire(old)
            ready_at = handle.ready_at
            note = "" if reply.get("ok") else f" (old worker: {reply.get('reason')})"
            results.append(
                WorkerResult(
                    name,
                    handle.pid,
                    True,
                    f"{name}: replaced by a new worker{note}",
                    old_pid=old.pid,
                    paused_s=0.0,
                    start_s=round(ready_at - handle.forked_at, 6),
                    drained_in_flight=reply.get("in_flight"),
                    drained_s=reply.get("drained_s"),
                    applied_options=tuple(c.key for c in changes),
                )
            )
        LOG.info(
            "reload #%d: %d worker(s) replaced: %s",
            plan.generation,
            len(names),
            ", ".join(f"{r.old_pid} -> {r.pid}" for r in results),
        )
        return results

    def _change_membership(
        self, plan: WorkerPlan, membership: OptionChange, added: list[str], removed: list[str]
    ) -> dict[str, WorkerResult]:
        """Backends added to or removed from ``enabled_backends``: started, or drained and stopped.

        ``enabled_backends`` stays pinned to what actually runs: the old list
        plus the backends that came up, minus the ones that stopped.  Only
        when every one did is the change applied; otherwise the next reload
        sees the difference again and retries what is missing.
        """
        results: dict[str, WorkerResult] = {}
        steps: list[tuple[str, Step]] = [(name, self.add) for name in added]
        steps += [(name, self.remove) for name in removed]
        for thread in _side_by_side(plan, steps, results):
            thread.join()
        running = [b for b in _backend_list(membership.old) if not (b in removed and results[b].ok)]
        running += [b for b in added if results[b].ok]
        if all(results[name].ok for name in added + removed):
            plan.overrides.set([membership])  # the new list, as the files say
            for name in added + removed:
                done = results[name]
                results[name] = replace(done, applied_options=(*done.applied_options, ENABLED_BACKENDS))
        else:
            plan.overrides.set([replace(membership, new=running)])
        return results

    def add(self, name: str, plan: WorkerPlan, *, member: bool = True) -> WorkerResult:
        """A backend new in ``enabled_backends`` (or one with no worker): it comes up through cinder's start path.

        ``member``: a new backend, which a failure leaves out of the list;
        else one already listed, which stays listed (and is retried).
        """
        LOG.info("reload #%d: backend %s: starting its worker", plan.generation, name)
        if member and self._membership is not None:
            self._membership(name, True)
        undo = plan.overrides.set(plan.changes_of(name))  # its section as the files say (a retry after a failure)
        new, why = _Launch(self, name, strict=True).fork(plan.timeout)
        if new is not None and why is None:
            new.wrap.workers = 1
            ready_at = new.ready_at
            return WorkerResult(
                name,
                new.pid,
                True,
                f"{name}: added (pid {new.pid}, up in {ready_at - new.forked_at:.2f}s)",
                reinitialized=(name,),
                start_s=round(ready_at - new.forked_at, 6),
            )
        # Not half-added: no worker, not counted, not in the list.
        plan.overrides.undo(undo)
        with self._lock:
            if new is not None and self.handles.get(name) is new:
                del self.handles[name]
        if member and self._membership is not None:
            self._membership(name, False)
        what = "added" if member else "started"
        LOG.error("reload #%d: backend %s could not be %s: %s", plan.generation, name, what, why)
        return WorkerResult(name, None, False, f"{name}: could not be {what}: {why}", failed_groups={name: str(why)})

    def remove(self, name: str, plan: WorkerPlan) -> WorkerResult:
        """A backend gone from ``enabled_backends``: drained, then its worker leaves."""
        assert self._membership is not None
        old = self.handles[name]
        LOG.info("reload #%d: backend %s removed: draining its worker (pid %d)", plan.generation, name, old.pid)
        old.wrap.workers = 0
        reply = old.retire(plan.drain_timeout)()
        if not reply.get("ok") and not old.exited.is_set():
            old.wrap.workers = 1
            reason = f"could not drain: {reply.get('reason')}"
            return WorkerResult(name, old.pid, False, f"{name}: not removed, {reason}", failed_groups={name: reason})
        self._retire(old)
        with self._lock:
            if self.handles.get(name) is old:
                del self.handles[name]
                self._owed.pop(name, None)
        self._membership(name, False)
        # Its section's options (gone from the files) are no longer pinned to
        # what the stopped worker ran, and count as done, not as "not applied".
        gone = plan.changes_of(name)
        plan.overrides.set(gone)
        return WorkerResult(
            name,
            None,
            True,
            f"{name}: removed (pid {old.pid} drained and stopped)",
            old_pid=old.pid,
            applied_options=tuple(c.key for c in gone),
        )

    def owes(self, name: str) -> bool:
        """Whether ``name``'s worker missed live values an earlier reload sent."""
        with self._lock:
            return bool(self._owed.get(name))

    def tell(self, name: str, live: list[Message], plan: WorkerPlan) -> WorkerResult:
        """An unchanged backend: the live values, and those it missed at an earlier reload."""
        handle = self.handles[name]
        with self._lock:
            owed = dict(self._owed.get(name, {}))
        values = {**owed, **{(m["group"], m["name"]): m for m in live}}
        try:
            reply = handle.request("apply", plan.timeout, options=list(values.values()))
        except (ChannelClosed, TimeoutError) as exc:
            failure: str | None = f"worker {name} (pid {handle.pid}) did not take the change: {exc}"
        else:
            failure = None if reply.get("ok") else f"worker {name} (pid {handle.pid}): {reply.get('reason')}"
        with self._lock:
            if failure is None:
                self._owed.pop(name, None)
            else:
                # It runs its previous values until a reload reaches it (or it is replaced).
                self._owed[name] = values
        if failure is not None:
            return WorkerResult(name, handle.pid, False, failure)
        what = f"{len(values)} live option(s) applied" if values else "unchanged"
        if owed:
            what += f" ({len(owed)} missed at an earlier reload)"
        return WorkerResult(name, handle.pid, True, f"{name} (pid {handle.pid}): {what}")

    def _roll(
        self,
        plan: WorkerPlan,
        shared: tuple[OptionChange, ...],
        undo_shared: dict[OptKey, Any],
        names: list[str],
        earlier: dict[str, WorkerResult],
    ) -> dict[str, WorkerResult]:
        """A change every backend reads: each worker replaced in turn, never two paused at once.

        Each new worker inherits the new shared values (and its own section's)
        from this process.  The first one that does not come up stops the
        roll (its old worker consumes again, as in :meth:`replace`), and the
        backends replaced before it are replaced once more, on the previous
        values: after the reload the backends run the configuration they ran
        before, and the reload reports why.  ``earlier``: backends this
        reload already started (added, or started again), on the new values.
        """
        groups = tuple(sorted({c.group for c in shared}))
        LOG.info(
            "reload #%d: %s changed: replacing the workers of %s one at a time",
            plan.generation,
            ", ".join(f"[{g}]" for g in groups),
            ", ".join(names),
        )
        results: dict[str, WorkerResult] = {}
        done: list[str] = []
        failed: WorkerResult | None = None
        for name in names:
            result = earlier.get(name) or self.replace(name, plan)
            results[name] = result
            if not result.ok:
                failed = result
                break
            done.append(name)
        if failed is None:
            return {name: replace(r, reinitialized=tuple(r.reinitialized) + groups) for name, r in results.items()}
        reason = failed.failed_groups.get(failed.name) or failed.message
        why = f"the new worker of {failed.name} did not come up ({reason})"
        plan.overrides.undo(undo_shared)
        self._connections_follow(shared)  # the put-back workers on the previous transports
        results[failed.name] = replace(failed, failed_groups={**failed.failed_groups, **dict.fromkeys(groups, why)})
        for name in reversed(done):
            if name in earlier:
                # Started by this reload on the new shared values: it stays so, and says so.
                results[name] = replace(
                    earlier[name], message=f"{earlier[name].message}; on the new {', '.join(groups)} values: {why}"
                )
                continue
            back = self.replace(name, plan, to_new=False)
            state = (
                f"put back on the previous configuration (pid {back.pid})"
                if back.ok
                else f"could not be put back on the previous configuration: {back.message}"
            )
            results[name] = replace(
                back,
                message=f"{name}: {state}: {why}",
                reinitialized=(),
                failed_groups={name: why} if plan.changes_of(name) or not back.ok else {},
            )
        for name in names[names.index(failed.name) + 1 :]:
            told = self.tell(name, _live_values(plan), plan)  # the live values, as everywhere else
            results[name] = replace(
                told,
                message=f"{told.message}; kept its worker on the previous configuration: {why}",
                failed_groups={**told.failed_groups, **({name: why} if plan.changes_of(name) else {})},
            )
        return results

    def replace(self, name: str, plan: WorkerPlan, *, to_new: bool = True) -> WorkerResult:
        """A fresh worker for ``name`` on its section's new values (``to_new``) or its previous ones."""
        old = self.handles[name]
        old.wrap.workers = 0  # its exit is ours to answer, not oslo.service's respawn
        # The retire request before anything else here: with many backends the
        # drain is what the fork waits for, and the overrides and the log line
        # took 1 ms (2 backends) to 4 ms (50) before it went out.
        paused_at = time.monotonic()
        drained = old.retire(plan.drain_timeout)
        LOG.info("reload #%d: backend %s changed: replacing its worker (pid %d)", plan.generation, name, old.pid)
        # The values its new worker starts with (``to_new``), or the previous ones (a put-back).
        undo = plan.overrides.set(self._changes_for(name, plan), to_new=to_new)
        # cinder's start path runs up to the fork while the old worker drains:
        # Service.create() (the manager, the driver object, the service
        # record) needs no quiet backend, only the fork does (init_host).
        # The retire request goes out first: Service.create() holds this
        # process for tens of milliseconds without yielding (seen: 12-45 ms
        # before the request left when the launch went first).
        launch = _Launch(self, name, strict=True)
        reply = drained()
        paused_at = float(reply.get("stopped_at") or paused_at)
        if not reply.get("ok"):
            launch.cancel()
            plan.overrides.undo(undo)
            if not old.exited.is_set():
                old.wrap.workers = 1
                return WorkerResult(
                    name,
                    old.pid,
                    False,
                    f"{name}: could not drain: {reply.get('reason')}",
                    failed_groups={name: str(reply.get("reason"))},
                )
            return self._start_previous(
                name, plan, old, paused_at, f"worker {name} (pid {old.pid}) exited while draining"
            )
        new, why = launch.fork(plan.timeout)
        if new is not None and why is None:
            self._retire(old)
            new.wrap.workers = 1
            LOG.info(
                "reload #%d: backend %s: its new worker (pid %d) consumes, the old one (pid %d) is gone",
                plan.generation,
                name,
                new.pid,
                old.pid,
            )
            ready_at = new.ready_at
            return WorkerResult(
                name,
                new.pid,
                True,
                f"{name}: replaced by a new worker",
                reinitialized=(name,),
                old_pid=old.pid,
                paused_s=round(ready_at - paused_at, 6),
                start_s=round(ready_at - new.forked_at, 6),
                drained_in_flight=reply.get("in_flight"),
                drained_s=reply.get("drained_s"),
                paused_at=round(paused_at, 6),
            )
        failure = why or "unknown"
        plan.overrides.undo(undo)
        try:
            resumed = old.request("resume", 30.0)
        except (ChannelClosed, TimeoutError) as exc:
            resumed = {"ok": False, "reason": str(exc)}
        if not resumed.get("ok"):
            return self._start_previous(name, plan, old, paused_at, failure)
        with self._lock:
            self.handles[name] = old  # the failed successor's handle is gone with it
        old.wrap.workers = 1
        # It keeps its previous values, but not the ones in force everywhere else.
        told = self.tell(name, _live_values(plan), plan) if plan.live else None
        LOG.error(
            "reload #%d: the new worker of %s did not come up (%s); its worker (pid %d) consumes again "
            "on its previous configuration",
            plan.generation,
            name,
            failure,
            old.pid,
        )
        return WorkerResult(
            name,
            old.pid,
            False,
            f"{name}: new worker failed: {failure}; back on its previous configuration in its running "
            f"worker (pid {old.pid}), which consumes again"
            + (f" ({told.message})" if told is not None else ""),
            failed_groups={name: failure},
            old_pid=old.pid,
            paused_s=round(float(resumed.get("at") or time.monotonic()) - paused_at, 6),
            start_s=None,
            paused_at=round(paused_at, 6),
        )

    def _changes_for(self, name: str, plan: WorkerPlan) -> tuple[OptionChange, ...]:
        """What a new worker of ``name`` starts with: its section's changes, or the shared options'."""
        if self._shared is None:
            return plan.changes_of(name)
        return tuple(c for key in self._shared() if (c := plan.change(key)) is not None)

    def _retire(self, old: WorkerHandle) -> None:
        """The successor is up: the old worker leaves through cinder's own graceful stop."""
        try:
            old.channel.send({"op": "exit"})
        except ChannelClosed:
            pass
        old.ensure_gone(EXIT_GRACE)

    def _start_previous(
        self, name: str, plan: WorkerPlan, old: WorkerHandle, paused_at: float, failure: str
    ) -> WorkerResult:
        """The old worker is gone and no new one came up: start one on the previous values."""
        LOG.error(
            "reload #%d: %s: %s; starting its worker again on its previous configuration",
            plan.generation,
            name,
            failure,
        )
        old.ensure_gone(EXIT_GRACE)
        back, back_why = _Launch(self, name, strict=False).fork(plan.timeout)
        if back is not None and back_why is None:
            back.wrap.workers = 1
            state = f"back on its previous configuration (pid {back.pid})"
            if back.outcome and not back.outcome.get("initialized", True):
                state += f", but its driver did not initialise either: {back.outcome.get('reason')}"
        else:
            state = f"and starting it on its previous configuration failed too: {back_why}"
        ready_at = back.ready_at if back else time.monotonic()
        return WorkerResult(
            name,
            back.pid if back else None,
            False,
            f"{name}: {failure}; {state}",
            failed_groups={name: failure},
            old_pid=old.pid,
            paused_s=round(ready_at - paused_at, 6),
            start_s=None,
            paused_at=round(paused_at, 6),
        )

    # -- the launcher's side of a launch -----------------------------------------
    def may_fork(self, name: str) -> bool:
        """Called by the launcher right before it forks ``name``: wait for the go, if a reload holds it."""
        with self._lock:
            held = self._held.get(name)
        return True if held is None else held.wait_for_go()


#: One backend's step of a reload: (backend, plan) -> its result.
Step = Callable[[str, WorkerPlan], WorkerResult]


def _side_by_side(
    plan: WorkerPlan, steps: list[tuple[str, Step]], results: dict[str, WorkerResult]
) -> list[threading.Thread]:
    """Start each backend's step in a thread of its own; its result (or the bug it hit) lands in ``results``.

    The caller joins the threads, after doing what it has to meanwhile.
    """

    def run(name: str, step: Step) -> None:
        try:
            results[name] = step(name, plan)
        except Exception as exc:  # a bug must not leave the others unreported
            LOG.exception("reload #%d: %s: internal error", plan.generation, name)
            results[name] = WorkerResult(name, None, False, f"internal error: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(name, step), name=f"reload-{name}") for name, step in steps]
    for thread in threads:
        thread.start()
    return threads


class _Launch:
    """One backend brought up through cinder's own start path, forked only when told.

    ``cinder.cmd.volume._launch_service()`` runs in a thread of its own at
    once (``Service.create()`` in this process); the launcher's
    ``launch_service()`` then waits in :meth:`BackendWorkers.may_fork` until
    :meth:`fork` (go) or :meth:`cancel` (no fork: the created service object
    is dropped, nothing ran).
    """

    def __init__(self, workers: BackendWorkers, name: str, *, strict: bool) -> None:
        self._workers = workers
        self.name = name
        self._before = workers.handles.get(name)
        self._decided = threading.Event()
        self._go = False
        self._done = threading.Event()
        self._errors: str | None = None
        with workers._lock:
            workers._held[name] = self
            if strict:
                workers._strict.add(name)
        threading.Thread(target=self._run, name=f"reload-launch-{name}", daemon=True).start()

    def _run(self) -> None:
        try:
            with capturing_errors(self._workers.launched_by) as errors:
                self._workers._launch(self.name)
            self._errors = errors.reason()
        except Exception as exc:  # cinder's _launch_service logs and swallows its own
            self._errors = f"{type(exc).__name__}: {exc}"
        finally:
            with self._workers._lock:
                self._workers._strict.discard(self.name)
                if self._workers._held.get(self.name) is self:
                    del self._workers._held[self.name]
            self._done.set()

    def wait_for_go(self) -> bool:
        self._decided.wait()
        return self._go

    def cancel(self) -> None:
        self._decided.set()
        self._done.wait(60.0)

    def fork(self, timeout: float) -> tuple[WorkerHandle | None, str | None]:
        """Fork the worker and wait for its start report; (handle, None) once up, else (handle or None, reason)."""
        self._go = True
        self._decided.set()
        self._done.wait()
        workers = self._workers
        handle = workers.handles.get(self.name)
        if handle is None or handle is self._before:
            return None, self._errors or "cinder did not launch the service"
        if not handle.started.wait(timeout):
            handle.kill()
            handle.wait_exited(5.0)
            return handle, f"no start report within {timeout:g}s (worker_timeout); the worker was killed"
        outcome = handle.outcome
        if outcome is None:
            return handle, f"worker (pid {handle.pid}) exited while starting"
        if outcome.get("event") == "failed":
            try:
                handle.channel.send({"op": "exit"})
            except ChannelClosed:
                pass
            handle.wait_exited(10.0)
            return handle, str(outcome.get("reason"))
        return handle, None
