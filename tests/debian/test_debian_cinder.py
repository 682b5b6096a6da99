"""Debian's own cinder-volume + the cinder-reload-dropins .deb, under the suite's systemd.

sid: systemd 262, Python 3.14, Debian's cinder 2:29; trixie: systemd 257,
Python 3.13, Debian's cinder 2:26.  The unit is Debian's, copied for a user
manager by ``user_manager_copy()`` (the one change: ``User=``/``Group=``
commented out), the drop-in is the one the package installed, unchanged;
cinder is Debian's code from ``/usr/lib/python3/dist-packages``.  What the
tests look at is what an operator sees: ``systemctl`` exit status and
properties, cinder's worker processes, and Debian's ``cinder-manage service
list`` (the availability zone a backend reports).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from debcinder import CONFIG, DebianCinder, exec_start, user_manager_copy, volume_config
from harness.commands import wait_until

from cinder_reload.render import DISTROS, EXEC_RELOAD_FIRST_SINCE

pytestmark = [pytest.mark.debian, pytest.mark.systemd]

UNIT = "cinder-volume.service"


def _start(debian: DebianCinder) -> dict[str, str]:
    debian.write_config(volume_config())
    started = debian.manager.start(UNIT, timeout=200)
    status = debian.manager.systemctl("status", "--lines=0", UNIT).output
    assert started.ok, f"{started}\n{status}\n{_log(debian)}"
    props = debian.manager.wait_for(UNIT, ActiveState="active", SubState="running")
    assert props["StatusText"].startswith("Serving: fake1 (pid"), props
    return props


def _stop(debian: DebianCinder) -> None:
    debian.manager.stop(UNIT, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def versions(port: int) -> int:
    """The status of cinder's API version document (300), 0 when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return 0


def _log(debian: DebianCinder) -> str:
    path = debian.manager.host_path("/var/log/cinder/cinder-volume.log")
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def test_the_suite_is_what_the_issue_names(debian_cinder: DebianCinder) -> None:
    # sid moves on: what it had when the root was built (262.1, Python 3.14 in 2026-12) or newer.
    assert debian_cinder.manager.version >= debian_cinder.suite.systemd_major
    installed = debian_cinder.run(["dpkg-query", "-W", "-f=${Version}", "python3-cinder"]).check().stdout
    assert installed.split(":", 1)[-1].startswith(debian_cinder.suite.cinder_upstream), installed
    python = debian_cinder.run(["python3", "-c", "import sys; print(*sys.version_info[:2])"]).check().stdout
    assert tuple(map(int, python.split())) >= {"sid": (3, 14), "trixie": (3, 13)}[debian_cinder.suite.suite], python
    # The project came from the .deb, not from the repository.
    where = debian_cinder.run(["python3", "-c", "import cinder_reload; print(cinder_reload.__file__)"])
    assert where.check().stdout.startswith("/usr/lib/python3/dist-packages/cinder_reload/"), where


@pytest.mark.parametrize("name", ["cinder-volume", "cinder-scheduler", "cinder-backup"])
def test_the_dropin_runs_what_debians_unit_runs(debian_cinder: DebianCinder, name: str) -> None:
    """Read from the installed files: Debian's ExecStart= runs its init script, whose
    ``systemd-start`` executes ``show-args``; the drop-in must give cinder the same arguments."""
    unit = debian_cinder.unit_text(name)
    assert exec_start(unit) == [f"/etc/init.d/{name}", "systemd-start"], unit
    debian_argv = debian_cinder.init_script_argv(name)
    assert debian_argv[0] == f"/usr/bin/{name}", debian_argv
    assert f"--config-file={CONFIG}" in debian_argv, debian_argv

    dropin = debian_cinder.dropin_text(name)
    ours = exec_start(unit + dropin)
    assert ours[:4] == ["/usr/bin/cinder-reload", "run", name, "--"], ours
    assert ours[4:] == debian_argv[1:], f"Debian runs {debian_argv}, the drop-in {ours}"
    # The runtime directories the drop-in preserves are the unit's own.
    runtime = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("RuntimeDirectory=")]
    assert runtime == [DISTROS["debian"].runtime_directories], runtime
    assert "RuntimeDirectoryPreserve=yes" in dropin.splitlines()
    # User= is Debian's; the user manager's copy changes exactly that (and Group=).
    copy = user_manager_copy(unit)
    assert [c.split(" ", 1)[0] for c in copy.changes] == ["User=cinder", "Group=cinder"], copy.changes


