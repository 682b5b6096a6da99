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
* **workers**: cinder-volume's backends, cinder-backup's processes and
  cinder-api's workers are driven over a control channel per worker
  (backends.py, backend_worker.py, api.py): each fork gets a fresh
  socketpair (``_start_child``; under cotyledon, whose supervisor thread
  forks cinder-volume's, threading_backend.CotyledonForks).  The other
  workers under oslo.service's threading backend are restarted by cotyledon
  (threading_backend.CotyledonRestart).

Module layout: integration.py (what the service is), services.py (the
wrappers oslo.service runs), threading_backend.py (cotyledon), this module
(the launchers and the seam).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from oslo_config import cfg

from ..channel import Channel
from ..workers import SignalledWorkers
from .api import ApiWorker, sharing_listener
from .backend_worker import BackendService
from .backends import BackendWorkers, WorkerHandle
from .integration import Integration
from .services import ServiceReset, SingleService, WorkerService, take_sighup
from .threading_backend import CotyledonForks, ThreadingReload

__all__ = ["Integration", "install"]

LOG = logging.getLogger(__name__)


def _worker_name(service: Any, integration: Integration) -> str:
    manager = getattr(service, "manager", None)
    configuration = getattr(manager, "configuration", None)
    group = getattr(configuration, "config_group", None)
    if group and group in integration.worker_groups:
        return str(group)
    # cinder-api's WSGIService has a name ("osapi_volume"); backup workers do not.
    return str(getattr(service, "name", None) or "worker")


def _reset_transports() -> None:
    """cinder's RPC and notification transports dropped in this process.

    cinder's own start path sets them up again: ``Service.__init__`` calls
    ``rpc.init(CONF)`` when ``rpc.initialized()`` is false.  Only a reload
    that changed a transport's options calls this, right before it starts
    the first new worker.
    """
    from cinder import rpc

    if rpc.initialized():
        rpc.cleanup()


def _reset_database() -> None:
    """cinder's database engine dropped in this process.

    oslo.db's engine facade starts once per factory and reads ``[database]``
    when it does; a fresh copy of the factory (``make_new_manager()``)
    patched into cinder's context manager (``patch_factory()``, oslo.db's
    own way to point a manager at another configuration) starts at the next
    query, the next worker's ``Service.create()``, from the values then in
    force.  The old engine's
    pooled connections in this process are closed first (each worker has
    its own: oslo.db's process guards never share a connection across a fork).
    """
    from cinder.db import api as db_api

    db_api.main_context_manager.dispose_pool()
    db_api.main_context_manager.patch_factory(db_api.main_context_manager.make_new_manager())


def install(integration: Integration) -> None:
    """Point cinder's launcher factories at the reloading launchers."""
    from cinder import service as cinder_service
    from oslo_service import service as oslo_service

    class ReloadingProcessLauncher(oslo_service.ProcessLauncher):  # type: ignore[misc]
        """ProcessLauncher whose SIGHUP is a reload of the main process and its workers."""

        def __init__(self, conf: cfg.ConfigOpts, **kwargs: Any) -> None:
            self._reload_workers: dict[str, WorkerService] = {}
            self.backends: BackendWorkers | None = None
            #: cotyledon's fork of the backends' workers (threading backend), once its manager runs.
            self._forks: CotyledonForks | None = None
            workers: BackendWorkers | SignalledWorkers
            #: cinder-backup's processes: the slot name of each process number cinder was given.
            self._backup_slots: dict[int, str] = {}
            self._backup_semaphore: Any = None
            #: cinder-api: the worker names, and the socket cinder bound at start.
            self._api_slots: list[str] = []
            self._api_socket: Any = None
            #: The service the current set of new API workers is forked from, by batch.
            self._api_built: tuple[int, Any] | None = None
            if integration.service == "cinder-volume":
                from cinder.cmd import volume as volume_cmd

                self.backends = workers = BackendWorkers(
                    lambda backend: volume_cmd._launch_service(self, backend),
                    lambda: list(integration.worker_groups),
                    integration.set_worker_group,
                    reset_transports=_reset_transports,
                    reset_database=_reset_database,
                )
            elif integration.service == "cinder-backup" and not integration.threading_backend:
                # backup_workers > 1 (one process runs through serve()): N
                # identical processes, replaced one after the other (backup.py).
                self.backends = workers = BackendWorkers(
                    self._launch_backup,
                    lambda: sorted(set(self._backup_slots.values())),
                    shared=lambda: integration.shared_options(integration.conf),
                    launched_by="cinder.cmd.backup",
                )
            elif integration.service == "cinder-api" and not integration.threading_backend:
                # osapi_volume_workers processes on one listening socket: every
                # reload starts a new set through cinder's own WSGIService, then
                # retires the old one (api.py).
                self.backends = workers = BackendWorkers(
                    self._launch_api,
                    lambda: sorted(self._api_slots),
                    shared=lambda: integration.shared_options(integration.conf),
                    launched_by="oslo_service.wsgi",
                    overlap=True,
                )
            else:
                workers = SignalledWorkers(
                    integration.service,
                    self._worker_pids,
                    integration.state_dir,
                    groups=integration.all_worker_groups(),
                )
            self.engine = integration.main_engine(conf, workers=workers, worker_timeout=integration.worker_timeout)
            super().__init__(conf, **kwargs)

        def handle_signal(self) -> None:
            super().handle_signal()
            take_sighup(self.engine)

        def launch_service(self, service: Any, workers: int = 1) -> None:
            if integration.service == "cinder-api" and self.backends is not None:
                # cinder's one WSGIService, forked once per worker: each its own
                # slot (api1..N), so that each can be replaced and respawned alone.
                self._api_socket = service.server.socket
                for number in range(1, workers + 1):
                    self._api_slots.append(f"api{number}")
                    super().launch_service(BackendService(service, f"api{number}", ApiWorker), 1)
                return
            name = _worker_name(service, integration)
            if integration.service == "cinder-backup" and self.backends is not None:
                name = self._backup_slot(service)
            if self.backends is not None:
                if self.backends.may_fork(name):  # a reload forks only once the old worker drained
                    wrapped = BackendService(service, name, in_thread=integration.threading_backend)
                    if self._forks is None:  # eventlet forks in there; cotyledon once its manager runs
                        super().launch_service(wrapped, workers)
                    else:  # cotyledon, while a reload runs: forked by its supervisor thread
                        self._forks.launch(
                            lambda: super(ReloadingProcessLauncher, self).launch_service(wrapped, workers),
                            wrapped,
                            integration.worker_timeout + 10.0,
                        )
                return
            if name in self._reload_workers:  # cinder-backup's N processes: one service each
                name = f"{name}{len(self._reload_workers) + 1}"
            wrapped = WorkerService(service, name, integration, copies=workers)
            self._reload_workers[name] = wrapped
            super().launch_service(wrapped, workers)

        def _backup_slot(self, service: Any) -> str:
            """The worker name of a cinder-backup process: ``backupN`` for cinder's process N at start."""
            manager = service.manager
            if self._backup_semaphore is None:
                # The semaphore cinder's main() made for all its processes
                # (backup_max_operations across them): replacements share it.
                self._backup_semaphore = getattr(manager, "_semaphore", None)
            number = int(getattr(manager, "_process_number", 1))
            return self._backup_slots.setdefault(number, f"backup{number}")

        def _launch_backup(self, name: str) -> None:
            """A new process for the slot ``name``, through cinder's own start path.

            It gets a process number cinder never gave at start (higher than
            backup_workers): cinder's process 1 resets every unfinished backup
            of the host in its init_host, which is right when the service
            starts and wrong while the other processes run backups; every
            other number joins a running service, which is what a
            replacement does.
            """
            from cinder.cmd import backup as backup_cmd

            number = max(self._backup_slots, default=0) + 1
            self._backup_slots[number] = name
            backup_cmd._launch_backup_process(self, number - 1, self._backup_semaphore)

        def _launch_api(self, name: str) -> None:
            """A new API worker for the slot ``name``, as cinder's ``main()`` makes them.

            ``WSGIService('osapi_volume')`` loads the paste pipeline with
            the configuration now in force, on the socket cinder bound at
            start (api.sharing_listener); the launcher forks it.  One
            service per set of new workers, every worker of the set forked
            from it, as cinder's main() forks all of them from one (loading
            the pipeline takes most of a second).
            """
            from cinder import service as cinder_service

            assert self.backends is not None
            batch = self.backends.batch
            if self._api_built is None or self._api_built[0] != batch:
                with sharing_listener(self._api_socket):
                    self._api_built = (batch, cinder_service.WSGIService("osapi_volume"))
            server = self._api_built[1]
            if self.backends.may_fork(name):
                super().launch_service(BackendService(server, name, ApiWorker), 1)

        def _start_child(self, wrap: Any) -> int:
            service = wrap.service
            if self.backends is None or not isinstance(service, BackendService):
                return int(super()._start_child(wrap))
            ours, theirs = Channel.pair()
            service.channel, service.strict = theirs, self.backends.strict_next(service.name)
            service.inherited = self.backends.channels()
            forked_at = time.monotonic()
            pid = int(super()._start_child(wrap))  # the child never returns from this
            theirs.close()
            service.channel, service.inherited = None, []
            self.backends.forked(WorkerHandle(service.name, pid, wrap, ours, forked_at, service.strict))
            return pid

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
                if integration.service == "cinder-volume" and self.backends is not None:
                    self._forks = CotyledonForks(manager, self.backends)
                ThreadingReload(self.engine, manager, integration, self._forks).wait(super().wait)
                return
            self.engine.events.extend(integration.events())
            self.engine.start()
            workers = self.engine.workers
            stopping = threading.Event()

            def announce_ready() -> None:
                if isinstance(workers, BackendWorkers):
                    if workers.wait_ready(should_stop=stopping.is_set):
                        self.engine.ready(f"Serving: {workers.summary()}", workers=workers.describe())
                elif isinstance(workers, SignalledWorkers) and workers.wait_ready(should_stop=stopping.is_set):
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
