"""cinder-volume's RPC transport and database moved by `systemctl reload`, on MariaDB and RabbitMQ.

cinder-volume (two backends) runs as the rendered unit under a systemd 252
user manager, on a vhost and a database of the run's own.  One reload moves
``transport_url`` to a second vhost and ``[database] connection`` to a
second database (cinder's schema made there by ``cinder-manage db sync``,
as an operator would).  Observed from outside: the exit status, MainPID and
NRestarts; on the broker, who consumes the backends' queues on each vhost;
in MariaDB, which database holds the services' records; and a volume cast
through cinder's RPC API on the new vhost, whose row only the new database
has, comes out ``available``.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest

from .infra import Backing, queue_consumers, service_hosts
from .stack import wait_for
from .units import UnitStack

pytestmark = [pytest.mark.stack, pytest.mark.systemd]
pytest.importorskip("kombu")  # queue_consumers() asks the broker through it

def test_transport_and_database_moved_by_systemctl_reload(volume_unit: tuple[UnitStack, Backing]) -> None:
    stack, backing = volume_unit
    host = stack.config.host
    queues = [f"cinder-volume.{host}@{b}" for b in stack.backends]
    old_url, old_db = backing.transport_url, backing.database
    wait_for(lambda: all(queue_consumers(old_url, q) for q in queues), 60, "both backends consuming on the first vhost")
    main = stack.main_pid("cinder-volume")
    workers_before = set(stack.pids()) - {"cinder-volume"}
    pids_before = stack.pids()
    assert workers_before, pids_before

    second = f"crconn2_{uuid.uuid4().hex[:10]}"
    backing.mq.add_vhost(second)
    backing.db.create_database(second)
    try:
        new_url = backing.mq.url(second)
        stack.config.transport_url, stack.config.database_url = new_url, backing.db.url(second)
        stack.config.write()
        stack.db_sync()  # the operator's part: cinder's schema in the new database
        assert service_hosts(backing, second) == set()

        done = stack.reload("cinder-volume")
        assert done.returncode == 0, done.stdout + done.stderr + stack.log_tail("cinder-volume")
        props = stack.status("cinder-volume")
        assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props
        assert stack.main_pid("cinder-volume") == main
        pids_after = stack.pids()
        assert not {pids_after[k] for k in pids_after if k != "cinder-volume"} & {
            pids_before[k] for k in pids_before if k != "cinder-volume"
        }, (pids_before, pids_after)
        doc = json.loads((stack.state_dir / "cinder-volume.reload.json").read_text())
        assert {c["option"] for c in doc["changed"]} == {"transport_url", "connection"}, doc["changed"]
        assert doc["pending_restart"] == [], doc["pending_restart"]
        windows = sorted((w["paused_at"], w["paused_at"] + w["paused_s"]) for w in doc["workers"])
        assert all(a[1] <= b[0] for a, b in zip(windows, windows[1:], strict=False)), windows  # one paused at a time

        # The broker: the backends consume on the new vhost, nobody on the old one.
        assert all(queue_consumers(new_url, q) for q in queues)
        assert [queue_consumers(old_url, q) for q in queues] == [0] * len(queues)
        # MariaDB: cinder's own start path registered both backends in the new database.
        assert service_hosts(backing, second) == {f"{host}@{b}" for b in stack.backends}
        # A volume cast through the new vhost, its row only in the new database: created.
        volume = stack.rpc_create_volume(f"{host}@{stack.backends[0]}#{stack.backends[0]}")
        assert volume["status"] == "available", volume
        rows = backing.db.sql(f"SELECT status FROM `{second}`.volumes WHERE id = '{volume['id']}'")
        assert "available" in rows
        assert volume["id"] not in backing.db.sql(f"SELECT id FROM `{old_db}`.volumes")
    finally:
        with contextlib.suppress(Exception):
            stack.stop()
        with contextlib.suppress(Exception):
            backing.mq.delete_vhost(second)
        with contextlib.suppress(Exception):
            backing.db.drop_database(second)