def test_reload_applies_a_backend_change_with_the_same_main_pid(debian_cinder: DebianCinder) -> None:
    props = _start(debian_cinder)
    try:
        main = int(props["MainPID"])
        workers = debian_cinder.children(main)
        assert len(workers) == 2, workers
        before = wait_until(debian_cinder.service_list, lambda s: len(s) == 2, timeout=30, what="2 backends listed")
        assert before["fake1"]["zone"] == "nova", before

        debian_cinder.write_config(volume_config(zone1="gold"))
        result = debian_cinder.manager.reload(UNIT)

        after = debian_cinder.manager.show(UNIT)
        assert result.ok, f"{result}\n{after}\n{_log(debian_cinder)}"
        assert after["MainPID"] == str(main) and after["NRestarts"] == "0", after
        assert after["ActiveState"] == "active", after
        now = debian_cinder.children(main)
        assert len(now) == 2 and len(now & workers) == 1, (workers, now)  # fake1's worker replaced, fake2's kept
        # Debian's cinder itself reports the new zone of fake1 (report_state, every report_interval).
        listed = wait_until(
            debian_cinder.service_list,
            lambda s: s.get("fake1", {}).get("zone") == "gold",
            timeout=30,
            what="fake1 in zone gold",
        )
        assert listed["fake2"]["zone"] == "nova" and listed["fake1"]["state"] == ":-)", listed
    finally:
        _stop(debian_cinder)


def test_a_broken_file_fails_the_reload_and_the_service_keeps_serving(debian_cinder: DebianCinder) -> None:
    props = _start(debian_cinder)
    try:
        main = int(props["MainPID"])
        workers = debian_cinder.children(main)
        debian_cinder.write_config(volume_config(zone1="silver") + "[fake2\n")

        result = debian_cinder.manager.reload(UNIT)

        after = debian_cinder.manager.show(UNIT)
        assert result.returncode != 0, f"a broken file reloaded 'successfully': {result}\n{after}"
        shown = debian_cinder.manager.systemctl("status", "--lines=0", UNIT).output
        assert "Invalid section" in shown, shown  # the reason, where systemctl points the operator
        assert after["StatusText"].startswith("Reload failed: "), after
        assert after["ActiveState"] == "active" and after["MainPID"] == str(main), after
        assert debian_cinder.children(main) == workers
        # Still serving the old configuration: both backends keep reporting, fake1 still in nova.
        mark = time.monotonic()
        listed = wait_until(
            debian_cinder.service_list,
            lambda s: all(row["state"] == ":-)" for row in s.values()) and time.monotonic() - mark > 2,
            timeout=30,
            what="both backends up two report intervals after the refused reload",
        )
        assert listed["fake1"]["zone"] == "nova", listed
    finally:
        _stop(debian_cinder)


def test_flavour_for_the_managers_version_rendered_by_the_installed_package(
    debian_cinder: DebianCinder, tmp_path: Path
) -> None:
    """``cinder-reload render --systemd-version N`` from the package, N read from the manager:
    on sid (262) the >= 259 flavour fails the command on a broken file; on trixie (257) the
    253-258 flavour cannot, and says so only in StatusText=."""
    version = debian_cinder.manager.version
    out = debian_cinder.workdir / f"render-{version}"
    debian_cinder.run(["cinder-reload", "render", "--output", str(out), "--systemd-version", str(version)]).check()
    dropin = (out / "units/dropins/debian/cinder-volume.service.d/reload.conf").read_text()
    honest = version >= EXEC_RELOAD_FIRST_SINCE
    assert "Type=notify-reload" in dropin.splitlines()
    # 253-258 (trixie): Type=notify-reload alone, no ExecReload= (a second SIGHUP).
    assert ("ExecReload=/usr/bin/cinder-reload signal cinder-volume" in dropin) == honest, dropin
    unit_dir = debian_cinder.manager.unit_dir
    package_dropin = debian_cinder.dropin_text("cinder-volume")
    debian_cinder.manager.ns.write_file(f"{unit_dir}/cinder-volume.service.d/reload.conf", dropin)
    debian_cinder.manager.daemon_reload()
    try:
        props = _start(debian_cinder)
        assert debian_cinder.manager.show(UNIT, ["Type"])["Type"] == "notify-reload"
        main = props["MainPID"]
        debian_cinder.write_config(volume_config(zone1="gold"))
        result = debian_cinder.manager.reload(UNIT)
        assert result.ok, f"{result}\n{_log(debian_cinder)}"
        assert debian_cinder.manager.show(UNIT)["MainPID"] == main

        debian_cinder.write_config(volume_config(zone1="gold") + "[fake2\n")
        result = debian_cinder.manager.reload(UNIT)
        after = debian_cinder.manager.show(UNIT)
        # >= 259 fails the command; 253-258 cannot (READY=1 ends every reload):
        # the reason is then only in StatusText=, which is why the package's
        # drop-in is the < 253 flavour (doc/source/admin/units.rst).
        assert (result.returncode != 0) == honest, f"{result}\n{after}"
        assert after["ActiveState"] == "active" and after["MainPID"] == main, after
        assert "Invalid section" in after["StatusText"], after
    finally:
        _stop(debian_cinder)
        debian_cinder.manager.ns.write_file(f"{unit_dir}/cinder-volume.service.d/reload.conf", package_dropin)
        debian_cinder.manager.daemon_reload()


