"""MariaDB and RabbitMQ for one test run: a fresh database and vhost each.

Where MariaDB answers on 127.0.0.1:3306 (root, no password) and RabbitMQ on
127.0.0.1:5672 (guest/guest), a run creates its own database and vhost there
and drops them afterwards, so runs never collide and leave nothing behind.
Where either is not reachable, Debian's ``mariadbd`` / ``rabbitmq-server`` is
started here on a free loopback port, with its data in a temporary directory,
and stopped (by PID) afterwards.

Nothing here changes the machine's own servers beyond the run's database and
vhost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpers import wait_until

__all__ = [
    "Backing",
    "MariaDB",
    "RabbitMQ",
    "backing_services",
    "free_port",
    "queue_consumers",
    "rabbit_vhost",
    "reachable",
    "service_hosts",
]

LOOPBACK = "127.0.0.1"
MYSQL_PORT = 3306
AMQP_PORT = 5672
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")  # the real scripts; /usr/sbin's wrappers su to "rabbitmq"


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Does something accept TCP connections on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(address: str = LOOPBACK) -> int:
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1) -> None:
    wait_until(predicate, timeout, what, interval)


def _stop_pid(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- MariaDB ---------------------------------------------------------------------
@dataclass
class MariaDB:
    """A MariaDB server reachable as root without a password on loopback."""

    port: int = MYSQL_PORT
    host: str = LOOPBACK
    proc: subprocess.Popen[bytes] | None = None  # set when we started it
    datadir: Path | None = None

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def sql(self, statement: str, timeout: float = 30.0) -> str:
        out = subprocess.run(
            ["mysql", "--no-defaults", "-uroot", f"-h{self.host}", f"-P{self.port}", "-N", "-B", "-e", statement],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"mysql: {statement!r} failed: {out.stderr.strip()}")
        return out.stdout

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@{self.host}:{self.port}/{database}?charset=utf8"

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8")

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS `{name}`")

    @classmethod
    def start_own(cls, workdir: Path, timeout: float = 60.0, bind: str = LOOPBACK) -> MariaDB:
        """Debian's mariadbd on a free port of ``bind`` (loopback), data in ``workdir``.

        ``--skip-grant-tables``: a throwaway server with no accounts at all, so
        root without a password works over TCP as on the machine's own one.
        """
        datadir = workdir / "mariadb"
        datadir.mkdir(parents=True)
        install = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if install.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {install.stdout}{install.stderr}")
        port = free_port(bind)
        log = open(workdir / "mariadb.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={datadir}",
                "--user=root",
                f"--socket={workdir / 'mariadb.sock'}",
                f"--port={port}",
                f"--bind-address={bind}",
                # Clients from other network namespaces (tests/fleet) connect by
                # address: no reverse lookup of theirs (no DNS from here).
                "--skip-name-resolve",
                f"--pid-file={workdir / 'mariadb.pid'}",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=32M",
                # A throw-away server: no fsync per commit.  With it, on a busy shared
                # disk, cinder's quota reservations (row locks held across a commit)
                # queued the API's requests for tens of seconds (tests/fleet).
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
                "--max-connections=500",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        server = cls(port=port, host=bind, proc=proc, datadir=datadir)
        try:
            _wait(lambda: proc.poll() is not None or reachable(bind, port, 0.2), timeout, "mariadbd to listen")
            if proc.poll() is not None:
                log_text = (workdir / "mariadb.log").read_text()[-2000:]
                raise RuntimeError(f"mariadbd exited {proc.returncode}: {log_text}")
            server.sql("SELECT 1")
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        if self.proc is not None:
            _stop_pid(self.proc, timeout=60)


# -- RabbitMQ ----------------------------------------------------------------------
@dataclass
class RabbitMQ:
    """A RabbitMQ broker on loopback where guest/guest may log in."""

    port: int = AMQP_PORT
    host: str = LOOPBACK
    proc: subprocess.Popen[bytes] | None = None
    node: str | None = None  # the node name of one we started (rabbitmqctl -n)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        if self.node:
            argv = [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.node, *args]
        else:
            argv = ["rabbitmqctl", *args]
        out = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **self.env} if self.env else None,
        )
        if out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {out.stdout}{out.stderr}")
        return out.stdout

    def url(self, vhost: str) -> str:
        return f"rabbit://guest:guest@{self.host}:{self.port}/{vhost}"

    def add_vhost(self, name: str) -> None:
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    def delete_vhost(self, name: str) -> None:
        self.ctl("delete_vhost", name)

    @classmethod
    def start_own(cls, workdir: Path, timeout: float = 120.0, bind: str = LOOPBACK) -> RabbitMQ:
        """Debian's rabbitmq-server as root on free ports of ``bind`` (loopback), state in ``workdir``.

        Bound elsewhere than loopback (tests/fleet), guest may log in from
        other addresses too (``loopback_users = none``): RabbitMQ's default
        allows guest on loopback only.
        """
        base = workdir / "rabbitmq"
        base.mkdir(parents=True)
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text("" if bind == LOOPBACK else "loopback_users = none\n")
        # The machine's /etc/rabbitmq/rabbitmq-env.conf must not rename or move this node.
        (base / "rabbitmq-env.conf").write_text("")
        port, dist = free_port(bind), free_port(bind)
        node = f"crstack{port}@localhost"
        env = {
            "HOME": str(base),  # the Erlang cookie lives here, shared with our rabbitmqctl
            "RABBITMQ_NODENAME": node,
            "RABBITMQ_NODE_IP_ADDRESS": bind,
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        }
        log = open(workdir / "rabbitmq.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env={**os.environ, **env},
            cwd=base,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        broker = cls(port=port, host=bind, proc=proc, node=node, env=env)
        try:
            _wait(lambda: proc.poll() is not None or reachable(bind, port, 0.2), timeout, "rabbitmq to listen")
            if proc.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server exited {proc.returncode}: {(workdir / 'rabbitmq.log').read_text()[-2000:]}"
                )
            broker.ctl("await_startup", timeout=timeout)
        except BaseException:
            broker.stop()
            raise
        return broker

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=60)  # stops the node (and epmd keeps running, shared)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(30)
        # The script's children (beam.smp) are in its session: end them by PID.
        _kill_session(self.proc.pid)
        _stop_pid(self.proc)


def _kill_session(sid: int) -> None:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                os.kill(int(entry), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


@contextlib.contextmanager
def rabbit_vhost(prefix: str = "crtest", workdir: Path | None = None) -> Iterator[str]:
    """A fresh vhost's transport URL on the machine's RabbitMQ, or on one started here.

    For tests that need a real broker and must never fall back to
    oslo.messaging's in-process fake driver (which proves nothing about a
    consumer on the bus).
    """
    own_dir = Path(tempfile.mkdtemp(prefix="crmq.")) if workdir is None else workdir
    mq = RabbitMQ() if reachable(LOOPBACK, AMQP_PORT) else RabbitMQ.start_own(own_dir)
    vhost = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        mq.add_vhost(vhost)
        try:
            yield mq.url(vhost)
        finally:
            with contextlib.suppress(Exception):
                mq.delete_vhost(vhost)
    finally:
        mq.stop()
        if workdir is None:
            shutil.rmtree(own_dir, ignore_errors=True)


def queue_consumers(url: str, queue: str) -> int:
    """How many consumers the broker counts on ``queue`` of ``url``'s vhost (0 if there is no such queue).

    Asked with a passive ``queue.declare`` through kombu: the broker's own
    count, not what any service believes it consumes.
    """
    import kombu  # the tests' venv has it with oslo.messaging; only these tests need it

    # oslo.messaging's rabbit:// is kombu's amqp://
    with kombu.Connection(url.replace("rabbit://", "amqp://", 1)) as connection:
        try:
            return int(connection.channel().queue_declare(queue=queue, passive=True).consumer_count)
        except kombu.exceptions.ChannelError:
            return 0


# -- both, for one run -------------------------------------------------------------
@dataclass
class Backing:
    """The database and vhost of one run, and the servers they live on."""

    db: MariaDB
    mq: RabbitMQ
    database: str
    vhost: str

    @property
    def database_url(self) -> str:
        return self.db.url(self.database)

    @property
    def transport_url(self) -> str:
        return self.mq.url(self.vhost)


@contextlib.contextmanager
def backing_services(
    *,
    mysql_port: int = MYSQL_PORT,
    amqp_port: int = AMQP_PORT,
    workdir: Path | None = None,
    prefix: str = "crstack",
) -> Iterator[Backing]:
    """A fresh database and vhost on the machine's servers, or on ones started here.

    ``mysql_port``/``amqp_port`` say where to look; pointing them at a closed
    port exercises the start-our-own path.
    """
    own_dir = Path(tempfile.mkdtemp(prefix="crstack-svc.")) if workdir is None else workdir
    started: list[MariaDB | RabbitMQ] = []
    run_id = f"{prefix}_{uuid.uuid4().hex[:10]}"
    db: MariaDB | None = None
    mq: RabbitMQ | None = None
    try:
        if reachable(LOOPBACK, mysql_port):
            db = MariaDB(port=mysql_port)
        else:
            db = MariaDB.start_own(own_dir)
            started.append(db)
        if reachable(LOOPBACK, amqp_port):
            mq = RabbitMQ(port=amqp_port)
        else:
            mq = RabbitMQ.start_own(own_dir)
            started.append(mq)
        db.create_database(run_id)
        try:
            mq.add_vhost(run_id)
            try:
                yield Backing(db, mq, run_id, run_id)
            finally:
                with contextlib.suppress(Exception):
                    mq.delete_vhost(run_id)
        finally:
            with contextlib.suppress(Exception):
                db.drop_database(run_id)
    finally:
        for server in reversed(started):
            server.stop()
        if workdir is None:
            shutil.rmtree(own_dir, ignore_errors=True)


def service_hosts(backing: Backing, database: str) -> set[str]:
    """The ``host@backend`` of every cinder-volume service record in ``database``."""
    out = backing.db.sql(f"SELECT host FROM `{database}`.services WHERE `binary` = 'cinder-volume' AND deleted = 0")
    return {line.strip() for line in out.splitlines() if "@" in line}
