"""Reload notifications from real cinder-volume on a real RabbitMQ.

cinder-volume runs with ``[oslo_messaging_notifications] driver =
messagingv2`` on a fresh vhost of the machine's broker (or one started for
the test: never a fallback to the fake driver); the test consumes the
``notifications`` topic there, as ceilometer or an operator's hook would.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cinderproc import CinderService, volume_config
from stack.infra import rabbit_vhost

pytestmark = pytest.mark.cinder
oslo_messaging = pytest.importorskip("oslo_messaging")


class Endpoint:
    """Records every reload notification (``cinder-volume.reload.*``)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, str, dict[str, Any]]] = []
        self.cond = threading.Condition()

    def _record(self, priority: str, publisher_id: str, event_type: str, payload: dict[str, Any]) -> None:
        if ".reload." in event_type:
            with self.cond:
                self.received.append((priority, publisher_id, event_type, payload))
                self.cond.notify_all()

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._record("info", publisher_id, event_type, payload)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._record("error", publisher_id, event_type, payload)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[str, str, str, dict[str, Any]]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.received) >= count, timeout), self.received
            return list(self.received)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[tuple[str, Endpoint]]:
    from oslo_config import cfg

    with rabbit_vhost("crnotify") as url:
        conf = cfg.ConfigOpts()
        conf([], default_config_files=[], default_config_dirs=[])
        transport = oslo_messaging.get_notification_transport(conf, url=url)
        endpoint = Endpoint()
        listener = oslo_messaging.get_notification_listener(
            # cinder publishes on its control_exchange, "cinder" (oslo.messaging set_transport_defaults).
            transport,
            [oslo_messaging.Target(topic="notifications", exchange="cinder")],
            [endpoint],
            executor="threading",
        )
        listener.start()
        try:
            yield url, endpoint
        finally:
            listener.stop()
            listener.wait()
            transport.cleanup()


def test_reload_notifications_of_real_cinder_volume(
    consumer: tuple[str, Endpoint], start_cinder: Callable[..., CinderService]
) -> None:
    url, endpoint = consumer

    def config(workdir: Path) -> str:
        text = volume_config(workdir, fake1="chap_password = s3cr3t-chap")
        return text.replace("transport_url = fake://", f"transport_url = {url}").replace(
            "driver = log", "driver = messagingv2"
        )

    volume = start_cinder(config=config)
    text = volume.config_file.read_text()
    volume.edit(text.replace("s3cr3t-chap", "n3w-s3cr3t-chap"))
    ok = volume.reload()
    volume.edit(text + "[fake2\n")
    failed = volume.reload()

    assert ok.returncode == 0, ok.stderr
    assert failed.returncode == 1
    received = endpoint.wait_for(4)
    assert [(p, e) for p, _, e, _ in received] == [
        ("info", "cinder-volume.reload.start"),
        ("info", "cinder-volume.reload.end"),
        ("info", "cinder-volume.reload.start"),
        ("error", "cinder-volume.reload.error"),
    ]
    assert {pub for _, pub, _, _ in received} == {f"volume.{socket.gethostname()}"}
    start, end, _, error = (payload for _, _, _, payload in received)
    assert start["generation"] == 1 and start["pid"] == volume.pid
    assert end["generation"] == 1 and end["result"] == "ok"
    assert [(c["group"], c["option"], c["old"], c["new"]) for c in end["changed"]] == [
        ("fake1", "chap_password", "****", "****")
    ]
    assert [w["worker"] for w in end["workers"] if w.get("new_pid")] == ["fake1"]
    assert error["generation"] == 2 and error["result"] == "failed" and "syntax error" in error["message"]
    assert "s3cr3t-chap" not in repr(received)
