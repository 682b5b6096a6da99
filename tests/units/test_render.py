"""Rendering: the committed files are what `render` produces, and what the units say.

Pure tests (no manager, no root) over ``cinder_reload.render``, plus
``cinder-reload render --check`` as an operator or CI runs it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

from cinder_reload.render import (
    DISTROS,
    SERVICES,
    RenderSpec,
    _render,
    render_dropin,
    render_tree,
    render_unit,
)

REPO = Path(__file__).resolve().parents[2]
CINDER_RELOAD = [sys.executable, "-m", "cinder_reload.cli"]

#: Options that imply NoNewPrivileges=yes for a unit with User= (systemd.exec(5))
#: or put the service in its own mount namespace: none may appear in a unit
#: whose service needs sudo, privsep and host-visible mounts.
NOT_FOR_STORAGE = (
    "NoNewPrivileges", "ProtectHostname", "ProtectClock", "ProtectKernelTunables", "ProtectKernelModules",
    "ProtectKernelLogs", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
    "LockPersonality", "MemoryDenyWriteExecute", "SystemCallFilter", "SystemCallArchitectures", "ProtectSystem",
    "ProtectHome", "PrivateTmp", "PrivateDevices", "ReadWritePaths", "ProtectProc", "CapabilityBoundingSet",
    "RemoveIPC",
)  # fmt: skip


def settings(text: str) -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (a unit file's assignments, comments dropped)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key}", []).append(value)
    return found


def test_committed_files_are_what_render_produces() -> None:
    result = subprocess.run(
        [*CINDER_RELOAD, "render", "--output", str(REPO), "--check"], capture_output=True, text=True, check=False
    )
    stale = "units/ or initscripts/ are stale; run `cinder-reload render --output .`"
    assert result.returncode == 0, f"{stale}\n{result.stderr}"


def test_check_lists_every_difference(tmp_path: Path) -> None:
    for top in ("units", "initscripts"):
        shutil.copytree(REPO / top, tmp_path / top, symlinks=True)
    unit = tmp_path / "units" / "cinder-volume.service"
    unit.write_text(unit.read_text().replace("TimeoutStartSec=300", "TimeoutStartSec=5"))
    (tmp_path / "units" / "stale.service").write_text("[Service]\n")
    (tmp_path / "initscripts" / "cinder-api").unlink()
    result = subprocess.run(
        [*CINDER_RELOAD, "render", "--output", str(tmp_path), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "units/cinder-volume.service: differs" in result.stderr
    assert "-TimeoutStartSec=5" in result.stderr and "+TimeoutStartSec=300" in result.stderr
    assert "units/stale.service: on disk but not rendered" in result.stderr
    assert "initscripts/cinder-api: missing" in result.stderr
    # And render puts it right.
    subprocess.run([*CINDER_RELOAD, "render", "--output", str(tmp_path)], check=True, capture_output=True)
    again = subprocess.run(
        [*CINDER_RELOAD, "render", "--output", str(tmp_path), "--check"], capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr


def test_tree_layout() -> None:
    files = render_tree(RenderSpec())
    for service in ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup"):
        assert f"units/{service}.service" in files
        assert f"units/{service}-reload.path" in files and f"units/{service}-reload.service" in files
        assert f"units/dropins/debian/{service}.service.d/reload.conf" in files
        assert f"units/dropins/rdo/openstack-{service}.service.d/reload.conf" in files
        assert files[f"initscripts/{service}"].mode == 0o755
        assert f"initscripts/default/{service}" in files
    rdo = render_tree(RenderSpec.for_naming("rdo"))
    assert "units/openstack-cinder-volume.service" in rdo and "units/cinder-volume.service" not in rdo


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_unit_before_253_reloads_synchronously(service) -> None:  # type: ignore[no-untyped-def]
    unit = settings(render_unit(RenderSpec(systemd_version=252), service))
    assert unit["Service.Type"] == ["notify"] and unit["Service.NotifyAccess"] == ["main"]
    assert unit["Service.ExecReload"] == [
        f"/usr/bin/cinder-reload signal {service.name} --pid $MAINPID --wait --timeout {service.timeout_start - 5}"
    ]
    assert unit["Service.ExecStart"] == [
        f"/usr/bin/cinder-reload run {service.name} -- --config-file /etc/cinder/cinder.conf"
    ]
    assert unit["Service.TimeoutStartSec"] == [str(service.timeout_start)]
    assert unit["Service.User"] == ["cinder"] and unit["Service.Group"] == ["cinder"]
    assert unit["Service.RuntimeDirectory"] == ["cinder"] and unit["Service.RuntimeDirectoryPreserve"] == ["yes"]
    assert unit["Install.WantedBy"] == ["multi-user.target"]
    assert unit["Unit.Documentation"]
    assert "syslog.target" not in " ".join(unit.get("Unit.After", []))


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_unit_from_253_uses_notify_reload(service) -> None:  # type: ignore[no-untyped-def]
    unit = settings(render_unit(RenderSpec(systemd_version=253), service))
    assert unit["Service.Type"] == ["notify-reload"] and unit["Service.NotifyAccess"] == ["main"]
    assert "Service.ExecReload" not in unit  # a second SIGHUP would start a second cycle


@pytest.mark.parametrize("version", [258, 259, 262])
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_unit_from_259_is_notify_reload_with_a_synchronous_exec_reload(service, version: int) -> None:  # type: ignore[no-untyped-def]
    """259 runs ExecReload= before (and instead of) the signal: both in one unit; 258 still signals first."""
    text = render_unit(RenderSpec(systemd_version=version), service)
    unit = settings(text)
    assert unit["Service.Type"] == ["notify-reload"] and unit["Service.NotifyAccess"] == ["main"]
    if version < 259:
        assert "Service.ExecReload" not in unit
        assert "systemd 253-258 flavour" in text
        return
    assert unit["Service.ExecReload"] == [
        f"/usr/bin/cinder-reload signal {service.name} --pid $MAINPID --wait --timeout {service.timeout_start - 5}"
    ]
    assert "systemd >= 259 flavour" in text
    dropin = settings(render_dropin(RenderSpec(systemd_version=version), service, DISTROS["debian"]))
    assert dropin["Service.Type"] == ["notify-reload"]
    assert dropin["Service.ExecReload"][-1].startswith("/usr/bin/cinder-reload signal")


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_hardening_where_it_is_safe(service) -> None:  # type: ignore[no-untyped-def]
    unit = settings(render_unit(RenderSpec(), service))
    if service.storage:
        present = [key for key in NOT_FOR_STORAGE if f"Service.{key}" in unit]
        assert present == [], f"{service.name} needs sudo/privsep and host mounts; remove {present}"
    else:
        assert unit["Service.NoNewPrivileges"] == ["yes"]
        assert unit["Service.ProtectSystem"] == ["strict"]
        assert unit["Service.CapabilityBoundingSet"] == [""]
        assert "Service.RemoveIPC" not in unit  # the cinder user is shared between units


def test_user_manager_variant_has_no_user() -> None:
    unit = settings(render_unit(RenderSpec(user=None, group=None), SERVICES[0]))
    assert "Service.User" not in unit and "Service.Group" not in unit


@pytest.mark.parametrize("distro", DISTROS.values(), ids=lambda d: d.key)
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_dropins_replace_execstart_and_add_reload(service, distro) -> None:  # type: ignore[no-untyped-def]
    dropin = settings(render_dropin(RenderSpec(), service, distro))
    start = dropin["Service.ExecStart"]
    assert start[0] == "", "the distribution's ExecStart= must be reset first"
    assert start[1].startswith(f"/usr/bin/cinder-reload run {service.name} -- ")
    assert "/etc/cinder/cinder.conf" in start[1]
    assert dropin["Service.Type"] == ["notify"]
    assert dropin["Service.ExecReload"][0] == "", "the unit's own ExecReload= must be reset first"
    reload = dropin["Service.ExecReload"][1]
    assert reload.startswith(f"/usr/bin/cinder-reload signal {service.name} --pid $MAINPID --wait")
    assert dropin["Service.RuntimeDirectoryPreserve"] == ["yes"]
    assert ("Service.RuntimeDirectory" in dropin) is (not distro.has_runtime_directory)


def test_templates_are_strict() -> None:
    with pytest.raises(jinja2.UndefinedError):
        _render("service.j2", spec=RenderSpec(), unit="x.service")  # no service


def test_templates_ship_inside_the_package() -> None:
    import cinder_reload

    templates = Path(cinder_reload.__file__).parent / "templates"
    assert (templates / "service.j2").is_file() and (templates / "initscript.j2").is_file()


@pytest.mark.packaging
def test_wheel_carries_the_templates(tmp_path: Path) -> None:
    """An installed cinder-reload renders too: the wheel holds templates/ under
    cinder_reload/ (the symlink's targets, through package-data)."""
    import zipfile

    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "cinder_reload", src / "cinder_reload", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "templates", src / "templates")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = (tmp_path / "dist").glob("cinder_reload-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in (REPO / "templates").iterdir():
        assert f"cinder_reload/templates/{template.name}" in names, sorted(names)
