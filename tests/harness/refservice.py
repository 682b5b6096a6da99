"""The reference daemon deployed on one path (systemd 252, systemd 257, SysV).

One interface for the three, in the operator's terms: ``start()``,
``reload()``, ``stop()`` return what the command printed, its exit status and
how long it took; ``status()`` gives ``MainPID``, ``ActiveState``,
``SubState``, ``NRestarts``, ``StatusText`` (read from the manager, or, on the
SysV path, from the pid file and the state file, which is all an LSB system
has); ``ask()`` talks to the daemon over its socket; ``state()`` reads its
reload state file.

Files (config, socket, log, pid file) live in a work directory that is
bind-mounted at the same path inside the Debian root, so a test names them
with one path on every path.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .commands import CommandResult, WaitTimeout, pid_exists
from .managers import UserManager
from .sysv import SysvRoot
from .units import DaemonPaths, refdaemon_default, refdaemon_initscript, refdaemon_unit, runtime_directory

__all__ = ["RefService", "SystemdRefService", "SysvRefService", "default_config"]

NAME = "refdaemon"
UNIT = f"{NAME}.service"


def default_config(*, label1: str = "one", label2: str = "two", reinit_seconds: float = 0.0, extra: str = "") -> str:
    return (
        "[DEFAULT]\n"
        "greeting = hello\n"
        f"reinit_seconds = {reinit_seconds}\n"
        f"{extra}"
        "[backend1]\n"
        f"label = {label1}\n"
        "password = s3cret-one\n"
        "[backend2]\n"
        f"label = {label2}\n"
    )


class RefService:
    """The reference daemon on one path; see the subclasses."""

    kind = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "refdaemon.conf"
        self.socket = workdir / "refdaemon.sock"
        self.log = workdir / "refdaemon.log"
        self.config.write_text(default_config())

    # -- the daemon itself -------------------------------------------------
    def write_config(self, text: str) -> None:
        # Atomically, as a configuration manager would: the daemon never reads half a file.
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)

    def ask(self, backend: str = "backend1", timeout: float = 10.0) -> dict[str, str]:
        """What the daemon serves for ``backend`` now: {'label': ..., 'generation': ..., 'greeting': ...}."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.socket))
            conn.sendall(f"{backend}\n".encode())
            reply = conn.makefile("r").readline().strip()
        name, *fields = reply.split()
        if name != backend:
            raise AssertionError(f"daemon answered {reply!r} for {backend}")
        return dict(field.split("=", 1) for field in fields)

    def state_file(self) -> Path:
        raise NotImplementedError

    def state(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.state_file().read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def generation(self) -> int:
        return int((self.state() or {}).get("generation") or 0)

    def daemon_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no daemon log)"

    # -- the operator's commands ---------------------------------------------
    def start(self) -> CommandResult:
        raise NotImplementedError

    def reload(self, timeout: float = 120.0) -> CommandResult:
        raise NotImplementedError

    def stop(self, timeout: float = 120.0) -> CommandResult:
        raise NotImplementedError

    def status(self) -> dict[str, str]:
        raise NotImplementedError

    def status_command(self) -> CommandResult:
        """What an operator runs to see why (``systemctl status`` / ``service NAME status``)."""
        raise NotImplementedError

    def main_pid(self) -> int:
        return int(self.status().get("MainPID") or 0)

    def wait_status(self, accept: Callable[[dict[str, str]], bool], what: str, timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            values = self.status()
            if accept(values):
                return values
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{self.kind}: timed out after {timeout:g}s waiting for {what}; now {values}")
            time.sleep(0.02)

    def wait_reloading(self, timeout: float = 30.0) -> dict[str, str]:
        return self.wait_status(lambda s: s.get("SubState", "").startswith("reload"), "SubState=reload*", timeout)

    def wait_cycle_running(self, timeout: float = 30.0) -> dict[str, Any]:
        """Until the daemon's state file shows a reload cycle in progress."""
        deadline = time.monotonic() + timeout
        while True:
            doc = self.state()
            if doc and doc.get("in_progress"):
                return doc
            if time.monotonic() > deadline:
                raise WaitTimeout(f"{self.kind}: no reload cycle in progress after {timeout:g}s; state {doc}")
            time.sleep(0.02)

    def wait_answering(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ask()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise WaitTimeout(
                        f"{self.kind}: daemon not answering on {self.socket}: {exc}\n" + self.daemon_log()[-2000:]
                    ) from exc
                time.sleep(0.02)


class SystemdRefService(RefService):
    """The daemon as a unit of a user manager.

    The unit is rendered for the manager's version (252: ``Type=notify`` +
    synchronous ``ExecReload=``; >= 253: ``Type=notify-reload``) unless
    ``flavour_version`` asks for another flavour (e.g. 252's, the committed
    default, on systemd 257).
    """

    def __init__(
        self,
        manager: UserManager,
        workdir: Path,
        *,
        timeout_start: float = 30,
        timeout_stop: float = 10,
        flavour_version: int | None = None,
    ) -> None:
        super().__init__(workdir)
        self.manager = manager
        self.kind = manager.name
        self.paths = DaemonPaths(
            manager.python, manager.cinder_reload, str(self.config), str(self.socket), str(self.log)
        )
        self.flavour_version = flavour_version or manager.version
        self.unit_text = refdaemon_unit(
            self.flavour_version, self.paths, timeout_start=timeout_start, timeout_stop=timeout_stop
        )
        self.unit_path = manager.install_unit(UNIT, self.unit_text)
        self.runtime_directory = runtime_directory(self.unit_text)

    def state_file(self) -> Path:
        # RuntimeDirectory= of a user manager is under $XDG_RUNTIME_DIR (systemd.exec(5)).
        return self.manager.host_path(f"{self.manager.runtime_dir}/{self.runtime_directory}/{NAME}.reload.json")

    def start(self) -> CommandResult:
        return self.manager.start(UNIT)

    def reload(self, timeout: float = 120.0) -> CommandResult:
        return self.manager.reload(UNIT, timeout=timeout)

    def stop(self, timeout: float = 120.0) -> CommandResult:
        return self.manager.stop(UNIT, timeout=timeout)

    def status(self) -> dict[str, str]:
        return self.manager.show(UNIT)

    def status_command(self) -> CommandResult:
        return self.manager.systemctl("status", UNIT)


class SysvRefService(RefService):
    """The daemon behind an LSB init script, driven by ``service NAME ...``."""

    def __init__(self, root: SysvRoot, workdir: Path, *, reload_timeout: float = 30, stop_timeout: float = 10) -> None:
        super().__init__(workdir)
        self.root = root
        self.kind = root.name
        self.state_dir = workdir / "state"
        self.pidfile = self.state_dir / f"{NAME}.pid"  # the script's default: $STATE_DIR/$NAME.pid
        self.paths = DaemonPaths(
            root.python, root.cinder_reload, str(self.config), str(self.socket), str(self.log), str(self.state_dir)
        )
        self.script_text = refdaemon_initscript(self.paths, timeout_start=reload_timeout, timeout_stop=stop_timeout)
        self.default_text = refdaemon_default(
            self.paths, str(workdir), reload_timeout=reload_timeout, stop_timeout=stop_timeout
        )
        root.ns.write_file(f"/etc/default/{NAME}", self.default_text)
        self.script_path = root.install_initscript(NAME, self.script_text)

    def state_file(self) -> Path:
        return self.state_dir / f"{NAME}.reload.json"

    def start(self) -> CommandResult:
        # The script's start-stop-daemon --notify-await returns after READY=1.
        return self.root.service(NAME, "start")

    def reload(self, timeout: float = 120.0) -> CommandResult:
        return self.root.service(NAME, "reload", timeout=timeout)

    def stop(self, timeout: float = 120.0) -> CommandResult:
        return self.root.service(NAME, "stop", timeout=timeout)

    def _pid(self) -> int:
        try:
            text = self.pidfile.read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text.isdigit() else 0

    def status(self) -> dict[str, str]:
        # An LSB system has no manager to ask: the pid file says whether it
        # runs, the state file what it is doing and what the last reload did.
        pid = self._pid()
        alive = pid > 0 and pid_exists(pid)
        doc = self.state() or {}
        reloading = bool(doc.get("in_progress")) and doc.get("pid") == pid
        # No NRestarts= or Result=: an LSB system keeps neither, and a value
        # made up here would let a test assert what nobody observed.  That
        # the service was not restarted shows in MainPID.
        return {
            "MainPID": str(pid if alive else 0),
            "ActiveState": "active" if alive else "inactive",
            "SubState": ("reload" if reloading else "running") if alive else "dead",
            "StatusText": str(doc.get("message") or ""),
        }

    def status_command(self) -> CommandResult:
        return self.root.service(NAME, "status")
