"""What the launchers need to know about the cinder service they run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oslo_config import cfg

from ..config import ConfigProblem
from ..diff import OptKey
from ..engine import ReloadEngine
from ..events import EventSink, OsloMessagingEvents
from ..notify import SystemdNotifier
from ..workers import worker_service_name
from .options import restart_reasons

__all__ = ["Integration", "WorkerSetup"]

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
    #: Restart-only options computed at start (options.main_process_options), with their reasons.
    main_process_reasons: Mapping[OptKey, str] = field(default_factory=dict)
    #: Groups a worker re-initialises, by worker name (cinder-volume: backend -> [backend]).
    worker_groups: Mapping[str, list[str]] = field(default_factory=dict)
    worker_setup: WorkerSetup | None = None
    #: Called once cinder has parsed its configuration, before the launcher is built.
    prepare: Callable[[Integration], None] | None = None
    publisher: str = "volume"
    #: oslo.service's threading backend (cotyledon) rather than eventlet.
    threading_backend: bool = False
    #: Options every worker uses, applied by replacing the workers one after
    #: the other (cinder-backup's processes: the backup driver's options).
    #: Asked at each reload: the driver registers its options when cinder
    #: creates the service, after ``prepare``.
    shared_options: Callable[[cfg.ConfigOpts], frozenset[OptKey]] = lambda conf: frozenset()
    #: The service's own rules on a candidate configuration (ReloadCycle.candidate_checks).
    candidate_checks: Sequence[Callable[[cfg.ConfigOpts], Sequence[ConfigProblem]]] = ()

    def set_worker_group(self, name: str, present: bool) -> None:
        """A worker (cinder-volume: a backend) added or removed while the service runs."""
        groups = dict(self.worker_groups)
        if present:
            groups[name] = [name]
        else:
            groups.pop(name, None)
        self.worker_groups = groups

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
        except ImportError:
            return []
        if rpc.NOTIFICATION_TRANSPORT is None:
            return []
        return [_CurrentTransportEvents(f"{self.publisher}.{self.conf.host}")]

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
            restart_reasons={**restart_reasons(sorted(self.all_worker_groups())), **self.main_process_reasons},
            drain_timeout=self.drain_timeout,
            candidate_checks=self.candidate_checks,
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
            restart_reasons={**restart_reasons(sorted(own)), **self.main_process_reasons},
            drain_timeout=self.drain_timeout,
            ignored_groups=self.all_worker_groups() - own,
        )
        if self.worker_setup is not None:
            self.worker_setup(engine, inner)
        return engine


class _CurrentTransportEvents:
    """Events on cinder's notification transport as it is when each is sent.

    A reload that changed the transports (cinder-volume, backends.py) sets
    them up again; the events of that reload and later ones go out on the
    new one, not on the transport the service started with.
    """

    def __init__(self, publisher_id: str) -> None:
        self.publisher_id = publisher_id
        self._transport: Any = None
        self._sink: OsloMessagingEvents | None = None

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        from cinder import rpc

        transport = rpc.NOTIFICATION_TRANSPORT
        if transport is None:
            raise RuntimeError("no notification transport (being set up again by this reload)")
        if transport is not self._transport or self._sink is None:
            self._transport, self._sink = transport, OsloMessagingEvents(transport, publisher_id=self.publisher_id)
        self._sink.emit(event_type, payload)
