"""Debian's own cinder, this project's .debs on top, under the suite's systemd.

``DebianCinder(suite, workdir, debs)`` starts the suite's ``systemd --user``
(sid: 262 on a cgroup2-only ``/sys/fs/cgroup``; trixie: 257) in an overlay of
the cached root with Debian's ``cinder-*`` packages (harness/cinder_roots.py),
then installs ``python3-cinder-reload`` and ``cinder-reload-dropins`` from the
freshly built ``.deb`` files with ``dpkg -i``.  Nothing of the repository is
in that root: the ``cinder-reload`` that runs is the package's.

What Debian's units pass is read from the installed files, never assumed:
the unit (``/usr/lib/systemd/system/NAME.service``), the drop-in the package
put next to it, and the arguments of Debian's init script
(``/etc/init.d/NAME show-args``, what its ``systemd-start`` executes).

A user manager cannot switch users, so the units it runs are copies derived
mechanically by ``user_manager_copy()``: the same text with the lines a user
manager cannot honour commented out, each listed in ``changes``.  Everything
else, the drop-in included, is installed unchanged.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from harness.cinder_roots import SUITES, Suite, cinder_root
from harness.commands import CommandResult
from harness.managers import SystemdRoot
from harness.namespaces import PackageRootNamespace

__all__ = [
    "CONFIG",
    "DATABASE",
    "MANAGE_CONFIG",
    "DebianCinder",
    "UserCopy",
    "exec_start",
    "user_manager_copy",
    "volume_config",
]

CONFIG = "/etc/cinder/cinder.conf"  # the path Debian's init script passes (read from show-args by the tests)
#: cinder-manage's own file (the database only): it must read the services
#: while cinder.conf is broken on purpose.
MANAGE_CONFIG = "/etc/cinder/manage-test.conf"
DATABASE = "[database]\nconnection = sqlite:////var/lib/cinder/cinder.sqlite\n"
FAKE_DRIVER = "cinder.tests.fake_driver.FakeLoggingVolumeDriver"  # shipped in Debian's python3-cinder


def volume_config(*, zone1: str = "nova", extra: str = "") -> str:
    """A self-contained cinder.conf: sqlite, no message bus, two fake backends.

    Debian's own paths are kept (state_path, its lock directory);
    ``report_interval`` is short so that a backend's new availability zone
    shows in ``cinder-manage service list`` within seconds (cinder's
    report_state writes it)."""
    return (
        "[DEFAULT]\n"
        "transport_url = fake://\n"
        "enabled_backends = fake1,fake2\n"
        "state_path = /var/lib/cinder\n"
        "report_interval = 1\n"
        "debug = false\n"
        f"{extra}"
        f"{DATABASE}"
        "[oslo_concurrency]\n"
        "lock_path = /var/lock/cinder\n"
        "[fake1]\n"
        f"volume_driver = {FAKE_DRIVER}\n"
        "volume_backend_name = fake1\n"
        f"backend_availability_zone = {zone1}\n"
        "[fake2]\n"
        f"volume_driver = {FAKE_DRIVER}\n"
        "volume_backend_name = fake2\n"
    )


#: Settings a user manager cannot apply, and why.
NOT_FOR_A_USER_MANAGER = {
    "User": "a user manager cannot switch users (it runs as root here)",
    "Group": "a user manager cannot switch groups",
}

SYSTEM_UNIT_DIR = "/usr/lib/systemd/system"


@dataclass(frozen=True)
class UserCopy:
    text: str
    changes: tuple[str, ...]


def user_manager_copy(text: str) -> UserCopy:
    """``text`` with every setting of ``NOT_FOR_A_USER_MANAGER`` commented out."""
    changes: list[str] = []
    lines: list[str] = []
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and key in NOT_FOR_A_USER_MANAGER:
            changes.append(f"{line.strip()} commented out: {NOT_FOR_A_USER_MANAGER[key]}")
            lines.append(f"# (test copy for a user manager) {line}")
        else:
            lines.append(line)
    return UserCopy("\n".join(lines) + "\n", tuple(changes))


def exec_start(text: str) -> list[str]:
    """The command of the last ``ExecStart=`` (an empty one resets, systemd.service(5))."""
    commands: list[str] = []
    for value in re.findall(r"(?m)^ExecStart=(.*)$", text):
        commands = [] if value.strip() == "" else [*commands, value.strip()]
    assert len(commands) == 1, commands
    return shlex.split(commands[0])


class DebianCinder:
    """Debian's cinder packages, the project's .debs, the suite's systemd user manager."""

    def __init__(self, suite: Suite, workdir: Path, debs: Path) -> None:
        self.suite = SUITES[suite]
        self.workdir = workdir
        self.manager = SystemdRoot(
            workdir,
            cinder_root(suite),
            name=f"systemd-{self.suite.systemd_major}-{suite}",
            binds=[debs],
            cgroup2=self.suite.systemd_major >= 258,  # 258 dropped cgroup v1; this host is hybrid
            namespace=PackageRootNamespace,
            cinder_reload="/usr/bin/cinder-reload",
        )
        self.copies: dict[str, UserCopy] = {}
        try:
            debfiles = sorted(str(p) for p in debs.glob("*.deb") if p.name.startswith(("python3-", "cinder-reload-d")))
            assert len(debfiles) == 2, debfiles
            self.installed = self.run(["dpkg", "-i", *debfiles], timeout=180).check()
        except BaseException:
            self.manager.close()
            raise

    # -- reading what Debian installed ----------------------------------------
    def run(self, argv: list[str], timeout: float = 120.0) -> CommandResult:
        return self.manager.run(argv, timeout=timeout)

    def read(self, path: str) -> str:
        return self.manager.host_path(path).read_text()

    def unit_text(self, name: str) -> str:
        return self.read(f"{SYSTEM_UNIT_DIR}/{name}.service")

    def dropin_text(self, name: str) -> str:
        return self.read(f"{SYSTEM_UNIT_DIR}/{name}.service.d/reload.conf")

    def init_script_argv(self, name: str) -> list[str]:
        """What Debian's ``ExecStart=/etc/init.d/NAME systemd-start`` executes."""
        return shlex.split(self.run([f"/etc/init.d/{name}", "show-args"]).check().stdout.strip())

    # -- the units under the user manager ---------------------------------------
    def install_user_units(self, name: str) -> UserCopy:
        """Debian's unit (derived copy) and the package's drop-in (unchanged) into the user manager."""
        copy = user_manager_copy(self.unit_text(name))
        unit_dir = self.manager.unit_dir
        self.manager.ns.write_file(f"{unit_dir}/{name}.service", copy.text)
        self.manager.ns.write_file(f"{unit_dir}/{name}.service.d/reload.conf", self.dropin_text(name))
        self.manager.daemon_reload()
        self.copies[name] = copy
        return copy

    # -- cinder-volume -----------------------------------------------------------
    def write_config(self, text: str) -> None:
        # Atomically, as a configuration manager would: cinder never reads half a file.
        self.manager.ns.write_file(f"{CONFIG}.new", text, mode=0o640)
        self.manager.host_path(f"{CONFIG}.new").replace(self.manager.host_path(CONFIG))

    def prepare_volume_service(self) -> None:
        """The test cinder.conf, Debian's ``cinder-manage db sync``, the units of cinder-volume."""
        self.write_config(volume_config())
        self.manager.ns.write_file(MANAGE_CONFIG, DATABASE)
        # Debian's RuntimeDirectory=lock/cinder is /run/lock/cinder under the
        # system manager; a user manager puts it under $XDG_RUNTIME_DIR
        # instead, so the lock_path Debian's cinder.conf uses is made here.
        self.run(["mkdir", "-p", "/run/lock/cinder"]).check()
        self.run(["cinder-manage", "--config-file", CONFIG, "db", "sync"], timeout=300).check()
        self.install_user_units("cinder-volume")

    def service_list(self) -> dict[str, dict[str, str]]:
        """``cinder-manage service list`` (Debian's own command), by host: {'zone': ..., 'state': ...}."""
        out = self.run(["cinder-manage", "--config-file", MANAGE_CONFIG, "service", "list"]).check().stdout
        rows: dict[str, dict[str, str]] = {}
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0] == "cinder-volume":
                rows[fields[1].split("@", 1)[1]] = {"host": fields[1], "zone": fields[2], "state": fields[4]}
        return rows

    def children(self, pid: int) -> set[int]:
        """The worker processes of ``pid`` (one per backend), from /proc."""
        found: set[int] = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.add(int(entry.name))
        return found

    def close(self) -> None:
        self.manager.close()
