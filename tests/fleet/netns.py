"""The fleet test's network: network namespaces on a bridge of the test's own.

``ip netns add`` makes one namespace for the infrastructure and one per
cinder-volume host; the bridge lives in the infrastructure namespace; each
host gets a veth pair straight across (``eth0`` in the host), and one more
pair reaches the root namespace (where pytest and Ansible run) with an
address of its own.  Addresses only on these interfaces, no default route:
nothing can leave this machine (../shared/notes/fleet-hosts.md).

Code that must run *inside* a namespace (the infrastructure's servers,
started by tests/stack/infra.py and tests/harness/ceph.py, which know
nothing of namespaces) runs on an :class:`InNetns` executor: a thread that
entered the namespace with ``setns(2)``.  A network namespace belongs to a
thread, and processes and threads it starts inherit it, so those helpers
work unchanged there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["FleetNetwork", "InNetns", "netns_processes"]

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {out.stderr.strip()}")


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=False)
    nets = []
    for line in out.stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(first if "/" in first else f"{first}/32", strict=False))
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 in 10.213.0.0/16 that no route on this machine touches."""
    used = _used_networks()
    for third in [int(uuid.uuid4().int % 250) + 2, *range(2, 252)]:
        candidate = ipaddress.ip_network(f"10.213.{third}.0/24")
        if not any(candidate.overlaps(net) for net in used if not net.is_loopback and net.prefixlen > 0):
            return candidate
    raise RuntimeError("no free /24 in 10.213.0.0/16 for the fleet test's network")


def netns_processes(name: str) -> list[int]:
    """PIDs whose network namespace is ``/run/netns/NAME``."""
    try:
        wanted = os.stat(f"{NETNS_DIR}/{name}").st_ino
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == wanted:
                found.append(int(entry))
        except OSError:
            continue
    return found


class InNetns:
    """A one-thread executor living in a network namespace (``setns(2)`` on that thread only)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"netns-{name}", initializer=self._enter)

    def _enter(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(f"{NETNS_DIR}/{self.name}", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns into {self.name}: {os.strerror(errno)}")
        finally:
            os.close(fd)

    def call(self, func: Callable[..., T], *args: object, **kwargs: object) -> T:
        return self._pool.submit(func, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class FleetNetwork:
    """An infrastructure namespace with a bridge, N host namespaces and a leg into the root namespace."""

    hosts: Sequence[str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    subnet: ipaddress.IPv4Network = field(default_factory=_free_subnet)
    created: list[str] = field(default_factory=list)

    @property
    def infra(self) -> str:
        return f"crf{self.tag}-infra"

    def netns(self, host: str) -> str:
        return f"crf{self.tag}-{host}"

    @property
    def root_link(self) -> str:
        return f"crf{self.tag}"  # a name in the root namespace: short and ours

    def address(self, who: str) -> str:
        """infra .1, host N (h1, h2, ...) .10+N, the root namespace .254."""
        offset = {"infra": 1, "root": 254}.get(who) or 10 + list(self.hosts).index(who) + 1
        return str(self.subnet.network_address + offset)

    @property
    def prefix(self) -> int:
        return self.subnet.prefixlen

    def create(self) -> None:
        try:
            for name in (self.infra, *(self.netns(h) for h in self.hosts)):
                _ip("netns", "add", name)
                self.created.append(name)
                _ip("link", "set", "lo", "up", netns=name)
            _ip("link", "add", "br0", "type", "bridge", netns=self.infra)
            _ip("addr", "add", f"{self.address('infra')}/{self.prefix}", "dev", "br0", netns=self.infra)
            _ip("link", "set", "br0", "up", netns=self.infra)
            legs = [(f"v-{h}", self.netns(h), "eth0", self.address(h)) for h in self.hosts]
            for leg, netns, inner, addr in legs:
                _ip("link", "add", leg, "netns", self.infra, "type", "veth", "peer", "name", inner, "netns", netns)
                _ip("link", "set", leg, "master", "br0", "up", netns=self.infra)
                _ip("addr", "add", f"{addr}/{self.prefix}", "dev", inner, netns=netns)
                _ip("link", "set", inner, "up", netns=netns)
            _ip("link", "add", self.root_link, "type", "veth", "peer", "name", "v-root", "netns", self.infra)
            _ip("link", "set", "v-root", "master", "br0", "up", netns=self.infra)
            _ip("addr", "add", f"{self.address('root')}/{self.prefix}", "dev", self.root_link)
            _ip("link", "set", self.root_link, "up")
        except BaseException:
            self.destroy()
            raise

    def destroy(self) -> None:
        """Delete the namespaces (their veths go with them) and the root leg; never fails."""
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", self.root_link)
        for name in reversed(self.created):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "del", name)
        self.created.clear()


@contextlib.contextmanager
def fleet_network(hosts: Sequence[str]) -> Iterator[FleetNetwork]:
    net = FleetNetwork(hosts)
    net.create()
    try:
        yield net
    finally:
        net.destroy()
