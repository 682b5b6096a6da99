"""Cached Debian roots with Debian's own cinder packages installed.

``cinder_root("sid")`` (systemd 262, Python 3.14, cinder 2:29) and
``cinder_root("trixie")`` (systemd 257, Python 3.13, cinder 2:26) return a
directory holding a minimal Debian system plus ``cinder-api``,
``cinder-scheduler``, ``cinder-volume`` and ``cinder-backup`` as the Debian
archive ships them, built once and kept under ``/var/cache/cinder-reload``
like the harness's plain trixie root (``roots.cached_root``: keyed, locked,
published by one rename).  This project's ``.deb`` is *not* in the cache:
a test installs the freshly built one into an overlay of the root.

Two steps, each from Debian's own tools: ``debootstrap --variant=minbase``
with the manager and the dependencies of ``python3-cinder-reload``, then
``apt-get install --no-install-recommends`` of the four cinder packages in a
private mount namespace with ``/proc`` mounted (their maintainer scripts add
the ``cinder`` user and the directories).  ``policy-rc.d`` forbids every
service start while that happens (Debian's convention for chroots).

sid's Release file served by the mirror here is past its ``Valid-Until``
date, so the root gets ``Acquire::Check-Valid-Until "false"`` in its apt
configuration (every later ``apt-get`` inside reads it too).

First build on this machine kind: ~1 min of debootstrap plus ~2 min of apt
per suite (~700 MB each); later runs find the root in the cache.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .roots import CACHE_DIR, MIRROR, RootBuildError, cached_root

__all__ = ["CINDER_PACKAGES", "SUITES", "Suite", "SuiteRoot", "cinder_root"]

Suite = Literal["sid", "trixie"]

#: Bump when the preparation after debootstrap changes.
FORMAT = 1

#: Besides minbase: the manager, the LSB tooling and what the .deb of
#: cinder-reload depends on, so installing it later needs no download.
BASE_PACKAGES = (
    "systemd",  # the user manager under test (sid: 262, trixie: 257), systemctl, systemd-analyze
    "dbus",
    "python3",  # sid: 3.14, trixie: 3.13
    "python3-oslo.config",  # python3-cinder-reload's Depends
    "python3-jinja2",
    "python3-sdnotify",  # its Depends (the fallback notifier)
    "python3-systemd",  # its Recommends (libsystemd's sd_notify)
    "sysvinit-utils",  # /lib/lsb/init-functions
    "init-system-helpers",  # service, invoke-rc.d
    "procps",
)

#: Debian's cinder, exactly as an operator installs it (its Depends only).
CINDER_PACKAGES = ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup")

APT_OPTS = ("-o", "Acquire::Check-Valid-Until=false", "-o", "Dpkg::Use-Pty=0")


@dataclass(frozen=True)
class SuiteRoot:
    """What a suite's root is expected to hold (checked by the tests, not assumed)."""

    suite: Suite
    systemd_major: int
    cinder_upstream: str  # the upstream part of Debian's version, e.g. "29.0.0"


SUITES: dict[Suite, SuiteRoot] = {
    "sid": SuiteRoot("sid", 262, "29."),
    "trixie": SuiteRoot("trixie", 257, "26."),
}


def _key(suite: Suite) -> str:
    spec = {
        "suite": suite,
        "mirror": MIRROR,
        "base": sorted(BASE_PACKAGES),
        "cinder": sorted(CINDER_PACKAGES),
        "format": FORMAT,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _run_logged(cmd: list[str], log: Path, what: str) -> None:
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        raise RootBuildError(f"{what} failed ({proc.returncode}); log {log}:\n" + "\n".join(tail))


def _builder(suite: Suite):  # type: ignore[no-untyped-def]
    def build(target: Path, log: Path) -> dict[str, object]:
        log.write_text("")
        _run_logged(
            [
                "nice",
                "-n",
                "10",
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(BASE_PACKAGES),
                suite,
                str(target),
                MIRROR,
            ],
            log,
            f"debootstrap {suite}",
        )
        (target / "etc/apt/apt.conf.d/99cinder-reload-test").write_text(
            '// sid\'s Release file on this mirror is past its Valid-Until date.\nAcquire::Check-Valid-Until "false";\n'
        )
        policy = target / "usr/sbin/policy-rc.d"
        # No service starts inside the test root (Debian's convention for chroots).
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        script = (
            f"mount -t proc proc {target}/proc\n"
            f"mount -t tmpfs tmpfs {target}/run && mkdir -p {target}/run/lock\n"
            f"chroot {target} apt-get {' '.join(APT_OPTS)} update -q\n"
            f"DEBIAN_FRONTEND=noninteractive chroot {target} nice -n 10 apt-get {' '.join(APT_OPTS)} "
            f"install -y -q --no-install-recommends {' '.join(CINDER_PACKAGES)}\n"
            f"chroot {target} apt-get clean\n"
        )
        _run_logged(
            ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script], log, f"apt-get install ({suite})"
        )
        for name in CINDER_PACKAGES:
            if not (target / f"usr/lib/systemd/system/{name}.service").exists():
                raise RootBuildError(f"{suite}: {name} installed no /usr/lib/systemd/system/{name}.service; log {log}")
        return {"suite": suite, "mirror": MIRROR, "base": sorted(BASE_PACKAGES), "cinder": sorted(CINDER_PACKAGES)}

    return build


def cinder_root(suite: Suite) -> Path:
    """The cached root of ``suite`` with Debian's cinder (built on first use); read-only."""
    return cached_root(CACHE_DIR, f"{suite}-cinder-root", _key(suite), _builder(suite))
