"""Real systemd user managers: 252 (the host's), 257 (in the Debian 13 root)
and 262 (in the cached sid root with Debian's cinder, cinder_roots.py).

Both have one interface (``UserManager``): install a unit, ``daemon-reload``,
``start``/``stop``/``reload``/``restart`` (each returning a ``CommandResult``:
exit status, output, duration, as the operator sees them), ``show`` unit
properties, wait for properties with a deadline, and ``close()``: ``systemctl
--user exit``, then SIGKILL by PID for anything left in the namespace.

How they are started is in ``../shared/notes/real-components.md``: a user
manager runs as root in a private mount namespace, where a tmpfs provides
``/run/systemd/system``; it talks to ``systemctl --user`` over
``$XDG_RUNTIME_DIR/systemd/private``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .cinder_roots import cinder_root
from .commands import CommandResult, WaitTimeout, run
from .namespaces import BASE_PATH, REPO, HostNamespace, Namespace, RootNamespace, wait_for_path
from .roots import trixie_root

__all__ = ["SystemdHost252", "SystemdRoot", "SystemdSid262", "SystemdTrixie257", "UserManager"]

DEFAULT_PROPS = ("MainPID", "ActiveState", "SubState", "Result", "NRestarts", "StatusText", "ExecMainStatus")


class UserManager:
    """One running ``systemd --user``; subclasses say where and how."""

    name = "systemd"
    ns: Namespace
    #: The interpreter and the cinder-reload command, as paths inside.
    python: str
    cinder_reload: str

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.runtime_dir = "/run/xdg"  # overridden where the host's file system is used
        self.config_home = ""
        self.version = 0
        self.closed = False

    # -- to be provided ------------------------------------------------------
    @property
    def unit_dir(self) -> str:
        return f"{self.config_home}/systemd/user"

    def _env(self) -> dict[str, str]:
        return {"XDG_RUNTIME_DIR": self.runtime_dir, "XDG_CONFIG_HOME": self.config_home, "HOME": "/root"}

    def _wait_ready(self, timeout: float = 30.0) -> None:
        wait_for_path(self.ns, f"{self.runtime_dir}/systemd/private", timeout, f"systemd --user ({self.name})")
        # The socket exists a little before the manager answers on it.
        deadline = time.monotonic() + timeout
        while True:
            result = self.systemctl("show", "-p", "Version", "--value", check=False)
            if result.ok and result.stdout.strip():
                self.version = int(re.match(r"\d+", result.stdout.strip()).group())  # type: ignore[union-attr]
                return
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{self.name}: manager did not answer: {result}")
            time.sleep(0.02)

    # -- commands ------------------------------------------------------------
    def systemctl(self, *args: str, timeout: float = 120.0, check: bool = False) -> CommandResult:
        result = self.ns.run(["systemctl", "--user", "--no-pager", *args], env=self._env(), timeout=timeout)
        return result.check() if check else result

    def run(self, argv: list[str], timeout: float = 120.0) -> CommandResult:
        """Any command in the manager's world (namespace, root, environment)."""
        return self.ns.run(argv, env=self._env(), timeout=timeout)

    def install_unit(self, name: str, text: str, *, reload: bool = True) -> Path:
        path = f"{self.unit_dir}/{name}"
        self.ns.write_file(path, text)
        if reload:
            self.daemon_reload()
        return self.ns.host_path(path)

    def daemon_reload(self) -> CommandResult:
        return self.systemctl("daemon-reload", check=True)

    def start(self, unit: str, timeout: float = 120.0) -> CommandResult:
        return self.systemctl("start", unit, timeout=timeout)

    def stop(self, unit: str, timeout: float = 120.0) -> CommandResult:
        return self.systemctl("stop", unit, timeout=timeout)

    def reload(self, unit: str, timeout: float = 120.0) -> CommandResult:
        return self.systemctl("reload", unit, timeout=timeout)

    def restart(self, unit: str, timeout: float = 120.0) -> CommandResult:
        return self.systemctl("restart", unit, timeout=timeout)

    def show(self, unit: str, props: Iterable[str] = DEFAULT_PROPS) -> dict[str, str]:
        result = self.systemctl("show", unit, "-p", ",".join(props), check=True)
        values: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, _, value = line.partition("=")
            values[key] = value
        return values

    def wait_for(
        self,
        unit: str,
        timeout: float = 30.0,
        accept: Callable[[dict[str, str]], bool] | None = None,
        **expected: str,
    ) -> dict[str, str]:
        """Poll ``show`` until every ``expected`` property matches (and ``accept``)."""
        props = tuple(dict.fromkeys([*DEFAULT_PROPS, *expected]))
        deadline = time.monotonic() + timeout
        while True:
            values = self.show(unit, props)
            if all(values.get(k) == v for k, v in expected.items()) and (accept is None or accept(values)):
                return values
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{self.name}: {unit} did not reach {expected} within {timeout}s; now {values}")
            time.sleep(0.02)

    def host_path(self, path: str | os.PathLike[str]) -> Path:
        return self.ns.host_path(path)

    # -- teardown ------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.ns.proc is not None and self.ns.proc.poll() is None:
                self.systemctl("exit", timeout=30)
                try:
                    self.ns.proc.wait(timeout=30)
                except Exception:  # noqa: BLE001 - killed below either way
                    pass
        finally:
            self.ns.kill_all()
            self._cleanup()

    def _cleanup(self) -> None:
        pass

    def __enter__(self) -> UserManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _manager_env(extra: Mapping[str, str]) -> dict[str, str]:
    # There is no journal here: the manager logs to its stderr, which is the
    # namespace's log file (namespace.log in the work directory).
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root", "SYSTEMD_LOG_TARGET": "console"}
    env.update(extra)
    return env


