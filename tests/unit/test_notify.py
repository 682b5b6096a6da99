"""sd_notify: message building (a table) and both senders against a real
bound AF_UNIX datagram socket, path and abstract."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import NotifyListener

from cinder_reload.notify import SystemdNotifier, build_message, monotonic_usec

BACKENDS = ["libsystemd", "sdnotify"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"ready": True}, "READY=1"),
        ({"ready": True, "status": "Serving"}, "READY=1\nSTATUS=Serving"),
        ({"reloading": True, "monotonic": 42}, "RELOADING=1\nMONOTONIC_USEC=42"),
        ({"stopping": True, "status": "bye"}, "STOPPING=1\nSTATUS=bye"),
        ({"status": "a\nb\tc"}, "STATUS=a b c"),
        ({"status": "x", "errno": 5}, "STATUS=x\nERRNO=5"),
        ({"extend_timeout_usec": 10_000_000}, "EXTEND_TIMEOUT_USEC=10000000"),
        ({"status": "caf\u00e9 \u2192 ok"}, "STATUS=caf\u00e9 ? ok"),
    ],
)
def test_build_message(fields: dict, expected: str) -> None:
    assert build_message(**fields) == expected


def test_reloading_carries_current_monotonic_time() -> None:
    before = monotonic_usec()
    message = build_message(reloading=True)
    stamp = int(message.split("MONOTONIC_USEC=")[1])
    assert before <= stamp <= monotonic_usec()


@pytest.mark.parametrize("fields", [{}, {"ready": True, "reloading": True}])
def test_build_message_rejects_nonsense(fields: dict) -> None:
    with pytest.raises(ValueError):
        build_message(**fields)


@pytest.fixture(params=["path", "abstract"])
def listener(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NotifyListener]:
    address = str(tmp_path / "notify.sock") if request.param == "path" else f"@cinder-reload-test-{uuid.uuid4().hex}"
    receiver = NotifyListener(address)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    yield receiver
    receiver.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_reaches_a_real_socket_and_keeps_notify_socket(listener: NotifyListener, backend: str) -> None:
    notifier = SystemdNotifier(backend)
    assert notifier.backend == backend

    assert notifier.ready("Serving") is True
    assert notifier.reloading("Reloading") is True

    listener.wait_for(lambda m: m.get("READY") == "1" and m.get("STATUS") == "Serving")
    index = listener.wait_for(lambda m: m.get("RELOADING") == "1")
    assert int(listener.messages[index]["MONOTONIC_USEC"]) > 0
    # oslo.service's notify_once() unsets it; we must not, or no reload could
    # ever be reported again.
    assert os.environ["NOTIFY_SOCKET"] == listener.address


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_manager_is_a_quiet_no_op(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with caplog.at_level(logging.DEBUG):
        assert SystemdNotifier(backend).ready("x") is False
    assert caplog.records == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_failure_warns_once_and_is_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    gone = tmp_path / "manager-went-away.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(gone))
    notifier = SystemdNotifier(backend)
    with caplog.at_level(logging.DEBUG, logger="cinder_reload.notify"):
        assert notifier.ready("a") is False
        assert notifier.ready("b") is False
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG]
    assert str(gone) in caplog.records[0].getMessage()
    assert isinstance(notifier.last_error, OSError)


def test_auto_prefers_libsystemd() -> None:
    assert SystemdNotifier("auto").backend == "libsystemd"


@pytest.mark.parametrize("backend", [*BACKENDS, "socket"])
def test_listener_gone_after_ready_is_said_once_at_info(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    # start-stop-daemon --notify-await removes its socket once READY=1 arrived.
    receiver = NotifyListener(str(tmp_path / "ssd-notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    notifier = SystemdNotifier(backend)
    assert notifier.ready("up") is True
    receiver.wait_for(lambda m: m.get("READY") == "1")
    receiver.close()
    with caplog.at_level(logging.DEBUG, logger="cinder_reload.notify"):
        assert notifier.reloading("r") is False
        assert notifier.ready("again") is False
    assert [(r.levelno, "is gone" in r.getMessage()) for r in caplog.records] == [(logging.INFO, True)]
