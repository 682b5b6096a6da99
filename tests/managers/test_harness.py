"""The harness's own promises, and the CLI behaviour a manager relies on."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness.commands import wait_until
from harness.fixtures import namespaces_unavailable
from harness.namespaces import REPO, processes_in_mount_ns
from harness.refservice import RefService, SystemdRefService, SysvRefService
from harness.roots import STAMP, cached_root, root_key, trixie_root
from harness.units import refdaemon_initscript
from helpers import start_sighup_catcher

from cinder_reload.render import RenderSpec, ServiceSpec, render_unit


@pytest.mark.systemd
def test_trixie_root_is_built_once_and_keyed() -> None:
    if namespaces_unavailable():
        pytest.skip(namespaces_unavailable() or "")
    root = trixie_root()
    stamp = json.loads((root / STAMP).read_text())
    assert stamp["key"] == root_key()
    assert (root / "usr/lib/systemd/systemd").exists()
    started = time.monotonic()
    assert trixie_root() == root  # cached: no rebuild, same directory
    assert time.monotonic() - started < 1.0
    assert root_key(("systemd",)) != root_key()  # another package list, another root


@pytest.mark.systemd
def test_managers_leave_nothing_behind(harness_workdir: Path, request: pytest.FixtureRequest) -> None:
    manager = request.getfixturevalue("systemd257")
    ns = manager.ns.ns
    assert manager.version >= 257
    assert processes_in_mount_ns(ns)
    manager.close()
    assert processes_in_mount_ns(ns) == []


@pytest.mark.process
def test_sigterm_ends_a_synchronous_reload_wait_with_status_0(tmp_path: Path) -> None:
    """systemd SIGTERMs ExecReload= when a stop cancels the reload; that must not fail the unit."""
    marker = tmp_path / "got-hup"
    # A "service" that notes the SIGHUP and never finishes a reload cycle.
    target = start_sighup_catcher(marker, 120)
    try:
        # Its state file names it (and says it is mid-cycle, so the waiter
        # expects no prompt write): `signal` refuses a pid that is not the service's.
        (tmp_path / "svc.reload.json").write_text(
            json.dumps({"service": "svc", "pid": target.pid, "generation": 0, "in_progress": {"phase": "draining"}})
        )
        waiter = subprocess.Popen(
            [
                str(REPO / ".venv/bin/cinder-reload"),
                "signal",
                "svc",
                "--pid",
                str(target.pid),
                "--wait",
                "--timeout",
                "60",
                "--state-dir",
                str(tmp_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until(marker.exists, bool, timeout=30, what="the SIGHUP to arrive")
        waiter.send_signal(signal.SIGTERM)
        out, err = waiter.communicate(timeout=10)
        assert waiter.returncode == 0, (out, err)
        assert "SIGTERM" in out + err
    finally:
        target.kill()
        target.wait()


def test_the_installed_unit_is_the_rendered_one_but_for_exec_start(
    deploy_refdaemon: Callable[..., RefService], manager_path: str
) -> None:
    """The harness installs issue 3's rendered unit/script, changed only where a test must."""
    service = deploy_refdaemon()
    if isinstance(service, SysvRefService):
        installed = service.script_path.read_text()
        assert installed == refdaemon_initscript(service.paths)
        assert "--notify-await" in installed and 'signal "$RELOAD_NAME"' in installed
        return
    assert isinstance(service, SystemdRefService)
    installed = service.unit_path.read_text()
    spec = RenderSpec(
        systemd_version=service.flavour_version,
        cinder_reload=service.manager.cinder_reload,
        user=None,
        group=None,
        timeout_stop=10,
        services=(ServiceSpec("refdaemon", "Reference daemon (tests)", True, 30, "refdaemon.log"),),
    )
    rendered = render_unit(spec, spec.services[0])

    def without_exec_start(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("ExecStart=")]

    assert without_exec_start(installed) == without_exec_start(rendered)
    expected_type = "Type=notify-reload" if service.flavour_version >= 253 else "Type=notify"
    assert expected_type in installed.splitlines(), installed


class _Killed(BaseException):
    """Stands in for a build killed half-way (KeyboardInterrupt, SIGTERM -> SystemExit)."""


def test_cached_root_publishes_only_complete_builds(tmp_path: Path) -> None:
    builds: list[str] = []

    def good(target: Path, log: Path) -> dict[str, object]:
        builds.append(target.name)
        (target / "etc").mkdir()
        (target / "etc/os-release").write_text("fake\n")
        return {"what": "fake"}

    def killed(target: Path, log: Path) -> dict[str, object]:
        (target / "half").write_text("half a root")
        raise _Killed()

    with pytest.raises(_Killed):
        cached_root(tmp_path, "r", "k1", killed)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.lock"], "a failed build left something behind"

    (tmp_path / ".r.building.dead").mkdir()  # what a SIGKILLed build leaves: never published
    first = cached_root(tmp_path, "r", "k1", good)
    assert not (tmp_path / ".r.building.dead").exists()
    assert first == tmp_path / "r.k1" and (tmp_path / "r").resolve() == first
    assert json.loads((first / STAMP).read_text())["key"] == "k1"
    assert cached_root(tmp_path, "r", "k1", good) == first and len(builds) == 1  # cached

    with pytest.raises(_Killed):  # a new key whose build dies: the old root stays published
        cached_root(tmp_path, "r", "k2", killed)
    assert (tmp_path / "r").resolve() == first

    second = cached_root(tmp_path, "r", "k2", good)  # a new key: rebuilt, published, old removed
    assert (tmp_path / "r").resolve() == second == tmp_path / "r.k2"
    assert not first.exists() and len(builds) == 2
