"""cinder-volume's RBD backend on real Ceph clusters, through the rendered unit.

Issue 10's "Done when": cinder 29 from PyPI under ``cinder-reload run``, the
rendered unit under the systemd 252 user manager, RabbitMQ as the transport,
an RBD backend (cinder's own ``RBDDriver``, Debian's ``rados``/``rbd``
bindings, cephx user ``client.cinder``) next to a fake backend.  Volumes are
created through cinder's RPC API (rpcclient.py: the cast cinder-scheduler
would send) and looked up in the clusters with ``rbd ls``.  Every reload is
the operator's ``systemctl reload``.

cinder's own retry settings bound how long a driver that cannot connect takes
to fail: ``rados_connect_timeout = 3``, one connection attempt, and
``reinit_driver_count = 0`` (cinder's default 3 would retry init_host with
1+2+4 s sleeps).  The reload's failure arrives within that plus a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cinderproc import volume_config
from harness.ceph import CephCluster, ceph_available, rados_pythonpath, running_cluster
from helpers import wait_until
from stack.infra import Backing, backing_services

pytestmark = [pytest.mark.cinder, pytest.mark.systemd, pytest.mark.ceph]

HERE = Path(__file__).resolve().parent
RBD_DRIVER = "cinder.volume.drivers.rbd.RBDDriver"
CONNECT_TIMEOUT = 3


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[tuple[CephCluster, CephCluster]]:
    reason = ceph_available()
    if reason:
        pytest.fail(reason)  # not a skip: CI installs ceph (tools/apt-packages.txt)
    with running_cluster(tmp_path / "ceph-a", "a", "127.0.0.1") as a:
        with running_cluster(tmp_path / "ceph-b", "b", "127.0.0.2", pools=("volumes", "gold")) as b:
            yield a, b


@pytest.fixture
def rabbit() -> Iterator[Backing]:
    with backing_services(prefix="crceph") as services:
        yield services


def rbd_section(conf: Path, pool: str = "volumes", user: str = "cinder") -> str:
    return "\n".join(
        [
            f"volume_driver = {RBD_DRIVER}",
            "volume_backend_name = rbd",
            f"rbd_ceph_conf = {conf}",
            f"rbd_pool = {pool}",
            f"rbd_user = {user}",
            f"rados_connect_timeout = {CONNECT_TIMEOUT}",
            "rados_connection_retries = 1",
            "rados_connection_interval = 1",
        ]
    )


class Volumes:
    """cinder's RPC API from the cinder venv, with the unit's own cinder.conf."""

    def __init__(self, venv: Path, config: Path) -> None:
        self.argv = [str(venv / "bin" / "python"), str(HERE / "rpcclient.py"), str(config)]
        self.host = f"{os.uname().nodename}@rbd#rbd"

    def create(self, count: int = 1, wait: float = 60.0) -> list[dict[str, Any]]:
        done = subprocess.run(
            [*self.argv, "create", self.host, str(count), "--wait", str(wait)],
            capture_output=True,
            text=True,
            timeout=wait + 60,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines()]

    def start_burst(self, count: int, interval: float, wait: float = 90.0) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.argv, "create", self.host, str(count), "--wait", str(wait), "--interval", str(interval)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def landed(cluster: CephCluster, volumes: list[dict[str, Any]], pool: str = "volumes") -> bool:
    images = set(cluster.rbd_ls(pool))
    return all(f"volume-{v['id']}" in images for v in volumes)


def test_rbd_backend_moves_between_ceph_clusters_on_reload(
    cinder_unit: Any, cinder_venv: Path, clusters: tuple[CephCluster, CephCluster], rabbit: Backing, tmp_path: Path
) -> None:
    a, b = clusters
    pythonpath = rados_pythonpath(tmp_path / "rados-bindings")

    def config(workdir: Path) -> str:
        text = volume_config(workdir, rbd=rbd_section(a.conf))
        text = text.replace("transport_url = fake://", f"transport_url = {rabbit.transport_url}")
        text = text.replace("enabled_backends = fake1,fake2", "enabled_backends = rbd,fake2")
        # A new worker's start bound: cinder's own start with 40 requests
        # queued for it, on two busy cores, takes seconds (not the 4 s the
        # fake-backend tests use to fail fast).
        text = text.replace("worker_timeout = 4", "worker_timeout = 60")
        return text.replace("debug = false", "debug = false\nreinit_driver_count = 0")

    volume = cinder_unit("cinder-volume", config, f"\n[Service]\nEnvironment=PYTHONPATH={pythonpath}\n")
    volumes = Volumes(cinder_venv, volume.config_file)
    main_pid = int(volume.show()["MainPID"])

    def workers() -> dict[str, dict[str, Any]]:
        return {w["worker"]: w for w in volume.state()["workers"]}

    fake2 = workers()["fake2"]["pid"]
    first = volumes.create()
    assert [v["status"] for v in first] == ["available"], first
    assert landed(a, first) and not landed(b, first)

    def reload_to(text: str) -> tuple[Any, float]:
        volume.edit(text)
        started = time.monotonic()
        done = volume.reload()
        return done, time.monotonic() - started

    # rbd_ceph_conf: cluster A -> cluster B.
    text = volume.config_file.read_text()
    rbd_old = workers()["rbd"]["pid"]
    text = text.replace(f"rbd_ceph_conf = {a.conf}", f"rbd_ceph_conf = {b.conf}")
    done, _ = reload_to(text)
    assert done.ok, done
    props = volume.show()
    assert int(props["MainPID"]) == main_pid and props["ActiveState"] == "active"
    assert props["StatusText"].startswith("Reload #1 ok") and "re-initialised rbd" in props["StatusText"]
    now = workers()
    assert now["rbd"]["old_pid"] == rbd_old and now["rbd"]["new_pid"] != rbd_old
    assert now["fake2"]["pid"] == fake2
    assert not Path(f"/proc/{rbd_old}").exists() or "Z" in Path(f"/proc/{rbd_old}/stat").read_text().split()[2]
    moved = volumes.create()
    assert [v["status"] for v in moved] == ["available"], moved
    assert landed(b, moved) and not landed(a, moved)
    # Cluster A holds no connection of the service any more.
    assert not (a.client_pids() & volume.pids())

    # rbd_pool: volumes -> gold (client.cinder may use both in B).
    b.ceph(
        "auth", "caps", "client.cinder", "mon", "profile rbd", "osd", "profile rbd pool=volumes, profile rbd pool=gold"
    )
    text = text.replace("rbd_pool = volumes", "rbd_pool = gold")
    done, _ = reload_to(text)
    assert done.ok, done
    gold = volumes.create()
    assert [v["status"] for v in gold] == ["available"] and landed(b, gold, "gold") and not landed(b, gold)

    # rbd_user: cinder -> cinder2; then client.cinder is deleted: creates still work.
    b.add_user("cinder2", ["volumes", "gold"])
    text = text.replace("rbd_user = cinder", "rbd_user = cinder2")
    done, _ = reload_to(text)
    assert done.ok, done
    b.ceph("auth", "del", "client.cinder")
    as_cinder2 = volumes.create()
    assert [v["status"] for v in as_cinder2] == ["available"] and landed(b, as_cinder2, "gold")

    # A cluster nobody answers at: the reload fails with the driver's reason,
    # promptly, and the backend keeps serving cluster B.
    nowhere = tmp_path / "nowhere.conf"
    nowhere.write_text(b.conf.read_text().replace("127.0.0.2", "127.0.0.3"))
    before = workers()["rbd"]["pid"]
    done, took = reload_to(text.replace(f"rbd_ceph_conf = {b.conf}", f"rbd_ceph_conf = {nowhere}"))
    props = volume.show()
    assert not done.ok, done
    assert took < CONNECT_TIMEOUT + 12, took
    assert "rbd: new worker failed" in props["StatusText"] and "connecting to ceph cluster" in props["StatusText"]
    assert "back on its previous configuration" in props["StatusText"], props["StatusText"]
    assert props["ActiveState"] == "active" and int(props["MainPID"]) == main_pid
    # The drained old worker waited for its successor and consumes again.
    assert workers()["rbd"]["pid"] == before and workers()["fake2"]["pid"] == fake2
    still_b = volumes.create()
    assert [v["status"] for v in still_b] == ["available"] and landed(b, still_b, "gold")

    # Operations in flight and sent during the replacement: all carried out.
    volume.edit(text)  # back to the file in effect
    # 40 creates, 0.1 s apart: some finish before, some are in flight when the
    # old worker stops consuming, some wait in the broker, the rest go to the new one.
    burst = volumes.start_burst(40, interval=0.1)
    wait_until(lambda: burst.poll() is not None or len(b.rbd_ls("gold")) >= len(still_b) + 3, 60, "burst started")
    in_effect = text.replace("rbd_pool = gold", "rbd_pool = volumes")
    done, _ = reload_to(in_effect)
    assert done.ok, done
    out, err = burst.communicate(timeout=180)
    assert burst.returncode == 0, err[-3000:]
    results = [json.loads(line) for line in out.splitlines()]
    stuck = [r for r in results if r["status"] != "available"]
    queues = rabbit.mq.ctl(
        "list_queues", "-p", rabbit.vhost, "name", "messages", "messages_unacknowledged", "consumers"
    )
    if stuck:
        print("STUCK", json.dumps(stuck), "\nWORKERS", json.dumps(volume.state()["workers"]), "\nQUEUES\n" + queues)
    assert len(results) == 40 and not stuck, stuck
    images = set(b.rbd_ls("gold")) | set(b.rbd_ls("volumes"))
    assert all(f"volume-{r['id']}" in images for r in results)
    assert set(b.rbd_ls("volumes")) & {f"volume-{r['id']}" for r in results}, "none created after the reload"
    assert workers()["rbd"]["paused_s"] is not None

    # A worker killed after a reload comes back with the reloaded configuration.
    killed = workers()["rbd"]["pid"]
    os.kill(killed, signal.SIGKILL)
    respawned = wait_until(
        lambda: next(iter(volume.pids() - {main_pid, fake2, killed}), None), 30, "the respawned rbd worker"
    )
    wait_until(
        lambda: f" {respawned} " in volume.log() and "Driver post RPC initialization completed" in volume.log(),
        60,
        "respawned worker up",
    )
    after_crash = volumes.create()
    assert [v["status"] for v in after_crash] == ["available"] and landed(b, after_crash, "volumes")
    # ...it already runs what the file says, and later reloads reach it.
    done, _ = reload_to(in_effect)
    assert done.ok and "no changes" in volume.show()["StatusText"], done
    done, _ = reload_to(text)  # pool back to gold: the respawned worker is replaced
    assert done.ok, done
    assert workers()["rbd"]["old_pid"] == respawned
    back_to_gold = volumes.create()
    assert [v["status"] for v in back_to_gold] == ["available"] and landed(b, back_to_gold, "gold")
