"""cinder-volume's RPC transport and database moved by a reload.

``transport_url`` used to wait for a restart: the main process sets the
transport up and every worker inherits it.  Now the reload drops the main
process's transports, and each backend's new worker (replaced one at a time)
comes up through cinder's own start path, whose ``Service.__init__`` sets
them up again from the new URL.  Observed on the broker itself: who consumes
the backends' queues on each vhost, and a volume cast through the new vhost
is carried out.  ``[database] connection`` likewise: a fresh engine factory
starts at the first new worker's start path.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cinderproc import OSLO_BACKENDS, CinderService, on_backend, volume_config
from helpers import wait_until
from stack.infra import queue_consumers, rabbit_vhost

pytestmark = pytest.mark.cinder
pytest.importorskip("kombu")  # queue_consumers() asks the broker through it

HERE = Path(__file__).resolve().parent


@pytest.fixture(params=OSLO_BACKENDS)
def start_cinder(
    request: pytest.FixtureRequest, start_cinder: Callable[..., CinderService]
) -> Callable[..., CinderService]:
    """On both of oslo.service's backends: cotyledon forks the new workers from the same main process."""
    return on_backend(request.param, start_cinder)


def create_volume(cinder_venv: Path, volume: CinderService, pool: str) -> str:
    """A volume cast through cinder's RPC API with the service's configuration as it is now; its final status."""
    created = subprocess.run(
        [str(cinder_venv / "bin/python"), str(HERE / "rpcclient.py"), str(volume.config_file)]
        + ["create", pool, "1", "--wait", "60"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr[-2000:]
    return str(json.loads(created.stdout.splitlines()[-1])["status"])


def test_transport_url_moved_to_another_vhost(
    start_cinder: Callable[..., CinderService], cinder_venv: Path
) -> None:
    host = os.uname().nodename
    queues = [f"cinder-volume.{host}@fake1", f"cinder-volume.{host}@fake2"]
    with rabbit_vhost("crmove_a") as url_a, rabbit_vhost("crmove_b") as url_b:

        def config(workdir: Path) -> str:
            return volume_config(workdir).replace("transport_url = fake://", f"transport_url = {url_a}")

        volume = start_cinder(config=config)
        main, fake1, fake2 = volume.pid, volume.worker_pid("fake1"), volume.worker_pid("fake2")
        wait_until(lambda: all(queue_consumers(url_a, q) for q in queues), 30, "both backends consuming on vhost A")
        assert [queue_consumers(url_b, q) for q in queues] == [0, 0]

        volume.edit(volume.config_file.read_text().replace(url_a, url_b))
        done = volume.reload()
        assert done.returncode == 0, done.stderr + volume.log_tail()
        doc = volume.state()
        assert doc["pending_restart"] == [] and [c["option"] for c in doc["changed"]] == ["transport_url"]
        assert "****" in json.dumps(doc["changed"]) and url_b not in json.dumps(doc)  # a URL holds a password
        # Same main process, every backend on a new worker, one after the other.
        new1, new2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
        assert volume.pid == main and {new1, new2}.isdisjoint({fake1, fake2})
        windows = sorted((w["paused_at"], w["paused_at"] + w["paused_s"]) for w in doc["workers"])
        assert windows[0][1] <= windows[1][0], windows

        # On the broker: the backends consume on B, nobody on A any more.
        assert all(queue_consumers(url_b, q) for q in queues)
        assert [queue_consumers(url_a, q) for q in queues] == [0, 0]
        # A volume cast through vhost B (the file's transport now) is created.
        assert create_volume(cinder_venv, volume, f"{host}@fake2#fake2") == "available"


def test_database_connection_moved_to_another_database(
    start_cinder: Callable[..., CinderService], cinder_venv: Path, cinder_db: Path, tmp_path: Path
) -> None:
    """[database] connection: the backends' new workers read and write the new database."""
    with rabbit_vhost("crdb") as url:
        _database_moved(start_cinder, cinder_venv, cinder_db, tmp_path, url)


def _database_moved(
    start_cinder: Callable[..., CinderService], cinder_venv: Path, cinder_db: Path, tmp_path: Path, url: str
) -> None:
    # A real broker: the volume is cast from another process (rpcclient.py).
    def config(workdir: Path) -> str:
        return volume_config(workdir).replace("transport_url = fake://", f"transport_url = {url}")

    volume = start_cinder(config=config)
    main, fake1, fake2 = volume.pid, volume.worker_pid("fake1"), volume.worker_pid("fake2")
    old = re.search(r"connection = sqlite:///(\S+?)\?", volume.config_file.read_text())
    assert old is not None
    other = tmp_path / "other.sqlite"
    shutil.copy(cinder_db, other)  # cinder's schema, no service and no volume in it yet
    assert service_hosts(other) == set()

    volume.edit(volume.config_file.read_text().replace(old.group(1), str(other)))
    done = volume.reload()
    assert done.returncode == 0, done.stderr + volume.log_tail()
    doc = volume.state()
    assert doc["pending_restart"] == [] and [c["option"] for c in doc["changed"]] == ["connection"]
    new1, new2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    assert volume.pid == main and {new1, new2}.isdisjoint({fake1, fake2})
    # cinder's own start path registered both backends in the new database...
    host = os.uname().nodename
    assert service_hosts(other) == {f"{host}@fake1", f"{host}@fake2"}
    # ...and a volume whose row is only there is created by the backend.
    assert create_volume(cinder_venv, volume, f"{host}@fake1#fake1") == "available"


def service_hosts(database: Path) -> set[str]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute("SELECT host FROM services WHERE topic = 'cinder-volume' AND deleted = 0")
        return {host for (host,) in rows}
