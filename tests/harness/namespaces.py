"""Private mount namespaces: where every real manager of the tests lives.

Nothing here mounts anything in the host's namespace or touches the host's
``/run`` or its systemd.  Each environment is a process started with
``unshare -m`` (private propagation, so its mounts never leak out); commands
are run inside with ``nsenter``; teardown kills, by PID, every process left
in that mount namespace.

Two kinds:
* ``HostNamespace``: the host's file system, plus a tmpfs on ``/run/systemd``
  (systemd refuses ``--user`` without ``/run/systemd/system``).
* ``RootNamespace``: a Debian root (``roots.trixie_root()``) seen through an
  overlay (the cached root stays untouched; each environment writes to its own
  upper directory), with ``/proc``, ``/sys``, ``/dev``, a fresh ``/run`` and
  ``/tmp``, and chosen host directories bind-mounted at the same path (the
  repository read-only, test work directories read-write), so a test uses the
  same path for a config file or a socket inside and outside.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .commands import CommandResult, WaitTimeout, pid_exists, run

__all__ = ["REPO", "HostNamespace", "Namespace", "PackageRootNamespace", "RootNamespace", "processes_in_mount_ns"]

REPO = Path(__file__).resolve().parents[2]
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _mnt_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def processes_in_mount_ns(ns: str) -> list[int]:
    """PIDs whose mount namespace is ``ns`` (as read from /proc/PID/ns/mnt)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _mnt_ns(int(entry)) == ns:
            found.append(int(entry))
    return found


CGROUP_ROOT = Path("/sys/fs/cgroup")


def _private_cgroups() -> list[Path]:
    """Fresh cgroups for one manager: the cgroup2 root, or, on a hybrid host,
    the unified and the name=systemd hierarchies.  Empty where they cannot be
    made (then the manager shares its parent's, as before)."""
    if (CGROUP_ROOT / "cgroup.procs").exists():
        parents = [CGROUP_ROOT]
    else:
        parents = [CGROUP_ROOT / h for h in ("unified", "systemd") if (CGROUP_ROOT / h / "cgroup.procs").exists()]
    name = f"cinder-reload-test.{os.getpid()}.{time.monotonic_ns()}"
    made: list[Path] = []
    try:
        for parent in parents:
            (parent / name).mkdir()
            made.append(parent / name)
    except OSError:
        _remove_cgroups(made)
        return []
    return made


def _remove_cgroups(cgroups: Sequence[Path]) -> None:
    """Remove the (now empty) cgroups, the sub-cgroups systemd made first."""
    for top in cgroups:
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


class Namespace:
    """A process in a private mount namespace, and a way to run commands there."""

    #: Set by subclasses: does ``run()`` chroot into the anchor's root?
    chrooted = False

    def __init__(self, workdir: Path, log: Path | None = None) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.ns: str | None = None
        self.log = log or workdir / "namespace.log"
        self.cgroups: list[Path] = []

    # -- lifecycle ----------------------------------------------------------
    def _spawn(self, script: str, env: Mapping[str, str]) -> None:
        # Each manager in a cgroup of its own.  A `systemd --user` started
        # from /init.scope puts its units at /app.slice/NAME.service from the
        # cgroup root, so two managers running a same-named unit share one
        # cgroup, and stopping it in one SIGKILLs the other's processes.
        self.cgroups = _private_cgroups()
        enter = "".join(f"echo $$ > {shlex.quote(str(cg / 'cgroup.procs'))}\n" for cg in self.cgroups)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-ec", enter + script],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # our own session: a terminal's signals never reach it
            )
        host_ns = _mnt_ns(os.getpid())
        deadline = time.monotonic() + 10
        while True:
            ns = _mnt_ns(self.proc.pid)
            if ns is not None and ns != host_ns:
                self.ns = ns
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"unshare failed (exit {self.proc.poll()}): {self.log.read_text()[-2000:]}")
            time.sleep(0.005)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process left in the namespace (by PID); return them."""
        if self.ns is None:
            return []
        killed: list[int] = []
        deadline = time.monotonic() + timeout
        while True:
            pids = processes_in_mount_ns(self.ns)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    if pid not in killed:
                        killed.append(pid)
                except ProcessLookupError:
                    pass
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
            if time.monotonic() > deadline:
                raise WaitTimeout(f"processes {pids} survived SIGKILL for {timeout}s")
        if self.proc is not None:
            self.proc.wait(timeout=timeout)
        _remove_cgroups(self.cgroups)
        self.cgroups = []
        return killed

    # -- running commands inside -------------------------------------------
    def nsenter(self) -> list[str]:
        argv = ["nsenter", "-t", str(self.pid), "-m"]
        if self.chrooted:
            argv += ["-r", "-w"]  # root and working directory of the anchor: both inside the chroot
        return argv + ["--"]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120.0,
        input: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` in the namespace (and root) with a clean environment."""
        full_env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        full_env.update(env or {})
        cmd = [*self.nsenter(), "env", "-i", *(f"{k}={v}" for k, v in full_env.items()), *argv]
        result = run(cmd, timeout=timeout, input=input)
        # Report the command as the operator typed it, not our wrapping.
        return CommandResult(tuple(argv), result.returncode, result.stdout, result.stderr, result.duration)

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        """The host's way to reach ``path`` as the namespace's processes see it."""
        path = Path(path)
        if not self.chrooted:
            return path
        return Path(f"/proc/{self.pid}/root") / path.relative_to("/")

    def write_file(self, path: str | os.PathLike[str], text: str, mode: int = 0o644) -> None:
        target = self.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)


