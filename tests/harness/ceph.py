"""Real throw-away Ceph clusters for tests: one mon, one memstore OSD, cephx, no mgr.

The recipe (settings, order, timings, pitfalls) is in
``../shared/notes/ceph.md``.  Each cluster keeps all of its state in one
directory (conf, keyrings, mon and OSD data, logs, pid files, admin sockets)
and binds only its own address, so two clusters run side by side on
127.0.0.1 and 127.0.0.2.  Authentication is cephx, as deployments use it, so a
client with the wrong user or keyring fails here as it would in production.

Daemons daemonize; ``CephCluster.stop`` ends them by the PIDs in their pid
files, after checking that the command line names this cluster's conf.  To
see whether a process still talks to a cluster: ``client_sessions`` (the mon's
sessions, by entity such as ``client.cinder``) and ``client_pids`` (who holds
TCP connections to the cluster's daemons).
Nothing here uses ``/etc/ceph``, ``/var/lib/ceph`` or ``/var/log/ceph``.
"""

from __future__ import annotations

import base64
import fcntl
import glob
import json
import os
import shutil
import signal
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from .commands import CommandResult, WaitTimeout, run, wait_until

__all__ = [
    "CephCluster",
    "CephError",
    "ceph_available",
    "rados_pythonpath",
    "running_cluster",
    "start_cluster",
]

BINARIES = ("ceph", "ceph-mon", "ceph-osd", "monmaptool", "rados", "rbd")
PACKAGES = "ceph-mon ceph-osd ceph-common python3-rados python3-rbd"
DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
BINDINGS = ("rados", "rbd")

MON_ID = "a"
MON_PORTS = (3300, 6789)  # msgr2, msgr1: fixed, so `mon host` can name them
#: From nothing to ready is ~1.5 s; the deadline only bounds a cluster that never gets there.
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
#: The ceph CLI's own bound on reaching the mon (it would hunt for 300 s); subprocess timeouts bound the rest.
CLIENT_ARGS = ("--connect-timeout", "10")

DEFAULT_USERS: Mapping[str, Sequence[str]] = MappingProxyType({"cinder": ("volumes",)})


class CephError(RuntimeError):
    """A cluster did not start or a command against it failed; the message says why."""


def ceph_available() -> str | None:
    """Why real Ceph clusters cannot run here, or None when they can.

    Tests call ``pytest.fail`` with this reason (CI must not skip them), so it
    names what is missing and the Debian packages that provide it.
    """
    missing = [binary for binary in BINARIES if shutil.which(binary) is None]
    if missing:
        return f"Ceph binaries not found on PATH: {', '.join(missing)} (apt-get install {PACKAGES})"
    for module in BINDINGS:
        if not _binding_files(module):
            return (
                f"Debian's Python binding {module} not found as {DIST_PACKAGES}/{module}*.so "
                f"(apt-get install python3-{module})"
            )
    return None


def _binding_files(module: str) -> list[Path]:
    return [Path(path) for path in sorted(glob.glob(str(DIST_PACKAGES / f"{module}*.so")))]


def rados_pythonpath(directory: Path) -> Path:
    """Make ``directory`` a ``PYTHONPATH`` entry that holds only Debian's rados and rbd modules.

    Symlinks to ``/usr/lib/python3/dist-packages/{rados,rbd}*.so``: a pip venv
    (pyenv's 3.11, the same ABI as Debian's 3.11) can then ``import rados, rbd``
    without ``--system-site-packages``, whose Debian copies of pyOpenSSL and
    requests would shadow the venv's.  Returns ``directory``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for module in BINDINGS:
        files = _binding_files(module)
        if not files:
            raise CephError(f"no {DIST_PACKAGES}/{module}*.so: apt-get install python3-{module}")
        for target in files:
            link = directory / target.name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
    return directory


def _cephx_key() -> str:
    """A new cephx secret, encoded as ``ceph-authtool --gen-print-key`` prints one.

    The encoding is CryptoKey's: type (1 = AES), creation time (seconds,
    nanoseconds), length, then 16 random bytes; all little-endian.
    """
    now = time.time_ns()
    secret = os.urandom(16)
    blob = struct.pack("<HIIH", 1, now // 1_000_000_000, now % 1_000_000_000, len(secret)) + secret
    return base64.b64encode(blob).decode()


def _keyring_entry(entity: str, key: str, caps: Mapping[str, str]) -> str:
    lines = [f"[{entity}]", f"\tkey = {key}"]
    lines += [f'\tcaps {service} = "{cap}"' for service, cap in caps.items()]
    return "\n".join(lines) + "\n"


def _render_conf(directory: Path, fsid: str, address: str) -> str:
    v2, v1 = MON_PORTS
    return f"""\
