"""The reload under oslo.service's threading backend (cotyledon's ServiceManager).

cinder-volume's backends are replaced one by one here as on eventlet, by the
same BackendWorkers over the same control channels (backends.py); only the
fork and the respawn are cotyledon's (CotyledonForks).  The other services'
workers, which run a reload engine of their own on eventlet (a SIGHUP per
worker), are restarted by cotyledon (CotyledonRestart): its workers run
their service in a thread, where no signal handler can be installed.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from ..channel import Channel
from ..diff import OptKey
from ..engine import ReloadEngine
from ..workers import WorkerPlan, WorkerResult
from .backend_worker import BackendService
from .backends import BackendWorkers, WorkerHandle
from .integration import Integration

__all__ = ["CotyledonForks", "CotyledonRestart", "ThreadingReload"]

LOG = logging.getLogger(__name__)

class CotyledonRestart:
    """The workers' part of a reload under cotyledon: it restarts them all."""

    def __init__(self, dispatch: Callable[[int], None], groups: Collection[str]) -> None:
        self._dispatch = dispatch
        self._groups = frozenset(groups)

    def groups(self) -> Collection[str]:
        return self._groups

    def shared_groups(self) -> Collection[str]:
        return ()

    def owned_options(self) -> Collection[OptKey]:
        return ()

    def required_groups(self) -> Collection[str]:
        return self._groups

    def candidate_groups(self, candidate: Any) -> Collection[str]:
        return self._groups

    def reload(self, plan: WorkerPlan) -> list[WorkerResult]:
        generation = plan.generation
        LOG.info("reload #%d: valid configuration; cotyledon restarts the workers to apply it", generation)
        self._dispatch(signal.SIGHUP)
        return [
            WorkerResult(
                "workers",
                None,
                True,
                "restarted by cotyledon (threading backend): every worker starts on the new configuration",
                reinitialized=tuple(sorted(self._groups)),
            )
        ]


class CotyledonSlot:
    """One cotyledon service (one backend's worker), as WorkerHandle.wrap sees it.

    ``workers`` plays the part oslo.service's eventlet ServiceWrapper's count
    plays there: 1, cotyledon forks the worker again when it dies; 0, its
    exit is the reload's to answer and nothing is forked.  It cannot be
    cotyledon's own count (``reconfigure(service_id, 0)``): cotyledon
    terminates a running worker above its count at its next turn, and the
    reload keeps a drained worker alive, paused, until its successor is up.
    """

    def __init__(self, service_id: Any) -> None:
        self.service_id = service_id
        self.workers = 1
        #: cotyledon's count set to 0: done once (reconfigure() refuses 0 -> 0).
        self.dropped = False


class CotyledonForks:
    """cotyledon's fork and respawn of cinder-volume's backend workers: the seam BackendWorkers needs.

    On eventlet the launcher's ``_start_child()`` forks each backend's worker
    and hands BackendWorkers its pid and control channel (launchers.py).
    Under cotyledon the fork happens in the manager's supervisor thread
    (``_start_worker(service_id, worker_id)``, at start, for a service
    ``add()``-ed meanwhile, and when a worker died): that private method is
    wrapped here to do the same around it, from the same BackendService.
    cotyledon has no public hook in the main process with the new pid
    (``on_new_worker`` runs in the child, ``on_dead_worker`` cannot stop a
    respawn).  A service whose slot says ``workers = 0`` is not forked again:
    its count goes to 0 (``reconfigure()``), which cotyledon keeps, the
    worker being gone.  Its entry stays in cotyledon's table: there is no
    public way to remove a service.
    """

    def __init__(self, manager: Any, backends: BackendWorkers) -> None:
        self.manager = manager
        self.backends = backends
        self._slots: dict[Any, CotyledonSlot] = {}
        #: A reload's launches wait here until the supervisor forked them.
        self._forked: dict[int, threading.Event] = {}
        self._lock = threading.Lock()

    def launched(self) -> list[str]:
        """The backends cinder launched so far (forked or not yet)."""
        services = (_backend_service(self.manager, sid) for sid in list(self.manager._services))
        return sorted(s.name for s in services if s is not None)

    def install(self) -> None:
        fork = self.manager._start_worker

        def start_worker(service_id: Any, worker_id: int) -> None:
            self._start_worker(fork, service_id, worker_id)

        self.manager._start_worker = start_worker
        # Runs in each new worker's main thread, the one thread there that
        # may set a signal disposition: a worker never reads the files, and
        # cotyledon's default reload() (SIGTERM to itself) would respawn it.
        self.manager.register_hooks(on_new_worker=_ignore_sighup)

    def _start_worker(self, fork: Callable[[Any, int], None], service_id: Any, worker_id: int) -> None:
        service = _backend_service(self.manager, service_id)
        if service is None:
            fork(service_id, worker_id)
            return
        with self._lock:
            slot = self._slots.setdefault(service_id, CotyledonSlot(service_id))
        if slot.workers == 0:
            # Its exit was the reload's (replaced, removed, or a new worker
            # that did not come up): not forked again, and not counted.
            if not slot.dropped:
                slot.dropped = True
                self.manager.reconfigure(service_id, 0)
            return
        ours, theirs = Channel.pair()
        service.channel, service.strict = theirs, self.backends.strict_next(service.name)
        service.inherited = self.backends.channels()
        forked_at = time.monotonic()
        try:
            fork(service_id, worker_id)  # the child never returns from this
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
            service.channel, service.inherited = None, []
        # cotyledon's table of its running workers (private): the one
        # place the new process, and so its pid, is recorded.
        process = next(
            (p for p, info in self.manager._running_services[service_id].items() if info.worker_id == worker_id),
            None,
        )
        if process is None or process.pid is None:
            ours.close()
            return
        self.backends.forked(WorkerHandle(service.name, int(process.pid), slot, ours, forked_at, service.strict))
        with self._lock:
            forked = self._forked.pop(id(service), None)
        if forked is not None:
            forked.set()

    def launch(self, add: Callable[[], None], service: BackendService, timeout: float) -> None:
        """A backend's worker added while the manager runs: forked before this returns.

        cinder's ``_launch_service()`` returns once ``launch_service()`` did;
        on eventlet the worker is forked by then, and the reload goes on
        from there (backends._Launch).  cotyledon forks at the next turn of
        its supervisor, which a SIGCHLD starts: cotyledon's own wake-up, sent
        to this process, which its main loop reads like any other signal.
        """
        forked = threading.Event()
        with self._lock:
            self._forked[id(service)] = forked
        add()
        os.kill(os.getpid(), signal.SIGCHLD)
        if not forked.wait(timeout):
            LOG.error("cotyledon did not fork the worker of %s within %gs", service.name, timeout)
        with self._lock:
            self._forked.pop(id(service), None)


