"""``systemd-analyze verify`` on every rendered unit and drop-in.

systemd 252 is this Debian 12 host's own (it does not know
Type=notify-reload, so only the < 253 flavour is verified with it); systemd
257 is the cached Debian 13 root's (tests/harness/roots.py), seen through
the harness's overlay, where both flavours are verified.  ``verify`` checks
that every command exists, so the units are rendered with the path of a
real ``cinder-reload`` on each system.

The distributions' own units are reproduced here as they ship (Debian's as
openstack-pkg-tools' pkgos-gen-systemd-unit writes it, RDO's from
openstack-cinder.spec), to verify each drop-in on top of the unit it extends.
Their ExecStart= names a program that does not exist here, so ``verify``
passing also proves the drop-in was read and reset ExecStart=.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cinder_reload.render import DISTROS, SERVICES, DistroUnits, RenderSpec, ServiceSpec, render_tree, write_tree

pytestmark = pytest.mark.systemd

HOST_CINDER_RELOAD = str(Path(sys.executable).parent / "cinder-reload")
ROOT_CINDER_RELOAD = "/usr/local/bin/cinder-reload"  # the harness's launcher in the Debian 13 root


def distro_unit(distro: DistroUnits, service: ServiceSpec) -> str:
    if distro.key == "debian":
        return f"""[Unit]
Description=OpenStack Cinder {service.title} ({service.name})
After=mysql.service postgresql.service rabbitmq-server.service keystone.service network-online.target
Wants=network-online.target
Documentation=man:{service.name}(1)

[Service]
User=cinder
Group=cinder
Type=simple
WorkingDirectory=~
RuntimeDirectory=cinder lock/cinder
CacheDirectory=cinder
ExecStart=/etc/init.d/{service.name} systemd-start
Restart=on-failure
LimitNOFILE=65535
TimeoutStopSec=15

[Install]
WantedBy=multi-user.target
"""
    return f"""[Unit]
Description=OpenStack Cinder {service.title} Server
After=syslog.target network.target

[Service]
Type=simple
User=cinder
ExecStart=/usr/bin/{service.name} --config-file /usr/share/cinder/cinder-dist.conf \\
    --config-file /etc/cinder/cinder.conf --logfile /var/log/cinder/{service.rdo_log}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def prepare(out: Path, spec: RenderSpec) -> list[Path]:
    """Render ``spec`` under ``out``; put each drop-in next to a copy of the unit it extends.
    Returns the unit files to verify."""
    write_tree(render_tree(spec), out)
    units = sorted((out / "units").glob("*.service")) + sorted((out / "units").glob("*.path"))
    for distro in DISTROS.values():
        base = out / "units" / "dropins" / distro.key
        for service in SERVICES:
            unit = base / distro.unit(service)
            unit.write_text(distro_unit(distro, service).replace("man:cinder", "https://example.org/cinder"))
            units.append(unit)
    return units


def verify_all(units: list[Path], run: Callable[[list[str]], tuple[int, str]]) -> None:
    failures = []
    for unit in units:
        code, output = run(["systemd-analyze", "verify", str(unit)])
        # verify only warns (exit 0) about many problems, e.g. an unknown
        # Type=: any output is a failure.
        if code != 0 or output.strip():
            failures.append(f"{unit.relative_to(unit.parents[2])}: exit {code}\n{output}")
    assert not failures, "\n".join(failures)


def _host_run(argv: list[str]) -> tuple[int, str]:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_verify_252_host(tmp_path: Path) -> None:
    version = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith("systemd 252"), version
    units = prepare(tmp_path, RenderSpec(systemd_version=252, cinder_reload=HOST_CINDER_RELOAD))
    assert len(units) == 4 + 4 + 4 + 8
    verify_all(units, _host_run)


