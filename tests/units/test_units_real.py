"""The rendered units under real systemd user managers (252 and 257).

The unit is ``units/cinder-volume.service`` as ``render`` writes it (no
User=/Group=: a user manager cannot switch users), with one change: its
ExecStart= runs the reference daemon instead of ``cinder-reload run
cinder-volume``, and its ExecReload= names the daemon's state file
(``refdaemon``).  Everything else (Type=, NotifyAccess=, ExecReload=,
RuntimeDirectory=/RuntimeDirectoryPreserve=, TimeoutStartSec=, KillMode=)
is what an operator installs.
"""

from __future__ import annotations

import json
import shlex
import socket
from pathlib import Path

import pytest
from harness.managers import UserManager

from cinder_reload.render import SERVICES, RenderSpec, render_unit

pytestmark = pytest.mark.systemd

REPO = Path(__file__).resolve().parents[2]
UNIT = "cinder-volume.service"
REINIT_SECONDS = 1.0
VOLUME = next(s for s in SERVICES if s.name == "cinder-volume")


def _config(label: str, broken: bool = False) -> str:
    text = f"[DEFAULT]\nreinit_seconds = {REINIT_SECONDS}\n[backend1]\nlabel = {label}\n[backend2]\nlabel = steady\n"
    return text + ("[backend2\n" if broken else "")


def unit_for_refdaemon(manager: UserManager, systemd_version: int, workdir: Path) -> str:
    text = render_unit(
        RenderSpec(systemd_version=systemd_version, cinder_reload=manager.cinder_reload, user=None, group=None), VOLUME
    )
    argv = [
        manager.python, str(REPO / "tests/refdaemon.py"),
        "--config-file", str(workdir / "refdaemon.conf"),
        "--socket", str(workdir / "refdaemon.sock"),
        "--log-file", str(workdir / "refdaemon.log"),
    ]  # fmt: skip
    lines = []
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={shlex.join(argv)}"
        elif line.startswith("ExecReload="):
            line = line.replace(" signal cinder-volume ", " signal refdaemon ")
        lines.append(line)
    return "\n".join(lines) + "\n"


def ask(path: Path) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(b"backend1\n")
        return client.makefile("r").readline().strip()


def exercise(manager: UserManager, workdir: Path, systemd_version: int) -> None:
    (workdir / "refdaemon.conf").write_text(_config("one"))
    manager.install_unit(UNIT, unit_for_refdaemon(manager, systemd_version, workdir))
    manager.start(UNIT, timeout=60).check()
    props = manager.wait_for(UNIT, 30, ActiveState="active", SubState="running")
    pid = props["MainPID"]
    state_file = manager.host_path(f"{manager.runtime_dir}/cinder/refdaemon.reload.json")
    assert ask(workdir / "refdaemon.sock") == "backend1 label=one generation=0 greeting=hello"

    # systemctl reload: returns when the cycle ended, same process, new label served.
    (workdir / "refdaemon.conf").write_text(_config("two"))
    reload = manager.reload(UNIT).check()
    assert reload.duration >= REINIT_SECONDS, f"returned before the reload ran: {reload}"
    assert manager.show(UNIT)["MainPID"] == pid
    assert json.loads(state_file.read_text())["generation"] == 1
    assert ask(workdir / "refdaemon.sock") == "backend1 label=two generation=1 greeting=hello"

    # A broken file: refused, the service keeps running its configuration.
    (workdir / "refdaemon.conf").write_text(_config("never", broken=True))
    broken = manager.reload(UNIT)
    props = manager.show(UNIT)
    if systemd_version >= 253:
        # notify-reload has no "reload failed": READY=1 + STATUS= (doc/source/admin/units.rst).
        assert broken.returncode == 0, broken
        assert props["StatusText"].lower().startswith("reload failed"), props
    else:
        assert broken.returncode != 0, f"a refused reload must fail `systemctl reload`: {broken}"
    assert props["MainPID"] == pid and props["ActiveState"] == "active", props
    assert json.loads(state_file.read_text())["result"] != "ok"
    assert ask(workdir / "refdaemon.sock") == "backend1 label=two generation=1 greeting=hello"

    # Stop: the shared runtime directory stays (another unit's state file with it).
    other = state_file.parent / "cinder-scheduler.reload.json"
    other.write_text("{}\n")
    manager.stop(UNIT).check()
    assert other.exists() and state_file.exists(), "RuntimeDirectoryPreserve=yes: stopping one unit keeps /run/cinder"


def test_rendered_unit_systemd_252(systemd252: UserManager, harness_workdir: Path) -> None:
    exercise(systemd252, harness_workdir, 252)


@pytest.mark.parametrize("flavour", [252, 257], ids=["flavour-lt-253", "flavour-notify-reload"])
def test_rendered_unit_systemd_257(flavour: int, systemd257: UserManager, harness_workdir: Path) -> None:
    exercise(systemd257, harness_workdir, flavour)
