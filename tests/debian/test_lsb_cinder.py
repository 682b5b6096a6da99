"""The LSB init script with real cinder-volume (Debian's cinder code), no systemd at all.

An overlay of the cached sid root with Debian's cinder packages, with no
service manager (no ``/run/systemd/system``: ``service`` runs the script
itself), the ``python3-cinder-reload`` .deb installed.  The script is the
committed ``initscripts/cinder-volume`` with *no* ``/etc/default`` overrides:
it starts ``cinder-reload run cinder-volume`` as Debian's ``cinder`` user
with Debian's paths (``/etc/cinder/cinder.conf``, ``/var/log/cinder``,
``/run/cinder``) through ``start-stop-daemon --notify-await``.

The scenario starts where an operator on a sysvinit host starts: Debian's
own script runs cinder-volume (no reload engine).  Ours replaces that
conffile; ``force-reload`` must then restart (the running process has no
engine), and from there ``reload`` reloads in place.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from debcinder import CONFIG, DATABASE, MANAGE_CONFIG, volume_config
from harness.cinder_roots import cinder_root
from harness.commands import CommandResult, pid_exists, wait_until
from harness.namespaces import BASE_PATH, PackageRootNamespace

pytestmark = [pytest.mark.debian, pytest.mark.sysv]

REPO = Path(__file__).resolve().parents[2]
PIDFILE = "/run/cinder/cinder-volume.pid"  # Debian's script's and ours


class LsbCinder:
    def __init__(self, workdir: Path, debs: Path) -> None:
        self.ns = PackageRootNamespace(
            cinder_root("sid"), workdir, binds=[workdir, debs], systemd_run_dir=False, log=workdir / "lsb.log"
        )
        self.ns.start("/bin/sleep infinity", {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root"})
        deb = sorted(str(p) for p in debs.glob("python3-cinder-reload_*.deb"))
        self.run(["dpkg", "-i", *deb]).check()
        self.write_config(volume_config())
        self.ns.write_file(MANAGE_CONFIG, DATABASE)
        # As Debian's cinder-common leaves them for the cinder user (the
        # database made here by root, the lock directory on the fresh /run).
        self.sh(
            f"cinder-manage --config-file {CONFIG} db sync >/dev/null 2>&1\n"
            "chown cinder:cinder /var/lib/cinder/cinder.sqlite\n"
            "install -d -o cinder -g cinder /run/lock/cinder\n"
        )

    def run(self, argv: list[str], timeout: float = 300.0) -> CommandResult:
        return self.ns.run(argv, timeout=timeout)

    def sh(self, script: str) -> CommandResult:
        return self.run(["sh", "-ec", script]).check()

    def service(self, verb: str) -> CommandResult:
        return self.run(["service", "cinder-volume", verb])

    def write_config(self, text: str) -> None:
        self.ns.write_file(f"{CONFIG}.new", text, mode=0o640)
        self.sh(f"chown root:cinder {CONFIG}.new && mv {CONFIG}.new {CONFIG}")

    def pid(self) -> int:
        path = self.ns.host_path(PIDFILE)
        text = path.read_text().strip() if path.exists() else ""
        return int(text) if text.isdigit() else 0

    def user_of(self, pid: int) -> int:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        raise AssertionError(f"no Uid in /proc/{pid}/status")

    def zones(self) -> dict[str, str]:
        out = self.run(["cinder-manage", "--config-file", MANAGE_CONFIG, "service", "list"]).check().stdout
        rows = [line.split() for line in out.splitlines() if line.startswith("cinder-volume ")]
        return {f[1].split("@", 1)[1]: f[2] for f in rows if f[4] == ":-)"}

    def log(self) -> str:
        path = self.ns.host_path("/var/log/cinder/cinder-volume.log")
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def close(self) -> None:
        try:
            self.ns.kill_all()
        finally:
            self.ns.cleanup()


@pytest.fixture
def lsb(project_debs: Path) -> Iterator[LsbCinder]:
    workdir = Path(tempfile.mkdtemp(prefix="cr-lsb-"))
    workdir.chmod(0o755)
    root = LsbCinder(workdir, project_debs)
    try:
        yield root
    finally:
        print(f"----- cinder-volume.log -----\n{root.log()}")
        root.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _expect(result: CommandResult, code: int, lsb: LsbCinder) -> CommandResult:
    assert result.returncode == code, f"{result}\n{lsb.log()}"
    return result


def test_lsb_script_with_real_cinder_volume(lsb: LsbCinder) -> None:
    assert not lsb.ns.host_path("/run/systemd/system").exists()  # no manager: `service` runs the script

    # Debian's own script started cinder-volume: no reload engine in it.
    _expect(lsb.service("start"), 0, lsb)
    debian_pid = wait_until(lsb.pid, lambda p: p > 0 and pid_exists(p), timeout=30, what="Debian's pid file")
    wait_until(lsb.zones, lambda z: len(z) == 2, timeout=60, what="both backends up under Debian's script")

    # The operator installs ours over that conffile; force-reload restarts (no engine to reload).
    script = lsb.ns.host_path("/etc/init.d/cinder-volume")
    script.write_text((REPO / "initscripts" / "cinder-volume").read_text())
    forced = _expect(lsb.service("force-reload"), 0, lsb)
    pid = lsb.pid()
    assert pid and pid != debian_pid and pid_exists(pid), forced
    assert not pid_exists(debian_pid)
    assert lsb.user_of(pid) == int(lsb.sh("id -u cinder").stdout)  # --chuid cinder, as Debian runs it
    status = _expect(lsb.service("status"), 0, lsb)
    assert f"(pid {pid})" in status.output, status  # the engine's last-reload line: it runs cinder-reload

    # reload: a backend's zone changes, same process, cinder reports the new zone.
    lsb.write_config(volume_config(zone1="gold"))
    _expect(lsb.service("reload"), 0, lsb)
    assert lsb.pid() == pid
    wait_until(lsb.zones, lambda z: z == {"fake1": "gold", "fake2": "nova"}, timeout=30, what="fake1 in gold")

    # reload of a broken file: non-zero with the reason, still running on the old file.
    lsb.write_config(volume_config(zone1="silver") + "[fake2\n")
    broken = lsb.service("reload")
    assert broken.returncode not in (0, 7), broken
    assert "Invalid section" in broken.output, broken
    assert lsb.pid() == pid and pid_exists(pid)
    mark = time.monotonic()
    wait_until(
        lsb.zones,
        lambda z: z == {"fake1": "gold", "fake2": "nova"} and time.monotonic() - mark > 2,
        timeout=30,
        what="still serving the old configuration",
    )

    # force-reload with the engine running: a reload, not a restart.
    lsb.write_config(volume_config(zone1="bronze"))
    _expect(lsb.service("force-reload"), 0, lsb)
    assert lsb.pid() == pid
    wait_until(lsb.zones, lambda z: z.get("fake1") == "bronze", timeout=30, what="fake1 in bronze")

    _expect(lsb.service("stop"), 0, lsb)
    wait_until(lambda: pid_exists(pid), lambda alive: not alive, timeout=30, what=f"pid {pid} gone")
    _expect(lsb.service("status"), 3, lsb)
    _expect(lsb.service("reload"), 7, lsb)