class SystemdHost252(UserManager):
    """The host's systemd (252 on Debian 12) as a user manager."""

    name = "systemd-252"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        # A short path: $XDG_RUNTIME_DIR/systemd/private must fit sun_path (108 bytes).
        self.base = Path(tempfile.mkdtemp(prefix="cr-um252."))
        self.runtime_dir = str(self.base / "xdg")
        self.config_home = str(self.base / "config")
        os.mkdir(self.runtime_dir, 0o700)
        os.makedirs(self.unit_dir)
        venv = REPO / ".venv"
        self.python = str(venv / "bin/python")
        self.cinder_reload = str(venv / "bin/cinder-reload")
        self.ns = HostNamespace(self.base, log=workdir / f"{self.name}.log")
        self.ns.start("/lib/systemd/systemd --user", _manager_env(self._env()))
        self._wait_ready()

    def _cleanup(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class SystemdRoot(UserManager):
    """The systemd of a cached Debian root, as a user manager there.

    ``namespace`` builds the ``RootNamespace`` (the harness's, with the
    repository importable, by default); ``cgroup2`` gives the root a
    cgroup2-only ``/sys/fs/cgroup`` (systemd >= 258 refuses this hybrid host's
    cgroup v1 hierarchies)."""

    def __init__(
        self,
        workdir: Path,
        root: Path,
        *,
        name: str,
        binds: Iterable[Path] = (),
        cgroup2: bool = False,
        namespace: type[RootNamespace] = RootNamespace,
        cinder_reload: str = "/usr/local/bin/cinder-reload",
    ) -> None:
        super().__init__(workdir)
        self.name = name
        self.runtime_dir = "/run/xdg"
        self.config_home = "/root/.config"
        self.python = "/usr/bin/python3"
        self.cinder_reload = cinder_reload
        self.ns = namespace(root, workdir, binds=[workdir, *binds], cgroup2=cgroup2, log=workdir / f"{name}.log")
        self.ns.start("/usr/lib/systemd/systemd --user", _manager_env(self._env()))
        self._wait_ready()

    def _cleanup(self) -> None:
        assert isinstance(self.ns, RootNamespace)
        self.ns.cleanup()


class SystemdTrixie257(SystemdRoot):
    """systemd 257 from the cached Debian 13 root, as a user manager there."""

    def __init__(self, workdir: Path, *, binds: Iterable[Path] = ()) -> None:
        super().__init__(workdir, trixie_root(), name="systemd-257", binds=binds)


class SystemdSid262(SystemdRoot):
    """systemd 262 from the cached sid root (which also holds Debian's cinder)."""

    def __init__(self, workdir: Path, *, binds: Iterable[Path] = ()) -> None:
        super().__init__(workdir, cinder_root("sid"), name="systemd-262", binds=binds, cgroup2=True)


_ = run  # exported through harness.commands
