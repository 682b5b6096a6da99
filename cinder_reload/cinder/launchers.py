"""oslo.service launchers with the reload engine plugged in.

cinder builds its launchers through two factories in ``cinder.service``:
``process_launcher()`` (cinder-volume, -backup, -api) and ``serve()``
(cinder-scheduler).  :func:`install` points those two names at the
subclasses below before cinder's own ``main()`` runs; that is the only seam.

What the subclasses change, and why:

* **SIGHUP**: oslo.service's handler calls ``mutate_config_files()`` in the
  main process (which raises on a broken file and takes the service down,
  ../shared/notes/baseline.md) and SIGHUPs every child.  After oslo.service
  installs its handlers (``handle_signal()``, a public method called again at
  every turn of its loop) SIGHUP is given back to the engine's inbox.
* **READY=1**: ``systemd.notify_once()`` sends READY=1 before a single
  backend is up and then deletes ``NOTIFY_SOCKET``, so no reload can ever be
  reported.  ``cinder-reload run`` takes ``NOTIFY_SOCKET`` out of the
  environment before cinder starts (notify_once() finds nothing; children do
  not inherit it) and the engine sends READY=1 itself once every worker is
  ready.
* **workers**: each service handed to ``launch_service()`` is wrapped; in the
  forked child the wrapper starts the worker's own engine around cinder's
  ``Service.start()``.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oslo_config import cfg
from oslo_service.backend.base import ServiceBase

from ..diff import OptKey
from ..engine import ReloadEngine
from ..events import EventSink, OsloMessagingEvents
from ..notify import SystemdNotifier
from ..workers import SignalledWorkers, WorkerResult, worker_service_name

__all__ = ["Integration", "WorkerService", "install"]

LOG = logging.getLogger(__name__)

#: Builds the re-initialisers of one worker: (engine, wrapped cinder service) -> None.
WorkerSetup = Callable[[ReloadEngine, Any], None]


@dataclass
class Integration:
    """Everything the launchers need to know about the service they run."""

    service: str  # "cinder-volume"
    conf: cfg.ConfigOpts
    notify_address: str | None
    state_dir: Path
    restart_only: frozenset[OptKey] = frozenset()
    #: Groups a worker re-initialises, by worker name (cinder-volume: backend -> [backend]).
    worker_groups: Mapping[str, list[str]] = field(default_factory=dict)
    worker_setup: WorkerSetup | None = None
    #: Called once cinder has parsed its configuration, before the launcher is built.
    prepare: Callable[[Integration], None] | None = None
    publisher: str = "volume"
    #: oslo.service's threading backend (cotyledon) rather than eventlet.
    threading_backend: bool = False

    @property
    def drain_timeout(self) -> float:
        return float(self.conf.reload.drain_timeout)

    @property
    def worker_timeout(self) -> float:
        return float(self.conf.reload.worker_timeout)

    def notifier(self) -> SystemdNotifier:
        environ = {"NOTIFY_SOCKET": self.notify_address} if self.notify_address else {}
        return SystemdNotifier("socket", environ=environ)

    def events(self) -> list[EventSink]:
        """Reload events on the service's own notification transport, if it has one."""
        try:
            from cinder import rpc

            transport = rpc.NOTIFICATION_TRANSPORT
        except ImportError:
            return []
        if transport is None:
            return []
        return [OsloMessagingEvents(transport, publisher_id=f"{self.publisher}.{self.conf.host}")]

    def all_worker_groups(self) -> set[str]:
        return {g for groups in self.worker_groups.values() for g in groups}

    def main_engine(self, conf: cfg.ConfigOpts, **extra: Any) -> ReloadEngine:
        """The engine of the main process: the one that talks to the service manager."""
        return ReloadEngine(
            self.service,
            conf,
            notifier=self.notifier(),
            state_dir=self.state_dir,
            restart_only=self.restart_only,
            drain_timeout=self.drain_timeout,
            **extra,
        )

    def worker_engine(self, name: str, inner: Any) -> ReloadEngine:
        """The engine of one worker process (called in the child, after fork)."""
        own = set(self.worker_groups.get(name, ()))
        engine = ReloadEngine(
            worker_service_name(self.service, name),
            self.conf,
            # Workers never talk to the service manager: the main process
            # sends the one READY=1 that sums them all up.
            notifier=SystemdNotifier(environ={}),
            state_dir=self.state_dir,
            restart_only=self.restart_only,
            drain_timeout=self.drain_timeout,
            ignored_groups=self.all_worker_groups() - own,
        )
        if self.worker_setup is not None:
            self.worker_setup(engine, inner)
        return engine