def test_cinder_api_under_the_dropin_is_cinders_own_server_and_reloads(debian_cinder: DebianCinder) -> None:
    """Debian's cinder-api.service + the drop-in: cinder's own API server (not Debian's uWSGI,
    see test_cinder_api_uwsgi.py for why), answering, reloaded in place, a broken file refused."""
    unit = "cinder-api.service"
    port = free_port()
    extra = (
        "auth_strategy = noauth\nosapi_volume_listen = 127.0.0.1\n"
        f"osapi_volume_listen_port = {port}\nosapi_volume_workers = 1\n"
    )
    debian_cinder.install_user_units("cinder-api")
    debian_cinder.write_config(volume_config(extra=extra))
    started = debian_cinder.manager.start(unit, timeout=200)
    try:
        assert started.ok, f"{started}\n{debian_cinder.manager.systemctl('status', unit).output}"
        main = debian_cinder.manager.show(unit)["MainPID"]
        cmdline = Path(f"/proc/{main}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"/usr/bin/cinder-reload", b"run", b"cinder-api"], cmdline
        assert wait_until(lambda: versions(port), lambda s: s == 300, timeout=60, what="the API") == 300

        debian_cinder.write_config(volume_config(extra=extra.replace("noauth\n", "noauth\ndebug = true\n")))
        result = debian_cinder.manager.reload(unit)
        assert result.ok, result
        assert debian_cinder.manager.show(unit)["MainPID"] == main and versions(port) == 300

        debian_cinder.write_config(volume_config(extra=extra) + "[broken\n")
        result = debian_cinder.manager.reload(unit)
        after = debian_cinder.manager.show(unit)
        assert result.returncode != 0 and "Invalid section" in after["StatusText"], (result, after)
        assert after["MainPID"] == main and after["ActiveState"] == "active" and versions(port) == 300
    finally:
        debian_cinder.manager.stop(unit, timeout=120)


@pytest.mark.parametrize("name", ["cinder-scheduler", "cinder-backup"])
def test_scheduler_and_backup_under_the_dropins_reload_in_place(debian_cinder: DebianCinder, name: str) -> None:
    """Debian's cinder-scheduler/-backup units + the drop-ins, Debian's cinder code: a reload
    exits 0 with the same process, a broken file fails the command and keeps it running."""
    unit = f"{name}.service"
    extra = (
        # No volume service reports to this scheduler: do not wait 60 s for one (cinder's default).
        "scheduler_driver_init_wait_time = 1\n"
        "backup_driver = cinder.backup.drivers.posix.PosixBackupDriver\n"
        "backup_posix_path = /var/lib/cinder/backups\n"
    )
    debian_cinder.install_user_units(name)
    debian_cinder.write_config(volume_config(extra=extra))
    started = debian_cinder.manager.start(unit, timeout=200)
    try:
        assert started.ok, f"{started}\n{debian_cinder.manager.systemctl('status', unit).output}"
        main = debian_cinder.manager.wait_for(unit, ActiveState="active", SubState="running")["MainPID"]
        debian_cinder.write_config(volume_config(extra=extra + "debug = true\n"))
        result = debian_cinder.manager.reload(unit)
        after = debian_cinder.manager.show(unit)
        assert result.ok and after["StatusText"].startswith("Reload #1 ok"), (result, after)
        assert after["MainPID"] == main, after

        debian_cinder.write_config(volume_config(extra=extra) + "[broken\n")
        result = debian_cinder.manager.reload(unit)
        after = debian_cinder.manager.show(unit)
        assert result.returncode != 0 and "Invalid section" in after["StatusText"], (result, after)
        assert after["MainPID"] == main and after["ActiveState"] == "active", after
    finally:
        debian_cinder.manager.stop(unit, timeout=120)
