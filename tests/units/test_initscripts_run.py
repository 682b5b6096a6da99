"""The LSB init scripts, run for real against the reference daemon.

The script from ``initscripts/`` (the committed, rendered one) runs on this
Debian 12 host with ``/lib/lsb/init-functions`` and ``start-stop-daemon``,
exactly as ``service NAME VERB`` would run it.  Its settings come from an
``/etc/default/NAME`` file, as an operator writes them: each command runs in
a private mount namespace where a temporary directory is bind-mounted over
``/etc/default`` (the host's ``/etc`` and ``/etc/init.d`` are never touched).
The daemon it starts lives on after the command, in that namespace; it is
stopped through the script, or by PID at teardown.

The same scenario runs a second time on Debian 13 (the harness's cached
root, manager-less, tests/harness/sysv.py) through ``service cinder-volume
VERB``, as an operator types it there: the script installed as
``/etc/init.d/cinder-volume`` and its settings as
``/etc/default/cinder-volume`` in the root's overlay.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.commands import CommandResult, pid_exists, run, wait_until
from harness.sysv import SysvRoot

pytestmark = pytest.mark.sysv

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "initscripts" / "cinder-volume"
CINDER_RELOAD = Path(sys.executable).parent / "cinder-reload"
REINIT_SECONDS = 1.0


def _config(label: str, *, broken: bool = False) -> str:
    text = f"""[DEFAULT]