class ServiceReset:
    """After every successful reload, ``service.reset()``, as oslo.service's SIGHUP did.

    cinder's ``Manager.reset()`` drops the cached RPC and object version pins
    (so a finished rolling upgrade takes effect without a restart), the
    scheduler's rebuilds its RPC clients, the API's resets its green pool.
    Taking SIGHUP from oslo.service must not lose that.  It hangs off the
    engine's ``.reload.end`` event, the one emitted after a cycle succeeded.
    """

    def __init__(self, service: Any) -> None:
        self.service = service

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        if event_type.endswith(".reload.end"):
            self.service.reset()


def take_sighup(engine: ReloadEngine) -> None:
    """Give SIGHUP to the engine's inbox (after oslo.service took it)."""
    signal.signal(signal.SIGHUP, engine.inbox.handler)


class _WrappedService(ServiceBase):  # type: ignore[misc]
    """A cinder service seen through oslo.service's ServiceBase: every call
    and attribute the launcher uses goes to the wrapped service."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.backdoor_port: Any = None

    def start(self) -> None:
        self.inner.start()

    def stop(self) -> None:
        self.inner.stop()

    def wait(self) -> None:
        self.inner.wait()

    def reset(self) -> None:
        self.inner.reset()

    def __getattr__(self, key: str) -> Any:
        return getattr(self.__dict__["inner"], key)


class WorkerService(_WrappedService):
    """Wraps one cinder service; in the child process, runs its reload engine."""

    def __init__(self, inner: Any, name: str, integration: Integration, copies: int = 1) -> None:
        super().__init__(inner)
        self.name = name
        self.integration = integration
        #: Processes running this same service (cinder-api's workers): each is
        #: then named after its pid, so each has its own state file.
        self.copies = copies
        self.engine: ReloadEngine | None = None

    def name_of(self, pid: int) -> str:
        return self.name if self.copies == 1 else f"{self.name}-{pid}"

    def start(self) -> None:
        if self.integration.threading_backend:
            # oslo.service's threading backend (cotyledon) runs a worker's
            # service in a thread, where no signal handler can be installed;
            # cotyledon restarts its workers on reload (see ThreadingReload).
            self.inner.start()
            return
        # Runs in the worker, in a greenthread of oslo.service's Launcher.
        engine = self.integration.worker_engine(self.name_of(os.getpid()), self.inner)
        engine.events.append(ServiceReset(self.inner))
        self.engine = engine
        # Before cinder's start (init_host takes seconds): a SIGHUP meanwhile
        # is kept by the engine and runs once the worker is ready.
        take_sighup(engine)
        engine.start()
        self.inner.start()
        engine.ready(f"{self.name}: serving")

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
            if self.copies > 1:
                # A pid-named state file would outlive its process.
                self.engine.state_file.unlink(missing_ok=True)
        self.inner.stop()


class SingleService(_WrappedService):
    """Wraps the one cinder service of a single-process launcher: READY=1 once it started."""

    def __init__(self, inner: Any, engine: ReloadEngine, in_worker: bool = False) -> None:
        super().__init__(inner)
        self.engine = engine
        #: cotyledon runs the service in a worker process: READY=1 is the main process's.
        self.in_worker = in_worker

    def start(self) -> None:
        self.inner.start()
        if not self.in_worker:
            self.engine.ready(f"Serving ({self.inner.__class__.__name__} {getattr(self.inner, 'host', '')})")


class CotyledonRestart:
    """The workers' part of a reload under cotyledon: it restarts them all."""

    def __init__(self, dispatch: Callable[[int], None], groups: Collection[str]) -> None:
        self._dispatch = dispatch
        self._groups = frozenset(groups)

    def groups(self) -> Collection[str]:
        return self._groups

    def reload(self, generation: int, timeout: float) -> list[WorkerResult]:
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


class ThreadingReload:
    """The reload under oslo.service's threading backend (cotyledon's ServiceManager).

    cotyledon owns the main process's signals through ``signal.set_wakeup_fd``
    and dispatches them from its main loop (``_on_signal_received``); on
    SIGHUP it mutates the configuration (oslo_config_glue) and restarts
    every worker.  Its workers run their service in a thread, where no
    signal can be caught.  So here the engine runs in the main loop: SIGHUP
    first runs a cycle in the main process (RELOADING=1, validation, the
    main process's own changes), and only a valid configuration goes on to
    cotyledon's own reload, which restarts the workers with it.  A broken
    file ends the cycle with nothing else happening; READY=1 reports the
    outcome either way.  Uses one private name of cotyledon,
    ``_on_signal_received``, its documented-in-code dispatch point.
    """

    def __init__(self, engine: ReloadEngine, manager: Any, integration: Integration) -> None:
        self.engine = engine
        self.manager = manager
        self.integration = integration

    def wait(self, run: Callable[[], Any]) -> Any:
        self.engine.events.extend(self.integration.events())
        dispatch = self.manager._on_signal_received
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


