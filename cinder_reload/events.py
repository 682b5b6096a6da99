"""Reload start/end notifications.

Every cycle emits ``<service>.reload.start`` and then ``<service>.reload.end``
(success) or ``<service>.reload.error`` (failure).  Logging always receives
them; oslo.messaging does when the service has a transport, so whatever
listens to the service's notifications (ceilometer, a billing hook, an
operator's consumer) learns that the configuration changed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

__all__ = ["EventSink", "LoggingEvents", "OsloMessagingEvents", "emit_all"]

LOG = logging.getLogger(__name__)


class EventSink(Protocol):
    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None: ...


class LoggingEvents:
    """Writes each event as one structured log line."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or LOG

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        self._log.debug("event %s generation=%s", event_type, payload.get("generation"))


class OsloMessagingEvents:
    """Sends events through oslo.messaging on the service's own transport."""

    def __init__(
        self,
        transport: Any,
        publisher_id: str,
        topics: Sequence[str] | None = None,
        driver: str | None = None,
        retry: int = 1,
    ) -> None:
        import oslo_messaging  # optional: only services with a transport use it

        # topics and driver default to the service's own
        # [oslo_messaging_notifications] settings: an operator who disabled
        # notifications (driver = noop) gets none from reloads either.
        # retry: oslo.messaging's default (None) retries forever, which would
        # wedge the reload loop while the broker is down; a lost reload event
        # is logged by emit_all() instead.
        kwargs: dict[str, Any] = {"publisher_id": publisher_id, "retry": retry}
        if topics is not None:
            kwargs["topics"] = list(topics)
        if driver is not None:
            kwargs["driver"] = driver
        self._notifier = oslo_messaging.Notifier(transport, **kwargs)

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        method = self._notifier.error if event_type.endswith(".error") else self._notifier.info
        method({}, event_type, dict(payload))


def emit_all(sinks: Sequence[EventSink], event_type: str, payload: Mapping[str, Any]) -> list[str]:
    """Emit to every sink; a failing sink is reported, never fatal to the reload."""
    failures: list[str] = []
    for sink in sinks:
        try:
            sink.emit(event_type, payload)
        except Exception as exc:  # a notification bus outage must not fail a reload
            LOG.warning("reload event %s not delivered by %s: %s", event_type, type(sink).__name__, exc)
            failures.append(f"{type(sink).__name__}: {exc}")
    return failures
