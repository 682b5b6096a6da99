"""cinder's service objects seen through oslo.service's ServiceBase.

The launchers hand oslo.service a wrapper around each cinder service, so
the reload can act at the points oslo.service calls: ``start()`` in the
process that runs the service, ``stop()``/``wait()`` on the way out.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from oslo_service.backend.base import ServiceBase
except ImportError:
    # oslo.service < 4.2 (Debian 13's 4.1.1, under its cinder 26) has no
    # backend.base.ServiceBase; its oslo_service.service exports the selected
    # backend's class.  Imported after cinder's command module chose the
    # backend (run.py), so this picks the one cinder runs on.
    from oslo_service.service import ServiceBase

from ..engine import ReloadEngine

if TYPE_CHECKING:
    from .integration import Integration

__all__ = ["ServiceReset", "SingleService", "WorkerService", "WrappedService", "take_sighup"]


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


class WrappedService(ServiceBase):  # type: ignore[misc]
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


class WorkerService(WrappedService):
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


class SingleService(WrappedService):
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