def _worker_name(service: Any, integration: Integration) -> str:
    manager = getattr(service, "manager", None)
    configuration = getattr(manager, "configuration", None)
    group = getattr(configuration, "config_group", None)
    if group and group in integration.worker_groups:
        return str(group)
    # cinder-api's WSGIService has a name ("osapi_volume"); backup workers do not.
    return str(getattr(service, "name", None) or "worker")


def install(integration: Integration) -> None:
    """Point cinder's launcher factories at the reloading launchers."""
    from cinder import service as cinder_service
    from oslo_service import service as oslo_service

    class ReloadingProcessLauncher(oslo_service.ProcessLauncher):  # type: ignore[misc]
        """ProcessLauncher whose SIGHUP is a reload of the main process and its workers."""

        def __init__(self, conf: cfg.ConfigOpts, **kwargs: Any) -> None:
            self._reload_workers: dict[str, WorkerService] = {}
            self.engine = integration.main_engine(
                conf,
                workers=SignalledWorkers(
                    integration.service,
                    self._worker_pids,
                    integration.state_dir,
                    groups=integration.all_worker_groups(),
                ),
                worker_timeout=integration.worker_timeout,
            )
            super().__init__(conf, **kwargs)

        def handle_signal(self) -> None:
            super().handle_signal()
            take_sighup(self.engine)

        def launch_service(self, service: Any, workers: int = 1) -> None:
            name = _worker_name(service, integration)
            if name in self._reload_workers:  # cinder-backup's N processes: one service each
                name = f"{name}{len(self._reload_workers) + 1}"
            wrapped = WorkerService(service, name, integration, copies=workers)
            self._reload_workers[name] = wrapped
            super().launch_service(wrapped, workers)

        def _worker_pids(self) -> dict[str, int]:
            pids: dict[str, int] = {}
            for pid, wrap in list(self.children.items()):
                service = wrap.service
                if isinstance(service, WorkerService):
                    pids[service.name_of(pid)] = pid
            return pids

        def wait(self) -> None:
            manager = getattr(self, "_manager", None)
            if manager is not None:  # oslo.service's threading backend: cotyledon
                ThreadingReload(self.engine, manager, integration).wait(super().wait)
                return
            self.engine.events.extend(integration.events())
            self.engine.start()
            workers = self.engine.workers
            assert isinstance(workers, SignalledWorkers)
            stopping = threading.Event()

            def announce_ready() -> None:
                if workers.wait_ready(should_stop=stopping.is_set):
                    names = ", ".join(f"{n} (pid {p})" for n, p in sorted(self._worker_pids().items()))
                    self.engine.ready(f"Serving: {names}")

            threading.Thread(target=announce_ready, name="reload-ready", daemon=True).start()
            try:
                super().wait()
            finally:
                stopping.set()
                self.engine.stop()

    class ReloadingServiceLauncher(oslo_service.ServiceLauncher):  # type: ignore[misc]
        """ServiceLauncher (one process, cinder-scheduler) whose SIGHUP is a reload."""

        def __init__(self, conf: cfg.ConfigOpts, **kwargs: Any) -> None:
            self.engine = integration.main_engine(conf)
            super().__init__(conf, **kwargs)

        def handle_signal(self) -> None:
            super().handle_signal()
            take_sighup(self.engine)

        def launch_service(self, service: Any, workers: int = 1) -> None:
            if integration.worker_setup is not None:
                integration.worker_setup(self.engine, service)
            self.engine.events.append(ServiceReset(service))
            super().launch_service(SingleService(service, self.engine, integration.threading_backend), workers)

        def wait(self) -> Any:
            manager = getattr(self, "_manager", None)
            if manager is not None:  # oslo.service's threading backend: cotyledon
                return ThreadingReload(self.engine, manager, integration).wait(super().wait)
            self.engine.events.extend(integration.events())
            take_sighup(self.engine)
            self.engine.start()
            try:
                return super().wait()
            finally:
                self.engine.stop()

    def process_launcher() -> Any:
        if integration.prepare is not None:
            integration.prepare(integration)
        return ReloadingProcessLauncher(integration.conf, restart_method="mutate")

    def serve(server: Any) -> None:
        # cinder.service.serve(), with our launcher: cinder.service.wait()
        # waits on the module's _launcher, as before.
        if cinder_service._launcher:
            raise RuntimeError("serve() can only be called once")
        if integration.prepare is not None:
            integration.prepare(integration)
        launcher = ReloadingServiceLauncher(integration.conf, restart_method="mutate")
        launcher.launch_service(server)
        cinder_service._launcher = launcher

    cinder_service.process_launcher = process_launcher
    cinder_service.serve = serve
    LOG.debug("cinder-reload: launchers installed for %s (pid %d)", integration.service, os.getpid())
