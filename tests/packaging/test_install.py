"""The .debs on a clean Debian 13: install with dependencies, files where
Debian policy puts them, maintainer scripts, ``service cinder-volume reload``
through the installed LSB script, reload (not restart) on upgrade, purge.

The reference daemon (tests/refdaemon.py, copied into the root) stands in
for cinder-volume through ``/etc/default/cinder-volume``, the way an
operator overrides the installed script's settings (DAEMON, DAEMON_ARGS,
RELOAD_NAME); everything else is the script's own default: the ``cinder``
user the postinst created, /run/cinder, /var/lib/cinder, /var/log/cinder.
"""

from __future__ import annotations

import shlex
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from debroot import DebianRoot
from harness.commands import pid_exists, wait_until
from harness.fixtures import namespaces_unavailable
from harness.packages import REPO, SERVICES, BuiltPackages

pytestmark = pytest.mark.packaging

SOCKET = "/run/cinder/refdaemon.sock"
CONFIG = "/srv/refdaemon/refdaemon.conf"
PIDFILE = "/run/cinder/cinder-volume.pid"
LOGFILE = "/var/log/cinder/cinder-volume.log"


def _config(label: str, *, broken: bool = False) -> str:
    text = f"[DEFAULT]\ngreeting = hello\n[backend1]\nlabel = {label}\n[backend2]\nlabel = steady\n"
    return text + ("[backend2\n" if broken else "")


def _default_file() -> str:
    daemon_args = [
        "/srv/refdaemon/refdaemon.py",
        "--config-file", CONFIG,
        "--socket", SOCKET,
        "--state-dir", "/run/cinder",
        "--log-file", LOGFILE,
    ]  # fmt: skip
    settings = {
        "RELOAD_NAME": "refdaemon",  # the reference daemon's state file name
        "DAEMON": "/usr/bin/python3",
        "DAEMON_ARGS": shlex.join(daemon_args),
        "START_TIMEOUT": "30",
        "RELOAD_TIMEOUT": "30",
        "STOP_TIMEOUT": "10",
    }
    return "# The reference daemon stands in for cinder-volume (tests/packaging).\n" + "".join(
        f"{key}={shlex.quote(value)}\n" for key, value in settings.items()
    )