# A throw-away test cluster: tests/harness/ceph.py.
[global]
fsid = {fsid}
mon host = [v2:{address}:{v2},v1:{address}:{v1}]
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = {directory}/$cluster.$name.keyring
run dir = {directory}/run
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
# The default, 1 s, makes every map change (a pool create, a snapshot id) wait ~1 s.
paxos propose interval = 0.05
mon allow pool delete = true

[mon]
mon data = {directory}/mon/$cluster-$id
public addr = {address}
log file = {directory}/$name.log
mon cluster log file = {directory}/$cluster.log
pid file = {directory}/run/$name.pid

[osd]
osd data = {directory}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = 1073741824
public addr = {address}
cluster addr = {address}
log file = {directory}/$name.log
pid file = {directory}/run/$name.pid

[client]
# Clients (cinder, rbd, rados, ceph) read this file too: no admin sockets or
# log files of theirs in the cluster's directory.  The mon keeps its socket.
admin socket =
log file = /dev/null
"""


def _cmdline(pid: int) -> list[str]:
    """A process's argv; empty when it is gone or a zombie (a zombie has no cmdline)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _names_conf(pid: int, conf: Path) -> bool:
    return str(conf) in _cmdline(pid)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"({path}: {error.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def _check_bindable(address: str) -> None:
    """Fail early and clearly when the mon's address cannot be bound or its ports are taken."""
    for port in MON_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the mon binds: a stopped cluster's TIME_WAIT connections must not count as taken.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address, port))
            except OSError as error:
                raise CephError(
                    f"cannot bind {address}:{port} for the mon ({error.strerror}): "
                    "another cluster on this address, or an address that is not local"
                ) from None