def test_verify_catches_a_missing_dropin(tmp_path: Path) -> None:
    """Without its drop-in, Debian's unit fails verify here: proof the drop-ins are read above."""
    units = prepare(tmp_path, RenderSpec(systemd_version=252, cinder_reload=HOST_CINDER_RELOAD))
    debian = next(u for u in units if u.parent.name == "debian" and u.name == "cinder-volume.service")
    (debian.parent / "cinder-volume.service.d" / "reload.conf").unlink()
    code, output = _host_run(["systemd-analyze", "verify", str(debian)])
    assert code != 0 and "/etc/init.d/cinder-volume" in output, output


def test_verify_252_rejects_notify_reload(tmp_path: Path) -> None:
    """Why the default flavour is < 253: systemd 252 ignores Type=notify-reload."""
    units = prepare(tmp_path, RenderSpec(systemd_version=253, cinder_reload=HOST_CINDER_RELOAD))
    code, output = _host_run(["systemd-analyze", "verify", str(units[0])])
    assert "Failed to parse service type, ignoring: notify-reload" in output


@pytest.mark.parametrize("version", [252, 257, 262], ids=["flavour-lt-253", "flavour-notify-reload", "flavour-ge-259"])
def test_verify_257_debian13(version: int, sysv_root, harness_workdir: Path) -> None:  # type: ignore[no-untyped-def]
    probe = sysv_root.run(["systemd-analyze", "--version"])
    assert probe.stdout.startswith("systemd 257"), probe
    units = prepare(harness_workdir / "out", RenderSpec(systemd_version=version, cinder_reload=ROOT_CINDER_RELOAD))

    def run(argv: list[str]) -> tuple[int, str]:
        result = sysv_root.run(argv)
        return result.returncode, result.output

    verify_all(units, run)
    # The same check does see problems there: a unit with a bad setting.
    bad = harness_workdir / "out" / "bad.service"
    bad.write_text(f"[Service]\nType=bogus\nExecStart={ROOT_CINDER_RELOAD} status x\n")
    code, output = run(["systemd-analyze", "verify", str(bad)])
    assert "bogus" in output, output


def _exposure(unit: Path) -> float:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)], capture_output=True, text=True, check=False
    )
    last = proc.stdout.strip().splitlines()[-1]  # "→ Overall exposure level for NAME: 1.5 OK 🙂"
    return float(last.split(": ")[1].split()[0])


def test_security_exposure_252(tmp_path: Path) -> None:
    """The figures in doc/source/admin/units.rst: the sandboxed units score far below the
    distributions' units; the storage units score like them, on purpose."""
    units = prepare(tmp_path, RenderSpec(systemd_version=252, cinder_reload=HOST_CINDER_RELOAD))
    ours = {u.name: _exposure(u) for u in units if u.parent.name == "units" and u.suffix == ".service"}
    rdo = {u.name: _exposure(u) for u in units if u.parent.name == "rdo"}
    for name in ("cinder-api.service", "cinder-scheduler.service"):
        assert ours[name] <= 2.0, ours
        assert ours[name] < rdo[f"openstack-{name}"] - 5, (ours, rdo)
    for name in ("cinder-volume.service", "cinder-backup.service"):
        assert ours[name] == rdo[f"openstack-{name}"], (ours, rdo)


@pytest.mark.parametrize("version", [252, 257, 262], ids=["flavour-lt-253", "flavour-notify-reload", "flavour-ge-259"])
def test_verify_262_sid(version: int, harness_workdir: Path) -> None:
    """Every flavour and drop-in verifies with sid's systemd 262 (the cached sid root, no manager)."""
    from harness.cinder_roots import cinder_root
    from harness.namespaces import BASE_PATH, RootNamespace

    ns = RootNamespace(cinder_root("sid"), harness_workdir, binds=[harness_workdir], systemd_run_dir=False)
    ns.start("/bin/sleep infinity", {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root"})
    try:
        probe = ns.run(["systemd-analyze", "--version"])
        assert probe.stdout.startswith("systemd 262"), probe
        units = prepare(harness_workdir / "out", RenderSpec(systemd_version=version, cinder_reload=ROOT_CINDER_RELOAD))

        def run(argv: list[str]) -> tuple[int, str]:
            result = ns.run(argv)
            return result.returncode, result.output

        verify_all(units, run)
    finally:
        ns.kill_all()
        ns.cleanup()