reinit_seconds = {REINIT_SECONDS}
greeting = hello
[backend1]
label = {label}
password = s3cret
[backend2]
label = steady
"""
    return text + ("[backend2\n" if broken else "")


@dataclass
class InitScript:
    """``/etc/init.d/cinder-volume`` with its ``/etc/default/cinder-volume``."""

    root: Path

    @property
    def script(self) -> Path:
        return self.root / "init.d" / "cinder-volume"

    @property
    def config(self) -> Path:
        return self.root / "refdaemon.conf"

    @property
    def state_dir(self) -> Path:
        return self.root / "run"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "cinder-volume.pid"

    @property
    def socket(self) -> Path:
        return self.root / "refdaemon.sock"

    @property
    def state_file(self) -> Path:
        return self.state_dir / "refdaemon.reload.json"

    def default_file(self, python: str, cinder_reload: str) -> str:
        """``/etc/default/cinder-volume``: the script pointed at the reference daemon."""
        daemon_args = [
            str(REPO / "tests" / "refdaemon.py"),
            "--config-file", str(self.config),
            "--socket", str(self.socket),
            "--state-dir", str(self.state_dir),
            "--log-file", str(self.root / "refdaemon.log"),
        ]  # fmt: skip
        settings = {
            "CINDER_RELOAD": cinder_reload,
            "RELOAD_NAME": "refdaemon",  # the reference daemon's state file name
            "STATE_DIR": str(self.state_dir),
            "CINDER_USER": "root",
            "CINDER_GROUP": "root",
            "WORKDIR": str(self.root),
            "DAEMON": python,
            "DAEMON_ARGS": shlex.join(daemon_args),
            "START_TIMEOUT": "30",
            "RELOAD_TIMEOUT": "30",
            "STOP_TIMEOUT": "10",
            "DAEMON_OUTPUT": str(self.root / "daemon.out"),
        }
        return "".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items())

    def install(self) -> None:
        self.script.parent.mkdir()
        shutil.copy2(SCRIPT, self.script)
        (self.root / "default").mkdir()
        (self.root / "default" / "cinder-volume").write_text(self.default_file(sys.executable, str(CINDER_RELOAD)))
        self.config.write_text(_config("one"))

    def __call__(self, verb: str, timeout: float = 60) -> CommandResult:
        default = shlex.quote(str(self.root / "default"))
        inner = f"mount --bind {default} /etc/default && exec {shlex.quote(str(self.script))} {verb}"
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}
        return run(["unshare", "--mount", "--propagation", "private", "sh", "-c", inner], env=env, timeout=timeout)

    def pid(self) -> int | None:
        try:
            text = self.pidfile.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else None

    def state(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.state_file.read_text())
        return data

    def ask(self, backend: str = "backend1") -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(10)
            client.connect(str(self.socket))
            client.sendall(f"{backend}\n".encode())
            return client.makefile("r").readline().strip()


@dataclass
class Debian13InitScript(InitScript):
    """The same script, installed in the Debian 13 root and run by ``service``."""

    sysv: SysvRoot | None = None

    def install(self) -> None:
        assert self.sysv is not None
        self.sysv.install_initscript("cinder-volume", SCRIPT.read_text())
        self.sysv.ns.write_file(
            "/etc/default/cinder-volume", self.default_file(self.sysv.python, self.sysv.cinder_reload)
        )
        self.config.write_text(_config("one"))

    def __call__(self, verb: str, timeout: float = 60) -> CommandResult:
        assert self.sysv is not None
        return self.sysv.service("cinder-volume", verb, timeout=timeout)


@pytest.fixture
def initscript() -> Iterator[InitScript]:
    if os.geteuid() != 0:
        pytest.skip("needs root (start-stop-daemon --chuid, a private mount namespace)")
    for tool in ("unshare", "start-stop-daemon"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool}")
    root = Path(tempfile.mkdtemp(prefix="cr-init-"))
    service = InitScript(root)
    service.install()
    try:
        yield service
    finally:
        pid = service.pid()
        if pid is not None and pid_exists(pid):
            os.kill(pid, signal.SIGKILL)
        for log in ("refdaemon.log", "daemon.out"):
            if (root / log).exists():
                print(f"----- {log} -----\n{(root / log).read_text(errors='replace')[-3000:]}")
        shutil.rmtree(root, ignore_errors=True)


def _expect(result: CommandResult, code: int) -> CommandResult:
    assert result.returncode == code, f"expected exit {code}: {result}"
    return result


@pytest.fixture
def debian13_initscript(sysv_root: SysvRoot, harness_workdir: Path) -> Debian13InitScript:
    service = Debian13InitScript(harness_workdir, sysv=sysv_root)
    service.install()
    return service


def test_lsb_verbs_debian12(initscript: InitScript) -> None:
    lsb_verbs(initscript)


def test_lsb_verbs_debian13_service(debian13_initscript: Debian13InitScript) -> None:
    lsb_verbs(debian13_initscript)


def lsb_verbs(initscript: InitScript) -> None:
    # start: returns once the daemon sent READY=1 (--notify-await), so it answers at once.
    _expect(initscript("start"), 0)
    pid = initscript.pid()
    assert pid is not None and pid_exists(pid)
    assert initscript.ask() == "backend1 label=one generation=0 greeting=hello"
    assert initscript.state()["pid"] == pid

    # start on a running service: success, nothing new started (LSB).
    _expect(initscript("start"), 0)
    assert initscript.pid() == pid

    status = _expect(initscript("status"), 0)
    assert "is running" in status.output and f"(pid {pid})" in status.output

    # reload: synchronous, same process, the new label is served when it returns.
    initscript.config.write_text(_config("two"))
    before = int(initscript.state()["generation"])  # type: ignore[call-overload]
    reload = _expect(initscript("reload"), 0)
    assert "Reload #1 ok" in reload.stdout, reload
    assert reload.duration >= REINIT_SECONDS, f"reload returned before the cycle ended: {reload}"
    assert initscript.pid() == pid and pid_exists(pid)
    assert initscript.state()["generation"] == before + 1 and initscript.state()["result"] == "ok"
    assert initscript.ask() == "backend1 label=two generation=1 greeting=hello"

    # reload of a broken file: non-zero with the reason, the daemon keeps its configuration.
    initscript.config.write_text(_config("never", broken=True))
    broken = initscript("reload")
    assert broken.returncode == 1, f"a refused reload must fail: {broken}"
    assert "Reload failed" in broken.stderr and "refdaemon.conf" in broken.stderr, broken  # the reason, on stderr
    assert initscript.pid() == pid and pid_exists(pid)
    assert initscript.state()["result"] != "ok"
    assert initscript.ask() == "backend1 label=two generation=1 greeting=hello"

    # force-reload: the running engine supports reload, so it reloads (no restart).
    initscript.config.write_text(_config("three"))
    generation = int(initscript.state()["generation"])  # type: ignore[call-overload]
    forced = _expect(initscript("force-reload"), 0)
    assert forced.duration >= REINIT_SECONDS, forced
    assert initscript.pid() == pid
    assert initscript.state()["generation"] == generation + 1
    assert initscript.ask() == "backend1 label=three generation=2 greeting=hello"

    # force-reload of a process that does not show it runs the engine (no
    # state file names its pid): Debian policy 9.3.2's other branch, a restart.
    initscript.state_file.unlink()
    initscript.config.write_text(_config("four"))
    _expect(initscript("force-reload"), 0)
    forced_pid = initscript.pid()
    assert forced_pid is not None and forced_pid != pid and pid_exists(forced_pid)
    wait_until(lambda: pid_exists(pid), lambda alive: not alive, timeout=10, what=f"old pid {pid} gone")
    assert initscript.ask() == "backend1 label=four generation=0 greeting=hello"
    pid = forced_pid

    # restart: a new process, serving the file as it is.
    initscript.config.write_text(_config("three"))
    _expect(initscript("restart"), 0)
    new_pid = initscript.pid()
    assert new_pid is not None and new_pid != pid and pid_exists(new_pid)
    wait_until(lambda: pid_exists(pid), lambda alive: not alive, timeout=10, what=f"old pid {pid} gone")
    assert initscript.ask() == "backend1 label=three generation=0 greeting=hello"

    # try-restart on a running service restarts it.
    _expect(initscript("try-restart"), 0)
    newest = initscript.pid()
    assert newest is not None and newest != new_pid

    # stop: the process is gone and so is its pid file.
    _expect(initscript("stop"), 0)
    assert not pid_exists(newest)
    assert initscript.pid() is None

    # The verbs on a stopped service, with their LSB codes.
    _expect(initscript("status"), 3)
    _expect(initscript("stop"), 0)  # stopping a stopped service succeeds
    _expect(initscript("reload"), 7)  # program is not running
    _expect(initscript("force-reload"), 7)
    _expect(initscript("try-restart"), 0)  # nothing to restart
    assert initscript.pid() is None
    _expect(initscript("bogus"), 3)  # unimplemented feature: usage
