"""Reload events through oslo.messaging, received by a real notification
listener on a real RabbitMQ: the machine's at 127.0.0.1:5672 (a fresh vhost),
else one started for the test (tests/stack/infra.py).  Never oslo.messaging's
in-process fake driver: it proves nothing about a consumer on the bus."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from refdaemon import register_opts
from stack.infra import rabbit_vhost

from cinder_reload import OsloMessagingEvents, ReloadEngine

oslo_messaging = pytest.importorskip("oslo_messaging")

pytestmark = pytest.mark.process


@pytest.fixture
def broker_url() -> Iterator[str]:
    with rabbit_vhost("crevents") as url:
        yield url


class Endpoint:
    def __init__(self) -> None:
        self.received: list[tuple[str, str, str, dict[str, Any]]] = []
        self.done = threading.Event()

    def _record(self, priority: str, publisher_id: str, event_type: str, payload: dict[str, Any]) -> None:
        self.received.append((priority, publisher_id, event_type, payload))
        if len(self.received) >= 4:
            self.done.set()

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._record("info", publisher_id, event_type, payload)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._record("error", publisher_id, event_type, payload)


def test_reload_events_reach_a_notification_listener(tmp_path: Path, broker_url: str) -> None:
    url = broker_url
    assert url.startswith("rabbit://")
    topic = f"cinder-reload-test-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "svc.conf"
    path.write_text("[DEFAULT]\n[backend1]\nlabel = one\npassword = pw-secret\n")
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    endpoint = Endpoint()
    listener = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=topic)], [endpoint], executor="threading"
    )
    listener.start()
    try:
        events = OsloMessagingEvents(transport, "volume.host1@backend1", topics=[topic], driver="messagingv2")
        engine = ReloadEngine("cinder-volume", conf, state_dir=tmp_path, events=[events], event_prefix="volume")
        engine.reinitializers.register("backend1", lambda change: None)
        engine.ready()
        path.write_text("[DEFAULT]\n[backend1]\nlabel = two\npassword = pw-new-secret\n")
        assert engine.run_cycle()["result"] == "ok"
        path.write_text("[backend1\n")
        assert engine.run_cycle()["result"] == "failed"
        assert endpoint.done.wait(30), f"got only {endpoint.received!r} via {url}"
    finally:
        listener.stop()
        listener.wait()
        transport.cleanup()
    kinds = [(p, e) for p, _, e, _ in endpoint.received]
    assert kinds == [
        ("info", "volume.reload.start"),
        ("info", "volume.reload.end"),
        ("info", "volume.reload.start"),
        ("error", "volume.reload.error"),
    ]
    assert {pub for _, pub, _, _ in endpoint.received} == {"volume.host1@backend1"}
    end_payload = endpoint.received[1][3]
    assert end_payload["generation"] == 1 and end_payload["reinitialized"] == ["backend1"]
    assert "pw-secret" not in repr(endpoint.received) and "pw-new-secret" not in repr(endpoint.received)
    assert "syntax error" in endpoint.received[3][3]["message"]
