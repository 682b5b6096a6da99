"""Test hosts: a network namespace each, with its own sshd and systemd 252 user manager.

One host is one process tree started as ``nsenter --net=/run/netns/NS unshare
--mount --uts``: its own host name, an overlay over ``/etc`` (its own
``/etc/hosts``, the ``sshd`` user), its own directory bind-mounted over
``/etc/cinder``, a tmpfs on ``/run`` (``/run/sshd``, ``/run/systemd/system``,
``/run/user/0``), then ``sshd`` (listening on the host's address only) and a
``systemd --user`` in a cgroup of its own (so the same unit name on three hosts
is three cgroups).  Not ``ip netns exec``: it remounts ``/sys`` and loses
``/sys/fs/cgroup``.  Recipe and pitfalls: ../shared/notes/fleet-hosts.md.

sshd comes from Debian's ``openssh-server`` unpacked (``apt-get download`` +
``dpkg-deb -x``) into the cache once: installing it with apt would upgrade the
machine's ``openssh-client``.  Ansible reaches the hosts by address through an
``ssh_config`` of the test's own, never by a bare host name (that would ask the
machine's DNS resolver).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from harness.commands import CommandResult, run, wait_until
from harness.namespaces import _private_cgroups, _remove_cgroups, processes_in_mount_ns

from .netns import FleetNetwork

__all__ = ["FleetHost", "SshKeys", "openssh_server"]

CACHE = Path(os.environ.get("CINDER_RELOAD_CACHE", "/var/cache/cinder-reload"))
OPENSSH_PACKAGES = ("openssh-server", "openssh-sftp-server")
#: Bumped when what is unpacked changes.
OPENSSH_FORMAT = "1"
RUNTIME_DIR = "/run/user/0"
SSHD_UID = 64999  # a uid of the hosts' own /etc/passwd (the overlay), for sshd's privilege separation


def openssh_server() -> Path:
    """A directory holding Debian's sshd and sftp-server (``usr/sbin/sshd``...), unpacked once."""
    target = CACHE / f"openssh-server.{OPENSSH_FORMAT}"
    if (target / "usr/sbin/sshd").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".openssh-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be unpacking it now
        if (target / "usr/sbin/sshd").exists():
            return target
        work = Path(tempfile.mkdtemp(prefix=".openssh-server.", dir=CACHE))
        try:
            # _apt cannot write into a root-only temporary directory.
            work.chmod(0o755)
            out = subprocess.run(
                ["apt-get", "download", *OPENSSH_PACKAGES],
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            if out.returncode != 0:
                raise RuntimeError(f"apt-get download {' '.join(OPENSSH_PACKAGES)} failed: {out.stderr.strip()}")
            tree = work / "tree"
            for deb in sorted(work.glob("*.deb")):
                run(["dpkg-deb", "-x", str(deb), str(tree)], timeout=120).check()
            os.rename(tree, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


@dataclass(frozen=True)
class SshKeys:
    """The controller's key and the hosts' known_hosts, in the test's directory."""

    directory: Path

    @property
    def identity(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def authorized_keys(self) -> Path:
        return self.directory / "authorized_keys"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.directory / "ssh_config"

    def create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-test", "-f", str(self.identity)]).check()
        shutil.copy(self.identity.with_suffix(".pub"), self.authorized_keys)
        self.known_hosts.write_text("")

    def write_config(self, hosts: Mapping[str, str]) -> None:
        """``Host NAME`` -> ``HostName ADDRESS``: ssh never resolves a name."""
        blocks = []
        for name, address in hosts.items():
            blocks.append(
                "\n".join(
                    [
                        f"Host {name} {address}",
                        f"  HostName {address}",
                        "  User root",
                        f"  IdentityFile {self.identity}",
                        "  IdentitiesOnly yes",
                        f"  UserKnownHostsFile {self.known_hosts}",
                        "  GlobalKnownHostsFile /dev/null",
                        "  StrictHostKeyChecking yes",
                        "  CheckHostIP no",
                        "  ConnectTimeout 10",
                        "  BatchMode yes",
                    ]
                )
            )
        self.ssh_config.write_text("\n\n".join(blocks) + "\n")


@dataclass
class FleetHost:
    """One host: its namespace process tree, sshd, and a systemd --user running its units."""

    name: str
    net: FleetNetwork
    workdir: Path
    keys: SshKeys
    sshd: Path = field(default_factory=openssh_server)
    #: A host laid out as a distribution's package would be: these commands in /usr/bin
    #: (name -> the file they are), logs in /var/log/cinder (both seen only inside the host).
    distro_commands: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    mnt_ns: str | None = None
    cgroups: list[Path] = field(default_factory=list)

    # -- paths ---------------------------------------------------------------
    @property
    def address(self) -> str:
        return self.net.address(self.name)

    @property
    def cinder_dir(self) -> Path:
        """Seen as /etc/cinder on the host."""
        return self.workdir / "cinder"

    @property
    def unit_dir(self) -> Path:
        """$XDG_CONFIG_HOME/systemd/user of the host's manager."""
        return self.workdir / "config" / "systemd" / "user"

    @property
    def log(self) -> Path:
        return self.workdir / "host.log"

    def host_path(self, path: str) -> Path:
        """A path as the host sees it (its /run, /etc), read from the root namespace."""
        return Path(f"/proc/{self.pid}/root") / path.lstrip("/")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    # -- start ---------------------------------------------------------------
    def _hosts_file(self) -> str:
        lines = ["127.0.0.1\tlocalhost", f"{self.net.address('infra')}\tinfra"]
        lines += [f"{self.net.address(h)}\t{h}" for h in self.net.hosts]
        return "\n".join(lines) + "\n"

    def _sshd_config(self) -> str:
        return "\n".join(
            [
                f"ListenAddress {self.address}",
                f"HostKey {self.workdir / 'ssh_host_ed25519_key'}",
                "PidFile /run/sshd.pid",
                f"AuthorizedKeysFile {self.keys.authorized_keys}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                # No PAM: pam_systemd would want the machine's logind.  Its
                # one job here, XDG_RUNTIME_DIR for `systemctl --user`, is SetEnv's.
                "UsePAM no",
                "StrictModes no",  # the keys live under /tmp
                f"SetEnv XDG_RUNTIME_DIR={RUNTIME_DIR}",
                f"Subsystem sftp {self.sshd / 'usr/lib/openssh/sftp-server'}",
                "LogLevel INFO",
                "",
            ]
        )

    def _distro_layout(self) -> str:
        """Shell lines giving the host /usr/bin/NAME and /var/log/cinder, inside only."""
        if not self.distro_commands:
            return ""
        w = shlex.quote(str(self.workdir))
        lines = [
            f"mount -t overlay overlay -o lowerdir=/usr/bin,upperdir={w}/usrbin-upper,workdir={w}/usrbin-work /usr/bin",
            *(f"ln -sf {shlex.quote(t)} /usr/bin/{shlex.quote(n)}" for n, t in self.distro_commands.items()),
            "mount -t tmpfs -o mode=755 tmpfs /var/log",
            "mkdir -p /var/log/cinder",
            f"mount --bind {w}/cinder/log /var/log/cinder",
        ]
        return "\n".join(lines)

    def start(self) -> None:
        for sub in ("cinder/log", "etc-upper", "etc-work", "usrbin-upper", "usrbin-work", "config/systemd/user"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.workdir / "ssh_host_ed25519_key")]).check()
        (self.workdir / "sshd_config").write_text(self._sshd_config())
        (self.workdir / "hosts").write_text(self._hosts_file())
        self.cgroups = _private_cgroups()
        enter_cgroup = "".join(f"echo $$ > {shlex.quote(str(cg / 'cgroup.procs'))}\n" for cg in self.cgroups)
        w = shlex.quote(str(self.workdir))
        script = f"""
hostname {shlex.quote(self.name)}
mount -t overlay overlay -o lowerdir=/etc,upperdir={w}/etc-upper,workdir={w}/etc-work /etc
cp {w}/hosts /etc/hosts
echo {shlex.quote(self.name)} > /etc/hostname
grep -q '^sshd:' /etc/passwd || echo 'sshd:x:{SSHD_UID}:65534::/run/sshd:/usr/sbin/nologin' >> /etc/passwd
mkdir -p /etc/cinder
mount --bind {w}/cinder /etc/cinder
mount -t tmpfs -o mode=755 tmpfs /run
{self._distro_layout()}
mkdir -p /run/sshd /run/systemd/system {RUNTIME_DIR}
chmod 700 {RUNTIME_DIR}
{shlex.quote(str(self.sshd / "usr/sbin/sshd"))} -f {w}/sshd_config -E {w}/sshd.log
{enter_cgroup}
export XDG_RUNTIME_DIR={RUNTIME_DIR} XDG_CONFIG_HOME={w}/config SYSTEMD_LOG_TARGET=console
exec /lib/systemd/systemd --user
"""
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/root",
        }
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{self.net.netns(self.name)}",
                    "unshare",
                    "--mount",
                    "--uts",
                    "--propagation",
                    "private",
                    "sh",
                    "-ec",
                    script,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        own = os.readlink("/proc/self/ns/mnt")

        def namespace() -> str | None:
            try:
                ns = os.readlink(f"/proc/{self.pid}/ns/mnt")
            except OSError:
                ns = None
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"host {self.name} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            return ns if ns != own else None

        self.mnt_ns = wait_until(namespace, lambda ns: ns is not None, timeout=10, what=f"{self.name}'s namespace")
        wait_until(
            lambda: self.host_path(f"{RUNTIME_DIR}/systemd/private").exists() or self._dead(),
            bool,
            timeout=60,
            what=f"{self.name}'s systemd --user",
        )
        wait_until(
            lambda: self.systemctl("show", "-p", "Version", "--value"), lambda r: r.ok, timeout=30, what="manager"
        )
        key = (self.workdir / "ssh_host_ed25519_key.pub").read_text().split()
        with open(self.keys.known_hosts, "a") as known:
            known.write(f"{self.name},{self.address} {key[0]} {key[1]}\n")

    def _dead(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"host {self.name} exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        return False

    # -- commands ------------------------------------------------------------
    def run(self, argv: list[str], timeout: float = 120.0) -> CommandResult:
        """A command in the host (its mounts, network, host name), as the manager's user sees it."""
        env = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "HOME=/root"]
        env.append(f"XDG_RUNTIME_DIR={RUNTIME_DIR}")
        result = run(["nsenter", "-t", str(self.pid), "-m", "-n", "-u", "--", *env, *argv], timeout=timeout)
        return CommandResult(tuple(argv), result.returncode, result.stdout, result.stderr, result.duration)

    def systemctl(self, *args: str, timeout: float = 120.0) -> CommandResult:
        return self.run(["systemctl", "--user", "--no-pager", *args], timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        result = self.systemctl("show", unit, "-p", ",".join(props)).check()
        return dict(line.partition("=")[::2] for line in result.stdout.splitlines() if "=" in line)

    def install_unit(self, name: str, text: str, dropins: Mapping[str, str] | None = None) -> None:
        """A unit and its drop-ins (``NAME.d/FILE``) in the manager's unit directory; daemon-reload."""
        (self.unit_dir / name).write_text(text)
        for file, dropin in (dropins or {}).items():
            (self.unit_dir / f"{name}.d").mkdir(exist_ok=True)
            (self.unit_dir / f"{name}.d" / file).write_text(dropin)
        self.systemctl("daemon-reload").check()

    # -- teardown ------------------------------------------------------------
    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.systemctl("exit", timeout=60)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(60)
        deadline = time.monotonic() + 30
        while self.mnt_ns is not None:
            pids = processes_in_mount_ns(self.mnt_ns)
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        _remove_cgroups(self.cgroups)
        self.cgroups = []
        self.proc = None