class HostNamespace(Namespace):
    """The host's file system with a private tmpfs on /run/systemd."""

    def start(self, command: str, env: Mapping[str, str]) -> None:
        script = f"mount -t tmpfs -o mode=755 tmpfs /run/systemd\nmkdir /run/systemd/system\nexec {command}\n"
        self._spawn(script, env)


class RootNamespace(Namespace):
    """A Debian root through an overlay, chrooted, with host dirs bind-mounted."""

    chrooted = True

    def __init__(
        self,
        root: Path,
        workdir: Path,
        *,
        binds: Sequence[Path] = (),
        readonly_binds: Sequence[Path] = (REPO,),
        systemd_run_dir: bool = True,
        cgroup2: bool = False,
        log: Path | None = None,
    ) -> None:
        super().__init__(workdir, log)
        self.root = root
        self.cgroup2 = cgroup2
        self.binds = list(binds)
        self.readonly_binds = list(readonly_binds)
        self.systemd_run_dir = systemd_run_dir
        # Outside workdir: workdir itself is bind-mounted into the root.
        self.layer = Path(tempfile.mkdtemp(prefix="cr-overlay."))
        for sub in ("upper", "work", "merged"):
            (self.layer / sub).mkdir()
        self._prepare_upper(self.layer / "upper")

    def _python_site(self) -> str:
        versions = sorted(p.name for p in (self.root / "usr/lib").glob("python3.*") if p.name[8:].isdigit())
        if not versions:
            raise RuntimeError(f"no python3 in {self.root}")
        return f"/usr/local/lib/{versions[-1]}/dist-packages"

    def _prepare_upper(self, upper: Path) -> None:
        # The project from the repository (bind-mounted read-only at its host
        # path): a .pth makes it importable by the root's python3, a launcher
        # gives it the command name a package would.  Written to the upper
        # layer before the overlay is mounted (overlayfs forbids changing
        # layers under a mounted overlay).
        site = upper / self._python_site().lstrip("/")
        site.mkdir(parents=True)
        (site / "cinder_reload_repo.pth").write_text(f"{REPO}\n")
        bindir = upper / "usr/local/bin"
        bindir.mkdir(parents=True, exist_ok=True)
        launcher = bindir / "cinder-reload"
        launcher.write_text("#!/usr/bin/python3\nimport sys\nfrom cinder_reload.entry import main\nsys.exit(main())\n")
        launcher.chmod(0o755)

    def start(self, command: str, env: Mapping[str, str]) -> None:
        m = shlex.quote(str(self.layer / "merged"))
        lines = [
            f"mount -t overlay overlay -o lowerdir={shlex.quote(str(self.root))},"
            f"upperdir={shlex.quote(str(self.layer / 'upper'))},workdir={shlex.quote(str(self.layer / 'work'))} {m}",
            f"mount -t proc proc {m}/proc",
            f"mount --rbind /sys {m}/sys",
            f"mount --rbind /dev {m}/dev",
        ]
        if self.cgroup2:
            # systemd >= 258 refuses cgroup v1 and this host is a v1/v2 hybrid:
            # the root sees the unified (cgroup2) hierarchy alone on
            # /sys/fs/cgroup, inside this namespace only.  The anchor already
            # sits in a cgroup of its own there (_spawn), which the manager
            # takes as its root (../shared/notes/systemd-and-openstack.md).
            lines += [f"umount -R {m}/sys/fs/cgroup", f"mount -t cgroup2 cgroup2 {m}/sys/fs/cgroup"]
        lines += [
            f"mount -t tmpfs -o mode=755 tmpfs {m}/run",
            f"mount -t tmpfs -o mode=1777 tmpfs {m}/tmp",
            f"mkdir -m 700 {m}/run/xdg",
        ]
        if self.systemd_run_dir:
            lines.append(f"mkdir -p {m}/run/systemd/system")
        for path, ro in [(p, True) for p in self.readonly_binds] + [(p, False) for p in self.binds]:
            q = shlex.quote(str(path))
            lines.append(f"mkdir -p {m}{q} && mount --bind {q} {m}{q}")
            if ro:
                lines.append(f"mount -o remount,bind,ro {m}{q}")
        lines.append(f"exec chroot {m} {command}")
        self._spawn("\n".join(lines) + "\n", env)
        # Ready once the anchor has chrooted: before that, nsenter -r would
        # give a command the host's root (a race seen here: Debian 12's
        # python3 answering inside "Debian 13").
        merged = str(self.layer / "merged")
        deadline = time.monotonic() + 30
        while True:
            try:
                if os.readlink(f"/proc/{self.pid}/root") == merged:
                    return
            except OSError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"root namespace setup failed ({self.proc.returncode}):\n"
                    + self.log.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    "root namespace not ready after 30s:\n" + self.log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.005)

    def cleanup(self) -> None:
        shutil.rmtree(self.layer, ignore_errors=True)


class PackageRootNamespace(RootNamespace):
    """A ``RootNamespace`` where nothing of the repository is put in: whatever
    ``cinder-reload`` runs there came from the installed ``.deb``."""

    def __init__(self, root: Path, workdir: Path, **kwargs: Any) -> None:
        kwargs.setdefault("readonly_binds", ())
        super().__init__(root, workdir, **kwargs)

    def _prepare_upper(self, upper: Path) -> None:
        pass


def wait_for_path(ns: Namespace, path: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    target = ns.host_path(path)
    while not target.exists():
        if ns.proc is not None and ns.proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited ({ns.proc.returncode}) before {path} appeared:\n"
                + ns.log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() > deadline:
            raise WaitTimeout(
                f"{what}: {path} did not appear within {timeout}s:\n" + ns.log.read_text(errors="replace")[-3000:]
            )
        time.sleep(0.01)
    _ = pid_exists  # re-exported helper kept close to its users
