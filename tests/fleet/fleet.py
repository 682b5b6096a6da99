"""The fleet: infrastructure namespace + three cinder-volume hosts in one Active/Active cluster.

Infrastructure (namespace ``infra``, address .1): MariaDB and RabbitMQ
started by tests/stack/infra.py, a throw-away Ceph cluster
(tests/harness/ceph.py), and cinder-api and cinder-scheduler from Debian's
packages: sid's cinder 29 in the cached root of tests/debian
(harness/cinder_roots.py, built once), chrooted through an overlay and
started from the infrastructure's thread, so they live in its network
namespace.  The volume hosts run the PyPI cinder 29 of the cached venv (the
same release: one RPC and database version across the cluster).

Hosts h1..h3 (fleet/hosts.py), each with its own systemd 252 user manager:
h1 and h2 run the rendered ``cinder-volume.service`` (``cinder-reload
render``, tests/stack/units.py), h3 a distribution-shaped unit plus the
project's Debian drop-in (``DISTRO_UNIT``); all read
``/etc/cinder/cinder.conf``: ``cluster = fleet``,
one RBD backend on the shared Ceph cluster, so every member consumes the
queue ``cinder-volume.fleet@rbd``.

Ansible (the project's ``ansible/`` directory) runs from the root namespace
over SSH with an ``ansible.cfg``, inventory and ``ssh_config`` of the run's
own; nothing lands in ``/root/.ansible``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ceph import CephCluster, rados_pythonpath, start_cluster
from harness.cinder_roots import cinder_root
from harness.commands import CommandResult, run, wait_until
from harness.namespaces import BASE_PATH, PackageRootNamespace
from stack.api import CinderAPI
from stack.cinderenv import CinderVenv, service_env, stack_deps
from stack.infra import MariaDB, RabbitMQ
from stack.stack import children_of
from stack.units import stack_unit

from .hosts import RUNTIME_DIR, FleetHost, SshKeys
from .netns import FleetNetwork, InNetns, netns_processes

__all__ = ["CLUSTER", "QUEUE", "Fleet", "running_fleet"]

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("h1", "h2", "h3")
CLUSTER = "fleet"
BACKEND = "rbd"
#: The queue every member's RBD worker consumes (oslo.messaging: topic.server, server = cluster@backend).
QUEUE = f"cinder-volume.{CLUSTER}@{BACKEND}"
UNIT = "cinder-volume.service"
API_PORT = 8776
VOLUME_TYPE = "rbd"


#: The host that runs cinder-volume as a distribution's package does: its own unit
#: plus this project's drop-in (units/dropins/debian), not the project's unit.
DISTRO_HOST = "h3"
#: A stand-in for a distribution's cinder-volume.service, written for this test
#: (the shape Debian's and openstack-ansible's have: cinder-volume started directly,
#: `kill -HUP` as the reload, RuntimeDirectory= for the cinder units).
DISTRO_UNIT = """\
[Unit]
Description=OpenStack Cinder Volume (a distribution's unit, stand-in of tests/fleet)

[Service]
Type=simple
ExecStart=/usr/bin/cinder-volume --config-file=/etc/cinder/cinder.conf --log-file=/var/log/cinder/cinder-volume.log
ExecReload=/bin/kill -HUP $MAINPID
RuntimeDirectory=cinder lock/cinder
KillMode=mixed
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def distro_dropins(env: Mapping[str, str]) -> dict[str, str]:
    """The project's drop-in as the package installs it, and the test's environment (PYTHONPATH)."""
    reload_conf = (REPO / "units" / "dropins" / "debian" / "cinder-volume.service.d" / "reload.conf").read_text()
    environment = "Environment=" + " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    return {"reload.conf": reload_conf, "zz-fleet-test.conf": f"[Service]\n# test only\n{environment}\n"}


def _debian_root(root: Path, infra_dir: Path) -> PackageRootNamespace:
    """Debian's root (an overlay of the cached one) held by ``sleep infinity``; run from the
    infrastructure's thread, so its processes are in that network namespace."""
    namespace = PackageRootNamespace(
        root, infra_dir, binds=[infra_dir], systemd_run_dir=False, log=infra_dir / "debian-root.log"
    )
    namespace.start("sleep infinity", {"PATH": BASE_PATH, "LANG": "C.UTF-8"})
    return namespace


def _popen(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    with open(out, "ab") as handle:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def volume_conf(
    *,
    transport_url: str,
    database_url: str,
    ceph_conf: Path,
    chunk_size: int = 4,
    extra_backend: str = "",
) -> str:
    """A volume host's cinder.conf: the same text on every host (the host name is the host's own)."""
    return "\n".join(
        [
            "[DEFAULT]",
            f"transport_url = {transport_url}",
            f"cluster = {CLUSTER}",
            f"enabled_backends = {BACKEND}",
            "state_path = /etc/cinder/state",
            "log_dir = /etc/cinder/log",
            # A backend that cannot connect fails its start once, not 1+2+4 s of retries.
            "reinit_driver_count = 0",
            "rpc_response_timeout = 120",
            "",
            "[database]",
            f"connection = {database_url}",
            "max_pool_size = 5",
            "max_overflow = 10",
            "",
            "[oslo_concurrency]",
            "lock_path = /etc/cinder/lock",
            "",
            "[reload]",
            # While one member is replaced the others take its share: on this shared 2-core
            # machine the next member then held 26 operations when its own turn came and
            # its RBD deletes took longer than the default 30 s to drain (the reload failed,
            # correctly, and the roll stopped).  Deployments size this to their own backlog.
            "drain_timeout = 120",
            "worker_timeout = 200",
            "",
            f"[{BACKEND}]",
            "volume_driver = cinder.volume.drivers.rbd.RBDDriver",
            f"volume_backend_name = {BACKEND}",
            f"rbd_ceph_conf = {ceph_conf}",
            "rbd_pool = volumes",
            "rbd_user = cinder",
            f"rbd_store_chunk_size = {chunk_size}",
            "rados_connect_timeout = 5",
            "rados_connection_retries = 1",
            "rados_connection_interval = 1",
            *([extra_backend] if extra_backend else []),
            "",
        ]
    )


def _infra_conf(workdir: Path, *, transport_url: str, database_url: str, listen: str, filters: Path) -> str:
    return "\n".join(
        [
            "[DEFAULT]",
            f"transport_url = {transport_url}",
            "auth_strategy = noauth",
            f"api_paste_config = {workdir / 'api-paste.ini'}",
            f"state_path = {workdir / 'state'}",
            f"log_dir = {workdir / 'log'}",
            "host = infra",
            f"osapi_volume_listen = {listen}",
            f"osapi_volume_listen_port = {API_PORT}",
            # Two API processes: one is starved on a busy 2-core machine (its single
            # eventlet loop runs every request of the load and the poller's listings).
            "osapi_volume_workers = 2",
            "quota_volumes = -1",
            "quota_gigabytes = -1",
            "quota_snapshots = -1",
            "rpc_response_timeout = 120",
            f"resource_query_filters_file = {filters}",
            # Requests wait until a volume service reported, at most this long after the start.
            "scheduler_driver_init_wait_time = 10",
            "",
            "[database]",
            f"connection = {database_url}",
            # oslo.db's own overflow (50): the API holds a connection per request in
            # flight, and on a busy 2-core machine requests pile up (seen: "QueuePool
            # limit of size 5 overflow 10 reached" failing creates under load).
            "max_pool_size = 10",
            "max_overflow = 50",
            "",
            "[oslo_concurrency]",
            f"lock_path = {workdir / 'lock'}",
            "",
        ]
    )


@dataclass
class Fleet:
    workdir: Path
    venv: CinderVenv
    net: FleetNetwork = field(default_factory=lambda: FleetNetwork(HOSTS))
    hosts: dict[str, FleetHost] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    db: MariaDB | None = None
    mq: RabbitMQ | None = None
    ceph: CephCluster | None = None
    infra: InNetns | None = None
    debian: PackageRootNamespace | None = None
    timings: dict[str, float] = field(default_factory=dict)

    # -- addresses and files -------------------------------------------------------
    @property
    def infra_address(self) -> str:
        return self.net.address("infra")

    @property
    def transport_url(self) -> str:
        assert self.mq is not None
        return f"rabbit://guest:guest@{self.infra_address}:{self.mq.port}/"

    @property
    def database_url(self) -> str:
        assert self.db is not None
        return f"mysql+pymysql://root@{self.infra_address}:{self.db.port}/cinder?charset=utf8"

    @property
    def api(self) -> CinderAPI:
        # 120 s, not 30: on this shared 2-core machine the three hosts' `cinder-reload check`
        # (each imports cinder) starve the API for a while; a request the client gave up on
        # still creates its volume, which the load would then count as failed *and* leave behind.
        return CinderAPI(API_PORT, host=self.infra_address, timeout=120.0)

    def conf(self, **kwargs: Any) -> str:
        assert self.ceph is not None
        return volume_conf(
            transport_url=self.transport_url, database_url=self.database_url, ceph_conf=self.ceph.conf, **kwargs
        )

    @property
    def ansible_dir(self) -> Path:
        return self.workdir / "ansible"

    # -- start ---------------------------------------------------------------------
    def start(self) -> None:
        began = time.monotonic()
        self.net.create()
        self.infra = InNetns(self.net.infra)
        infra_dir = self.workdir / "infra"
        infra_dir.mkdir(parents=True)
        address = self.infra_address
        # The servers first, side by side with the hosts (each its own namespace).
        self.db = self.infra.call(MariaDB.start_own, infra_dir, bind=address)
        self.infra.call(self.db.create_database, "cinder")
        self.mq = self.infra.call(RabbitMQ.start_own, infra_dir, bind=address)
        self.ceph = self.infra.call(start_cluster, infra_dir / "ceph", "fleet", address)
        self.timings["infra_servers_s"] = time.monotonic() - began
        keys = SshKeys(self.workdir / "ssh")
        keys.create()
        keys.write_config({h: self.net.address(h) for h in HOSTS})
        for name in HOSTS:
            distro = {c: self.venv.bin(c) for c in ("cinder-reload", "cinder-volume")} if name == DISTRO_HOST else None
            host = FleetHost(name, self.net, self.workdir / name, keys, distro_commands=distro)
            self.hosts[name] = host
            host.start()
        self.timings["hosts_s"] = time.monotonic() - began
        self._write_ansible(keys)
        self._start_cinder(infra_dir)
        self.timings["ready_s"] = time.monotonic() - began

    def _env(self) -> dict[str, str]:
        deps = stack_deps(self.venv)
        env = service_env(self.venv, deps)
        rados = rados_pythonpath(self.workdir / "rados-bindings")
        env["PYTHONPATH"] = os.pathsep.join([str(deps), str(rados)])
        return env

    def _start_cinder(self, infra_dir: Path) -> None:
        assert self.infra is not None
        env = self._env()
        for sub in ("state", "lock", "log"):
            (infra_dir / sub).mkdir(exist_ok=True)
        # cinder-api and cinder-scheduler from Debian's packages (sid's cinder 29, the
        # cached root of tests/debian), chrooted, in the infrastructure's network namespace.
        root = cinder_root("sid")
        self.debian = self.infra.call(_debian_root, root, infra_dir)
        shutil.copy(root / "etc/cinder/api-paste.ini", infra_dir / "api-paste.ini")
        conf = infra_dir / "cinder.conf"
        conf.write_text(
            _infra_conf(
                infra_dir,
                transport_url=self.transport_url,
                database_url=self.database_url,
                listen=self.infra_address,
                filters=Path("/etc/cinder/resource_filters.json"),  # the package's, inside the root
            )
        )
        inside = [*self.debian.nsenter(), "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"]
        sync = self.infra.call(run, [*inside, "cinder-manage", "--config-file", str(conf), "db", "sync"], timeout=300)
        if not sync.ok:
            raise RuntimeError(f"cinder-manage db sync: {sync}")
        for service in ("cinder-scheduler", "cinder-api"):
            argv = [*inside, f"/usr/bin/{service}", "--config-file", str(conf)]
            self.procs[service] = self.infra.call(_popen, argv, infra_dir / f"{service}.out")
        text = self.conf()
        unit = stack_unit(
            "cinder-volume",
            systemd_version=252,
            cinder_reload=self.venv.bin("cinder-reload"),
            python=None,  # the command itself, as packages install it (the stack tests run `render --python`'s)
            config=Path("/etc/cinder/cinder.conf"),
            env={k: env[k] for k in ("PYTHONPATH", "PATH", "PYTHONUNBUFFERED")},
        )
        keep = {k: env[k] for k in ("PYTHONPATH", "PATH", "PYTHONUNBUFFERED")}
        for host in self.hosts.values():
            for sub in ("state", "lock", "log"):
                (host.cinder_dir / sub).mkdir(parents=True, exist_ok=True)
            (host.cinder_dir / "cinder.conf").write_text(text)
            if host.name == DISTRO_HOST:
                host.install_unit(UNIT, DISTRO_UNIT, distro_dropins(keep))
            else:
                host.install_unit(UNIT, unit)
            host.systemctl("start", "--no-block", UNIT).check()
        self.wait_serving()

    def wait_serving(self, timeout: float = 180.0) -> None:
        """The API answers, every member's RBD backend is up, and a volume really lands in Ceph."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        def alive() -> None:
            for service, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{service} exited {proc.returncode}:\n{self.log_tail(service)}")

        wait_until(lambda: alive() or self.api.answering(), bool, timeout=left(), what="cinder-api", interval=0.3)
        wanted = {f"{h}@{BACKEND}" for h in HOSTS}

        def members_up() -> set[str]:
            alive()
            return {
                s["host"]
                for s in self.api.services()
                # (The API shows a service's cluster from microversion 3.7 on; the hosts are what matter here.)
                if s["binary"] == "cinder-volume" and s["state"] == "up"
            }

        wait_until(members_up, lambda up: wanted <= up, timeout=left(), what="three members up", interval=0.5)
        types = {t["name"] for t in self.api.request("GET", "/types")[1]["volume_types"]}
        if VOLUME_TYPE not in types:
            self.api.create_type(VOLUME_TYPE, BACKEND)
        vid = self.api.create_volume("probe", 1, VOLUME_TYPE)
        vol = wait_until(
            lambda: self.api.volume(vid),
            lambda v: v is not None and v["status"] != "creating",
            timeout=left(),
            what="probe",
        )
        if vol is None or vol["status"] != "available":
            raise RuntimeError(f"the probe volume did not become available: {vol}\n{self.log_tail('cinder-scheduler')}")
        self.api.delete_volume(vid)
        wait_until(
            lambda: self.api.volume(vid), lambda v: v is None, timeout=left(), what="probe deleted", interval=0.3
        )

    def _write_ansible(self, keys: SshKeys) -> None:
        directory = self.ansible_dir
        for sub in ("local", "cp", "home", "reports"):
            (directory / sub).mkdir(parents=True, exist_ok=True)
        lines = ["[cinder_volume]"]
        lines += [f"{h} ansible_host={self.net.address(h)}" for h in HOSTS]
        lines += [
            "",
            "[cinder_volume:vars]",
            "ansible_user=root",
            "ansible_python_interpreter=/usr/bin/python3",
            "cinder_reload_scope=user",
            f"cinder_reload_command={self.venv.bin('cinder-reload')}",
            f"cinder_reload_state_dir={RUNTIME_DIR}/cinder",
            "",
        ]
        (directory / "inventory.ini").write_text("\n".join(lines))
        (directory / "group_vars").mkdir(exist_ok=True)
        (directory / "group_vars" / "cinder_volume.yml").write_text(
            "cinder_reload_environment:\n"
            f"  XDG_RUNTIME_DIR: {RUNTIME_DIR}\n"
            f"cinder_reload_report_dir: {directory / 'reports'}\n"
        )
        (directory / "ansible.cfg").write_text(
            "\n".join(
                [
                    "[defaults]",
                    f"inventory = {directory / 'inventory.ini'}",
                    f"local_tmp = {directory / 'local'}",
                    f"remote_tmp = {self.workdir / 'remote-tmp'}",
                    "retry_files_enabled = False",
                    "host_key_checking = True",
                    "gathering = explicit",
                    "forks = 5",
                    "",
                    "[ssh_connection]",
                    f"ssh_args = -F {keys.ssh_config} -o ControlMaster=auto -o ControlPersist=120s",
                    f"control_path_dir = {directory / 'cp'}",
                    "pipelining = True",
                    "",
                ]
            )
        )

    # -- acting ----------------------------------------------------------------------
    def playbook(self, *extra: str, timeout: float = 600.0) -> CommandResult:
        """``ansible-playbook ansible/playbooks/rolling-reload.yml`` as an operator runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PYTEST_", "NOTIFY_SOCKET"))}
        env.update(
            ANSIBLE_CONFIG=str(self.ansible_dir / "ansible.cfg"),
            ANSIBLE_HOME=str(self.ansible_dir / "home"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
        )
        # The test venv's (ansible-core is a test extra of pyproject.toml).
        command = str(Path(sys.executable).parent / "ansible-playbook")
        playbook = REPO / "ansible" / "playbooks" / "rolling-reload.yml"
        return run([command, str(playbook), *extra], env=env, timeout=timeout)

    def write_sources(self, texts: Mapping[str, str], name: str) -> Path:
        """One new file per host on the controller; returns the directory (``{{ inventory_hostname }}.conf``)."""
        directory = self.workdir / "sources" / name
        directory.mkdir(parents=True, exist_ok=True)
        for host, text in texts.items():
            (directory / f"{host}.conf").write_text(text)
        return directory

    def roll(self, sources: Path, *extra: str) -> CommandResult:
        src = f"cinder_reload_config_src={sources}/{{{{ inventory_hostname }}}}.conf"
        return self.playbook("-e", src, *extra)

    # -- observing -------------------------------------------------------------------
    def main_pid(self, host: str) -> int:
        return int(self.hosts[host].show(UNIT, "MainPID")["MainPID"])

    def worker_pids(self, host: str) -> list[int]:
        return children_of(self.main_pid(host))

    def state(self, host: str) -> dict[str, Any]:
        path = self.hosts[host].host_path(f"{RUNTIME_DIR}/cinder/cinder-volume.reload.json")
        try:
            return dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return {}

    def installed(self, host: str) -> str:
        return (self.hosts[host].cinder_dir / "cinder.conf").read_text()

    def report(self, host: str) -> dict[str, Any]:
        return dict(json.loads((self.ansible_dir / "reports" / f"{host}.json").read_text()))

    def clear_reports(self) -> None:
        for path in (self.ansible_dir / "reports").glob("*.json"):
            path.unlink()

    def log_tail(self, service: str, chars: int = 3000) -> str:
        text = ""
        for path in (self.workdir / "infra" / "log" / f"{service}.log", self.workdir / "infra" / f"{service}.out"):
            if path.exists():
                text += f"--- {path}\n{path.read_text(errors='replace')[-chars:]}\n"
        for name, host in self.hosts.items():
            log = host.cinder_dir / "log" / f"{service}.log"
            if log.exists():
                text += f"--- {name}: {log}\n{log.read_text(errors='replace')[-chars:]}\n"
        return text

    # -- teardown ------------------------------------------------------------------------
    def stop(self) -> None:
        # The hosts side by side: each stops its cinder-volume gracefully (seconds each).
        with ThreadPoolExecutor(max_workers=len(self.hosts) or 1) as pool:
            for done in [pool.submit(host.close) for host in self.hosts.values()]:
                with contextlib.suppress(Exception):
                    done.result()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self.debian is not None:
            with contextlib.suppress(Exception):
                self.debian.kill_all()
            self.debian.cleanup()
        if self.infra is not None:
            for server in (self.ceph, self.mq, self.db):
                if server is not None:
                    with contextlib.suppress(Exception):
                        self.infra.call(server.stop)
            self.infra.close()
        # Whatever still runs in the test's namespaces (epmd, a stray worker) is ours: by PID.
        for name in [self.net.infra, *(self.net.netns(h) for h in HOSTS)]:
            for pid in netns_processes(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.net.destroy()


@contextlib.contextmanager
def running_fleet(workdir: Path, venv: CinderVenv) -> Iterator[Fleet]:
    fleet = Fleet(workdir, venv)
    try:
        fleet.start()
        yield fleet
    finally:
        fleet.stop()


def consumer_sampler(fleet: Fleet, out: Path, interval: float = 0.02) -> subprocess.Popen[bytes]:
    """fleet/consumers.py with the cinder venv's py-amqp: the queue's consumer count, sampled from outside."""
    assert fleet.mq is not None
    handle = open(out, "wb")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            [
                fleet.venv.python,
                str(Path(__file__).with_name("consumers.py")),
                f"{fleet.infra_address}:{fleet.mq.port}",
                QUEUE,
                str(interval),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        handle.close()


def read_samples(path: Path) -> list[tuple[float, int]]:
    samples = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            samples.append((float(parts[0]), int(parts[1])))
    return samples


def longest_without_consumer(samples: Sequence[tuple[float, int]]) -> float:
    """The longest span from a sample with no consumer to the next sample with one (0 if none had none)."""
    longest = 0.0
    since: float | None = None
    for at, count in samples:
        if count <= 0 and since is None:
            since = at
        elif count > 0 and since is not None:
            longest = max(longest, at - since)
            since = None
    if since is not None and samples:
        longest = max(longest, samples[-1][0] - since)
    return longest