@pytest.fixture
def debian13(built_packages: BuiltPackages) -> Iterator[DebianRoot]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    built_packages.check()
    workdir = Path(tempfile.mkdtemp(prefix="cr-pkg-"))
    workdir.chmod(0o755)
    root = DebianRoot(workdir, binds=[built_packages.out])
    try:
        yield root
    finally:
        root.close()
        log = workdir / "root.log"  # shown by pytest when the test failed
        if log.exists():
            print(f"----- root.log -----\n{log.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(workdir, ignore_errors=True)


def _ask(root: DebianRoot, backend: str = "backend1") -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(10)
        client.connect(str(root.path(SOCKET)))
        client.sendall(f"{backend}\n".encode())
        return client.makefile("r").readline().strip()


def _answer(root: DebianRoot) -> str:
    def probe() -> str:
        try:
            return _ask(root)
        except OSError as exc:
            return f"no answer: {exc}"

    return wait_until(probe, lambda a: not a.startswith("no answer"), timeout=30, what="the daemon answering")


def _pid(root: DebianRoot) -> int:
    return int(root.path(PIDFILE).read_text().strip())


def _daemon_log(root: DebianRoot) -> str:
    path = root.path(LOGFILE)
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


def _installed_files(root: DebianRoot, package: str) -> list[str]:
    listed = root.run(["dpkg", "-L", package]).check().stdout.split()
    return [f for f in listed if not root.path(f).is_dir()]


def test_install_reload_upgrade_purge(debian13: DebianRoot, built_packages: BuiltPackages) -> None:
    root = debian13
    debs = built_packages.debs

    # -- install, with the dependencies from Debian 13 -----------------------
    installed = root.apt_install([debs["python3-cinder-reload"], debs["cinder-reload-services"]])
    assert installed.ok, installed.output[-4000:]
    for package in ("python3-cinder-reload", "cinder-reload-services", "python3-sdnotify", "python3-oslo.config"):
        status = root.run(["dpkg-query", "-W", "-f", "${Status}", package])
        assert status.stdout == "install ok installed", (package, status.output)

    # -- files where Debian policy puts them ---------------------------------
    files = {p: _installed_files(root, p) for p in ("python3-cinder-reload", "cinder-reload-services")}
    everything = files["python3-cinder-reload"] + files["cinder-reload-services"]
    assert not [f for f in everything if f.startswith(("/usr/local/", "/etc/systemd/", "/opt/"))]
    assert "/usr/bin/cinder-reload" in files["python3-cinder-reload"]
    assert "/usr/share/man/man1/cinder-reload.1.gz" in files["python3-cinder-reload"]
    assert "/usr/lib/python3/dist-packages/cinder_reload/cinder/run.py" in files["python3-cinder-reload"]
    for package in files:
        assert f"/usr/share/doc/{package}/copyright" in files[package]
    for name in SERVICES:
        for path in (f"/etc/init.d/{name}", f"/etc/default/{name}", f"/lib/systemd/system/{name}.service"):
            assert path in files["cinder-reload-services"], path
        assert root.path(f"/etc/init.d/{name}").stat().st_mode & 0o777 == 0o755
    conffiles = root.run(["dpkg-query", "-W", "-f", "${Conffiles}", "cinder-reload-services"]).check().stdout
    assert {line.split()[0] for line in conffiles.strip().splitlines()} == {
        f"/etc/{d}/{n}" for d in ("init.d", "default") for n in SERVICES
    }

    # systemd 257 accepts the units where they landed (User=cinder exists now).
    units = [f for f in files["cinder-reload-services"] if f.startswith("/lib/systemd/system/")]
    assert len(units) == 3 * len(SERVICES)
    verified = root.run(["systemd-analyze", "verify", *units])
    assert verified.ok and not verified.output.strip(), verified

    # -- the maintainer scripts ran ------------------------------------------
    # python3-cinder-reload's postinst byte-compiled the module for trixie's python3.
    assert list(root.path("/usr/lib/python3/dist-packages/cinder_reload/__pycache__").glob("cli.cpython-3*.pyc"))
    assert root.run(["cinder-reload", "--help"]).check()
    assert root.run(["getent", "passwd", "cinder"]).ok
    assert root.path("/var/lib/cinder").is_dir() and root.path("/var/log/cinder").is_dir()
    # update-rc.d defaults-disabled: rc links, none of them a start link.
    links = sorted(p.name for p in root.path("/etc").glob("rc?.d/*cinder-volume"))
    assert links and not [link for link in links if link.startswith("S")], links
    # Not enabled for systemd either.
    assert not list(root.path("/etc/systemd/system").rglob("cinder-*"))

    # -- service cinder-volume start / reload through the installed script --
    refdaemon = root.path("/srv/refdaemon/refdaemon.py")
    refdaemon.parent.mkdir(parents=True)
    refdaemon.write_text((REPO / "tests" / "refdaemon.py").read_text())
    root.write(CONFIG, _config("one"))
    root.write("/etc/default/cinder-volume", _default_file())
    started = root.run(["service", "cinder-volume", "start"], timeout=60)
    assert started.ok, f"{started}\n{_daemon_log(root)}"
    assert "label=one" in _answer(root)
    pid = _pid(root)
    assert root.run(["ps", "-o", "user=", "-p", str(pid)]).stdout.strip() == "cinder"

    root.write(CONFIG, _config("two"))
    reloaded = root.run(["service", "cinder-volume", "reload"], timeout=60)
    assert reloaded.ok, f"{reloaded}\n{_daemon_log(root)}"
    assert "label=two" in _ask(root)
    assert _pid(root) == pid and pid_exists(pid)

    # A broken file: the reload fails, says so, and the service keeps serving.
    root.write(CONFIG, _config("broken", broken=True))
    refused = root.run(["service", "cinder-volume", "reload"], timeout=60)
    assert refused.returncode == 1, refused
    assert "label=two" in _ask(root) and _pid(root) == pid

    # -- an upgrade reloads the running service, it does not restart it ----
    # The cached root forbids service actions from maintainer scripts
    # (policy-rc.d exit 101), and without it invoke-rc.d still blocks them
    # because the root has no /sbin/init.  A policy-rc.d allowing every
    # action makes invoke-rc.d behave as on a booted SysV system.
    root.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 0\n", mode=0o755)
    # With a broken file the upgrade's reload fails: said, and the upgrade
    # still succeeds with the service untouched.
    upgraded = root.run(["dpkg", "-i", str(debs["cinder-reload-services"])], timeout=120)
    assert upgraded.ok, f"{upgraded}\n{_daemon_log(root)}"
    assert "reloading cinder-volume failed" in upgraded.stderr, upgraded
    assert "label=two" in _ask(root) and _pid(root) == pid
    root.write(CONFIG, _config("three"))
    upgraded = root.run(["dpkg", "-i", str(debs["cinder-reload-services"])], timeout=120)
    assert upgraded.ok, f"{upgraded}\n{_daemon_log(root)}"
    assert "label=three" in _ask(root)
    assert _pid(root) == pid and pid_exists(pid)
    # The administrator's /etc/default/cinder-volume survived the upgrade.
    assert "refdaemon" in root.path("/etc/default/cinder-volume").read_text()

    # -- purge: the prerm stops the service; nothing installed is left -------
    purged = root.run(["apt-get", "purge", "-y", "-q", "cinder-reload-services", "python3-cinder-reload"])
    assert purged.ok, purged.output[-4000:]
    wait_until(lambda: pid_exists(pid), lambda alive: not alive, timeout=15, what=f"daemon {pid} stopped by the prerm")
    left = [f for f in everything if root.path(f).exists() or root.path(f).is_symlink()]
    assert left == []
    assert not list(root.path("/etc").glob("rc?.d/*cinder-*"))
    assert not list(root.path("/etc/default").glob("cinder-*"))
    assert not list(root.path("/var/lib/dpkg/info").glob("*cinder-reload*"))
    assert not root.path(LOGFILE).exists()
    # The directories the postinst made, empty again; the user stays (Debian
    # keeps system users: files elsewhere may still belong to it).
    assert not root.path("/var/log/cinder").exists() and not root.path("/var/lib/cinder").exists()
    assert root.run(["getent", "passwd", "cinder"]).ok
    assert not list(root.path("/usr/lib/python3/dist-packages").glob("cinder_reload*"))
    for package in ("cinder-reload-services", "python3-cinder-reload"):
        assert root.run(["dpkg-query", "-W", "-f", "${Status}", package]).stdout in ("", "unknown ok not-installed")


def test_dropins_install_beside_nothing_and_conflict_with_full_units(
    debian13: DebianRoot, built_packages: BuiltPackages
) -> None:
    root = debian13
    debs = built_packages.debs
    installed = root.apt_install([debs["python3-cinder-reload"], debs["cinder-reload-dropins"]])
    assert installed.ok, installed.output[-4000:]
    dropins = _installed_files(root, "cinder-reload-dropins")
    for name in SERVICES:
        path = f"/lib/systemd/system/{name}.service.d/reload.conf"
        assert path in dropins
        assert (
            root.path(path).read_text() == (REPO / "units/dropins/debian" / f"{name}.service.d/reload.conf").read_text()
        )
    # Full units and drop-ins for the same unit names cannot be installed together.
    both = root.run(["dpkg", "-i", str(debs["cinder-reload-services"])])
    assert both.returncode != 0 and "conflict" in both.output.lower(), both
    purged = root.run(["dpkg", "--purge", "cinder-reload-dropins"])
    assert purged.ok, purged
    assert not [f for f in dropins if root.path(f).exists()]
    assert not list(root.path("/lib/systemd/system").glob("cinder-*.service.d"))