def _backend_service(manager: Any, service_id: Any) -> BackendService | None:
    """The BackendService a cotyledon service runs (oslo.service's ServiceWrapper's argument), if it is one.

    Read from cotyledon's table of services (private): oslo.service's
    ``launch_service()`` does not return the id ``add()`` gave it.
    """
    config = manager._services.get(service_id)
    args = getattr(config, "args", ()) or ()
    return args[0] if args and isinstance(args[0], BackendService) else None


def _ignore_sighup(service_id: Any, worker_id: int, service: Any) -> None:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


class ThreadingReload:
    """The reload under oslo.service's threading backend (cotyledon's ServiceManager).

    cotyledon owns the main process's signals through ``signal.set_wakeup_fd``
    and dispatches them from its main loop (``_on_signal_received``, its
    documented-in-code dispatch point, the private name this wraps); on
    SIGHUP it would mutate the configuration (oslo_config_glue) and restart
    every worker.  Here SIGHUP goes to the engine instead, in one of two ways:

    * cinder-volume (``forks`` given): the engine runs in its own thread, as
      on eventlet, and SIGHUP only records a request there (the main loop
      must stay free: it is what wakes cotyledon's supervisor to fork and
      reap workers during the reload).  BackendWorkers replaces the changed
      backends' workers; cotyledon's own reload never runs.
    * the other services: their workers run a reload engine of their own on
      eventlet, which cotyledon's worker threads cannot (no signal there).
      The cycle runs in the main loop, in the main thread: RELOADING=1,
      validation, the main process's own changes, and only a valid
      configuration goes on to cotyledon's own reload, which restarts the
      workers with it (CotyledonRestart).  A broken file ends the cycle
      with nothing else happening; READY=1 reports the outcome either way.
    """

    def __init__(
        self, engine: ReloadEngine, manager: Any, integration: Integration, forks: CotyledonForks | None = None
    ) -> None:
        self.engine = engine
        self.manager = manager
        self.integration = integration
        self.forks = forks

    def wait(self, run: Callable[[], Any]) -> Any:
        self.engine.events.extend(self.integration.events())
        dispatch = self.manager._on_signal_received
        if self.forks is not None:
            return self._wait_replacing(run, dispatch, self.forks)
        self.engine.workers = CotyledonRestart(dispatch, self.integration.all_worker_groups())

        def on_signal(sig: int) -> None:
            if sig == signal.SIGHUP:
                # In cotyledon's main loop, the main thread: the cycle runs
                # here, and CotyledonRestart hands a valid file on to cotyledon.
                self.engine.run_cycle()
            else:
                dispatch(sig)

        self.manager._on_signal_received = on_signal
        # cotyledon starts its workers inside run(); READY=1 as early as
        # cotyledon's own notify would have sent it (NOTIFY_SOCKET is ours).
        self.engine.ready("Serving (threading backend: workers restart on reload)")
        try:
            return run()
        finally:
            self.engine.stop()

    def _wait_replacing(self, run: Callable[[], Any], dispatch: Callable[[int], None], forks: CotyledonForks) -> Any:
        def on_signal(sig: int) -> None:
            if sig == signal.SIGHUP:
                self.engine.request_reload()  # recorded; the engine's thread runs the cycle
            else:
                dispatch(sig)

        self.manager._on_signal_received = on_signal
        forks.install()
        self.engine.start()
        stopping = threading.Event()
        backends = forks.backends
        launched = forks.launched()

        def announce_ready() -> None:
            # READY=1 once every backend's worker reported its start, as on
            # eventlet; cotyledon forks them one after the other once run() runs.
            if backends.wait_ready(should_stop=stopping.is_set, launched=launched):
                self.engine.ready(f"Serving: {backends.summary()}", workers=backends.describe())

        threading.Thread(target=announce_ready, name="reload-ready", daemon=True).start()
        try:
            return run()
        finally:
            stopping.set()
            self.engine.stop()
