"""pytest fixtures for real managers; load with ``pytest_plugins = ["harness.fixtures"]``.

Fixtures:
* ``harness_workdir``: a short private directory (UNIX socket paths must fit
  108 bytes), bind-mounted into the Debian root at the same path.
* ``systemd252``, ``systemd257``, ``systemd262``: a running user manager
  (``UserManager``), closed after the test (262: the cached sid root with a
  cgroup2-only /sys/fs/cgroup).
* ``sysv_root``: the manager-less Debian 13 root (``SysvRoot``).
* ``debian13_root``: the cached root's path (session scope, read-only).
* ``manager_path``: parametrised over the paths (``systemd-252``,
  ``systemd-257`` with the notify-reload flavour, ``systemd-257-sync`` with
  the < 253 flavour that the committed units/ use, ``systemd-262`` with the
  >= 259 flavour, ``sysv``), with the
  ``systemd``/``sysv`` marks, and
  ``deploy_refdaemon``: a factory that installs the reference daemon on that
  path (unit or init script), starts it and returns a ``RefService``.

Tests skip only when the machine cannot run them at all (not root, no
``unshare``/``nsenter``, no mount namespaces), saying which.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .managers import SystemdHost252, SystemdSid262, SystemdTrixie257, UserManager
from .refservice import RefService, SystemdRefService, SysvRefService
from .roots import trixie_root
from .sysv import SysvRoot

__all__ = ["namespaces_unavailable"]

PATHS = ("systemd-252", "systemd-257", "systemd-257-sync", "systemd-262", "sysv")


@functools.cache
def namespaces_unavailable() -> str | None:
    """Why the real-manager tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root (mount namespaces, chroot, debootstrap)"
    for tool in ("unshare", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux/coreutils)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create a private mount namespace here: {probe.stderr.strip()}"
    return None


def _require() -> None:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)


def _need_systemd_252() -> None:
    if not Path("/lib/systemd/systemd").exists():
        pytest.fail("systemd is not installed on the host: tools/setup installs it (tools/apt-packages.txt)")


@pytest.fixture
def harness_workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cr-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _dump_logs(workdir: Path) -> None:
    # Shown by pytest only when the test failed (captured output).
    for log in sorted(workdir.glob("*.log")):
        text = log.read_text(errors="replace")
        print(f"----- {log.name} (last 3000 chars) -----\n{text[-3000:]}")


@pytest.fixture(scope="session")
def debian13_root() -> Path:
    """The cached Debian 13 root (read-only; built on first use)."""
    _require()
    return trixie_root()


@pytest.fixture
def systemd252(harness_workdir: Path) -> Iterator[UserManager]:
    _require()
    _need_systemd_252()
    manager = SystemdHost252(harness_workdir)
    try:
        yield manager
    finally:
        manager.close()
        _dump_logs(harness_workdir)


@pytest.fixture
def systemd257(harness_workdir: Path) -> Iterator[UserManager]:
    _require()
    manager = SystemdTrixie257(harness_workdir)
    try:
        yield manager
    finally:
        manager.close()
        _dump_logs(harness_workdir)


@pytest.fixture
def systemd262(harness_workdir: Path) -> Iterator[UserManager]:
    _require()
    manager = SystemdSid262(harness_workdir)
    try:
        yield manager
    finally:
        manager.close()
        _dump_logs(harness_workdir)


@pytest.fixture
def sysv_root(harness_workdir: Path) -> Iterator[SysvRoot]:
    _require()
    root = SysvRoot(harness_workdir)
    try:
        yield root
    finally:
        root.close()
        _dump_logs(harness_workdir)


@pytest.fixture(
    params=[
        pytest.param("systemd-252", marks=pytest.mark.systemd, id="systemd-252"),
        pytest.param("systemd-257", marks=pytest.mark.systemd, id="systemd-257"),
        pytest.param("systemd-257-sync", marks=pytest.mark.systemd, id="systemd-257-sync"),
        pytest.param("systemd-262", marks=pytest.mark.systemd, id="systemd-262"),
        pytest.param("sysv", marks=pytest.mark.sysv, id="sysv"),
    ]
)
def manager_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def deploy_refdaemon(
    manager_path: str, harness_workdir: Path, request: pytest.FixtureRequest
) -> Callable[..., RefService]:
    """``deploy_refdaemon(config=None, timeout_start=30, timeout_stop=10)`` -> a started RefService.

    ``timeout_start`` is TimeoutStartSec= (the bound of a reload on systemd)
    or the init script's reload timeout; ``timeout_stop`` is TimeoutStopSec=
    or the script's stop timeout.
    """

    def deploy(config: str | None = None, timeout_start: float = 30, timeout_stop: float = 10) -> RefService:
        service: RefService
        if manager_path == "sysv":
            root: SysvRoot = request.getfixturevalue("sysv_root")
            service = SysvRefService(root, harness_workdir, reload_timeout=timeout_start, stop_timeout=timeout_stop)
        else:
            fixture = {"systemd-252": "systemd252", "systemd-262": "systemd262"}.get(manager_path, "systemd257")
            manager: UserManager = request.getfixturevalue(fixture)
            # systemd-257-sync: the committed default units (the < 253 flavour) on systemd 257.
            flavour = 252 if manager_path == "systemd-257-sync" else None
            service = SystemdRefService(
                manager,
                harness_workdir,
                timeout_start=timeout_start,
                timeout_stop=timeout_stop,
                flavour_version=flavour,
            )
        if config is not None:
            service.write_config(config)
        started = service.start()
        assert started.ok, f"{service.kind}: start failed: {started}\n{service.daemon_log()[-3000:]}"
        service.wait_answering()
        return service

    return deploy


def pytest_configure(config: Any) -> None:
    for marker in (
        "systemd: needs a real systemd user manager (252, 257 or 262)",
        "sysv: runs LSB init scripts for real",
    ):
        config.addinivalue_line("markers", marker)
