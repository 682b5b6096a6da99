"""A backend added, then removed, by `systemctl reload`, on MariaDB and RabbitMQ.

cinder-volume (fake1, fake2) runs as the rendered unit under a systemd 252
user manager.  The operator adds ``fake3`` to ``enabled_backends`` (with its
section) and reloads, then removes ``fake2`` and reloads.  Observed from
outside: the exit status, MainPID and NRestarts; the worker processes under
the main process; on the broker, who consumes each backend's queue; in
MariaDB, the service records and the row of a volume created on the new
backend through cinder's RPC API.
"""

from __future__ import annotations

import json

import pytest

from .infra import Backing, queue_consumers, service_hosts
from .stack import children_of, wait_for
from .units import UnitStack

pytestmark = [pytest.mark.stack, pytest.mark.systemd]
pytest.importorskip("kombu")  # queue_consumers() asks the broker through it

def started_workers(stack: UnitStack) -> dict[str, int]:
    """Each backend's worker pid, as the main process reported them once all had started."""
    path = stack.state_dir / "cinder-volume.reload.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    return {w["worker"]: int(w["pid"]) for w in doc.get("workers", []) if w.get("pid")}


def reload_ok(stack: UnitStack) -> dict[str, object]:
    done = stack.reload("cinder-volume")
    assert done.returncode == 0, done.stdout + done.stderr + stack.log_tail("cinder-volume")
    props = stack.status("cinder-volume")
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props
    doc: dict[str, object] = json.loads((stack.state_dir / "cinder-volume.reload.json").read_text())
    return doc


def test_backend_added_then_removed_by_systemctl_reload(volume_unit: tuple[UnitStack, Backing]) -> None:
    stack, backing = volume_unit
    host = stack.config.host
    url = backing.transport_url
    queue = {b: f"cinder-volume.{host}@{b}" for b in ("fake1", "fake2", "fake3")}
    wait_for(lambda: queue_consumers(url, queue["fake1"]) and queue_consumers(url, queue["fake2"]), 60, "consuming")
    main = stack.main_pid("cinder-volume")
    started = wait_for(lambda: (w := started_workers(stack)).keys() == {"fake1", "fake2"} and w, 60, "both started")
    fake1, fake2 = started["fake1"], started["fake2"]
    assert set(children_of(main)) == {fake1, fake2}

    # Added: its worker comes up through cinder's own start path; the others are not touched.
    stack.config.backends = ("fake1", "fake2", "fake3")
    stack.config.write()
    doc = reload_ok(stack)
    assert stack.main_pid("cinder-volume") == main
    assert doc["pending_restart"] == [], doc["pending_restart"]
    (fake3,) = set(children_of(main)) - {fake1, fake2}
    assert set(children_of(main)) == {fake1, fake2, fake3}
    assert queue_consumers(url, queue["fake3"]) >= 1
    assert f"{host}@fake3" in service_hosts(backing, backing.database)
    volume = stack.rpc_create_volume(f"{host}@fake3#fake3")
    assert volume["status"] == "available", volume
    assert f"{host}@fake3#fake3" in backing.db.sql(
        f"SELECT host FROM `{backing.database}`.volumes WHERE id = '{volume['id']}'"
    )

    # Removed: drained and stopped (its section gone too); the others keep their pid.
    stack.config.backends = ("fake1", "fake3")
    stack.config.write()
    reload_ok(stack)
    assert stack.main_pid("cinder-volume") == main
    wait_for(lambda: set(children_of(main)) == {fake1, fake3}, 30, "fake2's worker gone, the others unchanged")
    assert queue_consumers(url, queue["fake2"]) == 0
    assert queue_consumers(url, queue["fake1"]) >= 1 and queue_consumers(url, queue["fake3"]) >= 1