def _tcp_sockets() -> list[tuple[str, str, str, str]]:
    """IPv4 TCP sockets from /proc/net/tcp: (local ``ip:port``, remote ``ip:port``, state, inode)."""
    try:
        rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return []

    def endpoint(text: str) -> str:
        host, port = text.split(":")
        return f"{socket.inet_ntoa(struct.pack('<I', int(host, 16)))}:{int(port, 16)}"

    sockets = []
    for row in rows:
        fields = row.split()
        if len(fields) > 9:
            sockets.append((endpoint(fields[1]), endpoint(fields[2]), fields[3], fields[9]))
    return sockets


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets a process holds open (as /proc/net/tcp numbers them)."""
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


TCP_ESTABLISHED, TCP_LISTEN = "01", "0A"


@dataclass
class CephCluster:
    """One running throw-away cluster: a mon (``mon.a``) and an OSD (``osd.0``)."""

    name: str
    directory: Path
    address: str
    fsid: str
    conf: Path
    admin_keyring: Path
    pool: str = "volumes"

    # -- paths -----------------------------------------------------------------
    def keyring(self, user: str) -> Path:
        """``client.<user>``'s keyring: where the conf's ``keyring = DIR/$cluster.$name.keyring`` finds it."""
        return self.directory / f"ceph.client.{user}.keyring"

    @property
    def mon_socket(self) -> Path:
        return self.directory / "run" / f"ceph-mon.{MON_ID}.asok"

    def _pid_file(self, daemon: str) -> Path:
        return self.directory / "run" / f"{daemon}.pid"

    def logs(self) -> str:
        """The tails of the mon's and the OSD's logs, for failure messages."""
        parts = []
        for daemon in (f"mon.{MON_ID}", "osd.0"):
            parts.append(f"----- {daemon} log ({self.directory / (daemon + '.log')}) -----")
            parts.append(_tail(self.directory / f"{daemon}.log"))
        return "\n".join(parts)

    # -- commands --------------------------------------------------------------
    def ceph(self, *args: str, user: str = "admin", timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        """The ``ceph`` CLI against this cluster as ``client.<user>``; raises on failure."""
        return self._check(run(["ceph", "--conf", str(self.conf), "--id", user, *CLIENT_ARGS, *args], timeout=timeout))

    def rados(self, *args: str, user: str = "admin", timeout: float = COMMAND_TIMEOUT) -> CommandResult:
        """The ``rados`` CLI as ``client.<user>``; returns the result, failed or not."""
        return run(["rados", "--conf", str(self.conf), "--id", user, *args], timeout=timeout)

    def _check(self, result: CommandResult) -> CommandResult:
        if not result.ok:
            raise CephError(f"cluster {self.name} ({self.address}): {result}")
        return result

    def add_user(self, user: str, pools: Sequence[str]) -> Path:
        """``client.<user>`` with the caps cinder's docs give (``profile rbd`` on ``pools``); its keyring."""
        osd_caps = ", ".join(f"profile rbd pool={pool}" for pool in pools) or "profile rbd"
        path = self.keyring(user)
        self.ceph("auth", "get-or-create", f"client.{user}", "mon", "profile rbd", "osd", osd_caps, "-o", str(path))
        return path

    def create_pool(self, pool: str) -> None:
        """An RBD pool (8 PGs); returns once an object can be written to it."""
        _create_pool(self, pool)
        self._wait_writable(pool, "admin", START_TIMEOUT)

    def _wait_writable(self, pool: str, user: str, timeout: float) -> None:
        """Poll until ``rados put`` as ``client.<user>`` works (the PGs are active), then remove the object.

        Without a mgr ``ceph -s`` shows no PG states, so a write is the test.
        A put waits while the PGs peer; each attempt is bounded by the deadline.
        """
        payload = self.directory / "ready-object"
        payload.write_bytes(b"ready\n")
        obj = f"cinder-reload-harness-ready.{user}"
        deadline = time.monotonic() + timeout

        def attempt() -> CommandResult:
            remaining = max(deadline - time.monotonic(), 1.0)
            return self.rados(
                "-p",
                pool,
                "--rados-osd-op-timeout",
                f"{remaining:g}",
                "put",
                obj,
                str(payload),
                user=user,
                timeout=remaining + 5,
            )

        try:
            wait_until(attempt, lambda result: result.ok, timeout=timeout, what=f"`rados put` to {pool} as {user}")
        except WaitTimeout as error:
            raise CephError(
                f"cluster {self.name}: pool {pool} never became writable as client.{user}: {error}"
            ) from None
        self._check(self.rados("-p", pool, "rm", obj, user=user))

    def rbd_ls(self, pool: str | None = None) -> list[str]:
        """Image names in ``pool`` (default: the cluster's pool), as ``rbd ls`` shows them to the admin."""
        result = self._check(
            run(["rbd", "--conf", str(self.conf), "--id", "admin", "ls", pool or self.pool], timeout=COMMAND_TIMEOUT)
        )
        return result.stdout.split()

    def admin_command(self, prefix: str, **args: object) -> object:
        """A command on the mon's admin socket (no cluster session, no subprocess); its JSON answer."""
        request = json.dumps({"prefix": prefix, "format": "json", **args}).encode() + b"\0"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(COMMAND_TIMEOUT)
            sock.connect(str(self.mon_socket))
            sock.sendall(request)
            header = _recv_exactly(sock, 4)
            (length,) = struct.unpack(">I", header)
            return json.loads(_recv_exactly(sock, length) or b"null")

    def client_sessions(self) -> list[str]:
        """The mon's client sessions, one line each: ``ENTITY global_id=N addr=IP:PORT/NONCE``.

        E.g. ``client.cinder global_id=4121 addr=127.0.0.1:0/3142905494``, from
        the mon's admin socket ``sessions`` (so asking adds no session).  Filter
        by entity (``client.cinder``) to see whether anyone still holds a session
        as that user.  A session does not name its process: a ceph 16 client's
        nonce is random and its address has port 0; ``client_pids`` says which
        processes hold connections.
        """
        sessions = self.admin_command("sessions")
        lines = []
        for entry in sessions if isinstance(sessions, list) else []:
            if isinstance(entry, dict) and entry.get("con_type") == "client":
                entity = entry.get("entity_name") or entry.get("name", "?")
                lines.append(f"{entity} global_id={entry.get('global_id', '?')} addr={_addr(entry.get('addrs'))}")
        return lines

    def client_pids(self) -> set[int]:
        """PIDs of the processes on this host with a TCP connection to this cluster's mon or OSD.

        Found the way ``ss -tp`` finds them: the daemons' listening sockets, the
        established sockets whose far end is one of those, and the processes
        holding those (/proc/PID/fd).  The daemons themselves are left out.
        """
        daemons = {pid for pid in (self._daemon_pid("osd.0"), self._daemon_pid(f"mon.{MON_ID}")) if pid}
        owned = set().union(*(_socket_inodes(pid) for pid in daemons))
        table = _tcp_sockets()
        listening = {local for local, _, state, inode in table if state == TCP_LISTEN and inode in owned}
        wanted = {inode for _, remote, state, inode in table if state == TCP_ESTABLISHED and remote in listening}
        pids = set()
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in daemons and wanted & _socket_inodes(int(entry)):
                pids.add(int(entry))
        return pids

    # -- lifecycle ---------------------------------------------------------------
    def stop(self) -> None:
        """End the OSD, then the mon (an OSD whose mon is gone waits to say goodbye); wait until both are gone.

        By the PIDs in their pid files, and only if that process's command line
        names this cluster's conf: a stale pid file must not kill a stranger.
        SIGTERM, then SIGKILL if a daemon outlives the deadline.  Idempotent.
        """
        for daemon in ("osd.0", f"mon.{MON_ID}"):
            pid = self._daemon_pid(daemon)
            if pid is None:
                continue
            self._signal(pid, signal.SIGTERM)
            try:
                self._wait_gone(pid, f"{daemon} (pid {pid}) to exit on SIGTERM")
            except WaitTimeout:
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, f"{daemon} (pid {pid}) to die of SIGKILL")

    def _signal(self, pid: int, signum: signal.Signals) -> None:
        if _names_conf(pid, self.conf):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # gone between the check and the signal

    def _wait_gone(self, pid: int, what: str) -> None:
        """Gone: no such process, a zombie (no command line) or, PID reused, a process not of this conf."""

        def alive() -> bool:
            return _names_conf(pid, self.conf)

        wait_until(alive, lambda running: not running, timeout=STOP_TIMEOUT, what=what)

    def _daemon_pid(self, daemon: str) -> int | None:
        try:
            pid = int(self._pid_file(daemon).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _names_conf(pid, self.conf) else None


def _addr(addrs: object) -> str:
    """The v1 (else first) address of an entity_addrvec dump, as ``IP:PORT/NONCE``."""
    vec = addrs.get("addrvec", []) if isinstance(addrs, dict) else []
    items = [item for item in vec if isinstance(item, dict)]
    if not items:
        return "?"
    chosen = next((item for item in items if item.get("type") == "v1"), items[0])
    return f"{chosen.get('addr', '?')}/{chosen.get('nonce', '?')}"


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise CephError(f"admin socket closed after {len(data)} of {count} bytes")
        data += chunk
    return data


def start_cluster(
    directory: Path,
    name: str,
    address: str,
    *,
    users: Mapping[str, Sequence[str]] = DEFAULT_USERS,
    pools: Sequence[str] = ("volumes",),
) -> CephCluster:
    """Create and start a cluster in ``directory`` (made if missing; should be empty) bound to ``address``.

    Returns once every pool in ``pools`` takes a write from the admin and from
    each user in ``users`` (``{user: pools it may use}``) that may use it.  On
    failure whatever was started is stopped, and the error carries the tails
    of the mon's and the OSD's logs.
    """
    reason = ceph_available()
    if reason:
        raise CephError(reason)
    directory = directory.resolve()
    _check_bindable(address)
    for sub in ("run", f"mon/ceph-{MON_ID}", "osd/ceph-0"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    fsid = str(uuid.uuid4())
    conf = directory / "ceph.conf"
    conf.write_text(_render_conf(directory, fsid, address))
    cluster = CephCluster(
        name=name,
        directory=directory,
        address=address,
        fsid=fsid,
        conf=conf,
        admin_keyring=directory / "ceph.client.admin.keyring",
        pool=pools[0] if pools else "volumes",
    )
    try:
        _bootstrap(cluster, users, pools)
    except Exception as error:
        stopped = _stop_quietly(cluster)
        raise CephError(
            f"cluster {name} ({address}) in {directory} did not start: {error}{stopped}\n{cluster.logs()}"
        ) from error
    except BaseException:  # KeyboardInterrupt, pytest's timeout: nothing left running, then on its way
        _stop_quietly(cluster)
        raise
    return cluster


def _stop_quietly(cluster: CephCluster) -> str:
    """Stop what a failed start left running; a note for the message if that failed too."""
    try:
        cluster.stop()
    except Exception as error:  # the start's error is the one to report; this one is appended
        return f"\n(and stopping what was started failed: {error})"
    return ""


def _bootstrap(cluster: CephCluster, users: Mapping[str, Sequence[str]], pools: Sequence[str]) -> None:
    """Keys and the mon first (everything else talks to it), then the rest side by side."""
    directory, conf, address = cluster.directory, str(cluster.conf), cluster.address
    admin = _keyring_entry(
        "client.admin",
        _cephx_key(),
        {"mon": "allow *", "osd": "allow *", "mds": "allow *", "mgr": "allow *"},
    )
    cluster.admin_keyring.write_text(admin)
    # The mon's keyring holds client.admin before --mkfs: the admin can talk to it from the start.
    (directory / f"ceph.mon.{MON_ID}.keyring").write_text(
        _keyring_entry("mon.", _cephx_key(), {"mon": "allow *"}) + admin
    )
    monmap = directory / "monmap"
    v2, v1 = MON_PORTS
    check = cluster._check
    check(
        run(
            [
                "monmaptool",
                "--create",
                "--fsid",
                cluster.fsid,
                "--addv",
                MON_ID,
                f"[v2:{address}:{v2},v1:{address}:{v1}]",
                str(monmap),
            ],
            timeout=COMMAND_TIMEOUT,
        )
    )
    check(run(["ceph-mon", "--conf", conf, "-i", MON_ID, "--mkfs", "--monmap", str(monmap)], timeout=COMMAND_TIMEOUT))
    check(run(["ceph-mon", "--conf", conf, "-i", MON_ID], timeout=COMMAND_TIMEOUT))

    # Three independent branches, each a chain of mon commands: ~0.35 s per `ceph` CLI
    # run, so running them side by side is most of what makes a start ~1.5 s, not ~2.5.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix=f"ceph-{cluster.name}") as branches:
        started = [
            branches.submit(_start_osd, cluster),
            branches.submit(_create_pools, cluster, pools),
            branches.submit(_add_users, cluster, users),
        ]
        for branch in started:
            branch.result()  # re-raises a failure; leaving the block waits for the other branches
    for pool in pools:
        cluster._wait_writable(pool, "admin", START_TIMEOUT)
    for user, granted in users.items():
        for pool in granted:
            if pool in pools:
                cluster._wait_writable(pool, user, START_TIMEOUT)


def _start_osd(cluster: CephCluster) -> None:
    """Register osd.0 with its key (`osd new UUID -i secret.json`), mkfs it, start it."""
    directory, conf = cluster.directory, str(cluster.conf)
    osd_uuid = str(uuid.uuid4())
    osd_key = _cephx_key()
    secret = directory / "osd-secret.json"
    secret.write_text(json.dumps({"cephx_secret": osd_key}))
    osd_id = cluster.ceph("osd", "new", osd_uuid, "-i", str(secret)).stdout.strip()
    if osd_id != "0":
        raise CephError(f"`ceph osd new` gave id {osd_id!r}, expected 0")
    (directory / "ceph.osd.0.keyring").write_text(_keyring_entry("osd.0", osd_key, {}))
    cluster._check(
        run(["ceph-osd", "--conf", conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid], timeout=COMMAND_TIMEOUT)
    )
    cluster._check(run(["ceph-osd", "--conf", conf, "-i", "0"], timeout=COMMAND_TIMEOUT))


def _create_pool(cluster: CephCluster, pool: str) -> None:
    cluster.ceph("osd", "pool", "create", pool, "8", "8")
    cluster.ceph("osd", "pool", "application", "enable", pool, "rbd")


def _create_pools(cluster: CephCluster, pools: Sequence[str]) -> None:
    for pool in pools:
        _create_pool(cluster, pool)


def _add_users(cluster: CephCluster, users: Mapping[str, Sequence[str]]) -> None:
    for user, granted in users.items():
        cluster.add_user(user, granted)


@contextmanager
def running_cluster(
    directory: Path,
    name: str,
    address: str,
    *,
    users: Mapping[str, Sequence[str]] = DEFAULT_USERS,
    pools: Sequence[str] = ("volumes",),
) -> Iterator[CephCluster]:
    """``start_cluster`` for a ``with`` block: the cluster is stopped on exit, however the block ends.

    One block at a time per address on this host: the mon's ports are fixed
    (3300, 6789), and tests in other modules, run side by side by
    pytest-xdist (tools/test), use the same loopback addresses.  A block
    waits for the one before it to end (callers take 127.0.0.1 before
    127.0.0.2, so two waiting blocks cannot hold one each).
    """
    with _address_lock(address):
        cluster = start_cluster(directory, name, address, users=users, pools=pools)
        try:
            yield cluster
        finally:
            cluster.stop()


@contextmanager
def _address_lock(address: str) -> Iterator[None]:
    path = Path(tempfile.gettempdir()) / f"cinder-reload-ceph-{address}.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield
