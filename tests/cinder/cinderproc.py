"""Real cinder services under ``cinder-reload run``, as plain processes.

A service runs from the cached cinder venv (cinder_venv.py) with a real AF_UNIX
datagram ``NOTIFY_SOCKET`` bound by the test, its own sqlite database (a copy
of one ``cinder-manage db sync`` made once per session), ``transport_url =
fake://`` and two ``FakeLoggingVolumeDriver`` backends.  Everything a test
looks at is what an operator could: the sd_notify messages, the state files,
the log file, ``/proc``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import NotifyListener, signal_wait, wait_until

__all__ = [
    "OSLO_BACKENDS",
    "THREADING",
    "CinderService",
    "api_config",
    "backup_config",
    "children_of",
    "db_template",
    "on_backend",
    "scheduler_config",
    "volume_config",
]

FAKE_DRIVER = "cinder.tests.fake_driver.FakeLoggingVolumeDriver"

#: cinder's switch to oslo.service's threading backend (cotyledon) instead of eventlet.
THREADING = {"OS_CINDER_DISABLE_EVENTLET_PATCHING": "true"}
#: oslo.service's two backends, for tests parametrised over them (on_backend()).
OSLO_BACKENDS = ("eventlet", "threading")


def on_backend(backend: str, start: Callable[..., CinderService]) -> Callable[..., CinderService]:
    """The ``start_cinder`` fixture's function, starting services on ``backend`` (one of OSLO_BACKENDS)."""
    if backend == "eventlet":
        return start

    def start_threading(*args: Any, env: dict[str, str] | None = None, **kwargs: Any) -> CinderService:
        return start(*args, env={**THREADING, **(env or {})}, **kwargs)

    return start_threading


def volume_config(workdir: Path, **overrides: str) -> str:
    """A self-contained cinder.conf; ``overrides`` are extra raw lines per section name."""
    sections = {
        "DEFAULT": [
            "transport_url = fake://",
            f"state_path = {workdir}/state",
            "enabled_backends = fake1,fake2",
            f"log_dir = {workdir}",
            "debug = false",
        ],
        # Several processes write to it (the main process, each backend):
        # wait for a lock up to 30 s, not pysqlite's 5 s (seen failing under load).
        "database": [f"connection = sqlite:///{workdir}/cinder.sqlite?timeout=30"],
        "oslo_concurrency": [f"lock_path = {workdir}/lock"],
        # The log driver: reload events become log lines we can read.
        "oslo_messaging_notifications": ["driver = log"],
        # Short enough that a stuck worker fails a test's reload quickly.
        "reload": ["drain_timeout = 10", "worker_timeout = 4"],
        "fake1": [f"volume_driver = {FAKE_DRIVER}", "volume_backend_name = fake1"],
        "fake2": [f"volume_driver = {FAKE_DRIVER}", "volume_backend_name = fake2"],
    }
    for name, extra in overrides.items():
        sections.setdefault(name, []).extend(extra.splitlines())
    return "".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) + "\n" for name, lines in sections.items())


def scheduler_config(workdir: Path, **overrides: str) -> str:
    """cinder-scheduler alone: no backend will report, so do not wait 60 s for one."""
    text = volume_config(workdir, **overrides)
    text = text.replace("enabled_backends = fake1,fake2\n", "scheduler_driver_init_wait_time = 1\n")
    return text.split("[fake1]")[0]


def backup_config(workdir: Path) -> str:
    """cinder-backup alone, with the POSIX backup driver on a directory of the test."""
    (workdir / "backups").mkdir(exist_ok=True)
    return scheduler_config(workdir).replace(
        "debug = false\n",
        "debug = false\nbackup_driver = cinder.backup.drivers.posix.PosixBackupDriver\n"
        f"backup_posix_path = {workdir}/backups\n",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_config(workdir: Path, venv: Path, workers: int = 2) -> str:
    """cinder-api alone (noauth) on a free loopback port, with ``workers`` processes."""
    shutil.copy(venv / "etc" / "cinder" / "api-paste.ini", workdir / "api-paste.ini")
    return scheduler_config(workdir).replace(
        "debug = false\n",
        "debug = false\nauth_strategy = noauth\n"
        f"api_paste_config = {workdir}/api-paste.ini\n"
        f"osapi_volume_listen = 127.0.0.1\nosapi_volume_listen_port = {free_port()}\n"
        f"osapi_volume_workers = {workers}\n",
    )


def db_template(venv: Path, workdir: Path) -> Path:
    """A freshly synced cinder database, made once and copied per service."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "state").mkdir(exist_ok=True)
    (workdir / "lock").mkdir(exist_ok=True)
    conf = workdir / "cinder.conf"
    conf.write_text(volume_config(workdir))
    subprocess.run(
        [str(venv / "bin" / "cinder-manage"), "--config-file", str(conf), "db", "sync"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return workdir / "cinder.sqlite"


def children_of(pid: int) -> set[int]:
    """Child processes of ``pid``, whichever of its threads forked them (cotyledon forks from one)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children.update(int(p) for p in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return children


class CinderService:
    """``cinder-reload run SERVICE -- --config-file <workdir>/cinder.conf`` as a real process."""

    def __init__(
        self,
        venv: Path,
        workdir: Path,
        db: Path,
        service: str = "cinder-volume",
        config: str | None = None,
        extra_env: dict[str, str] | None = None,
    ):
        self.venv = venv
        self.workdir = workdir
        self.service = service
        for sub in ("state", "lock", "run"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(db, workdir / "cinder.sqlite")
        self.config_file = workdir / "cinder.conf"
        self.config_file.write_text(config if config is not None else volume_config(workdir))
        self.state_dir = workdir / "run"
        self.log_file = workdir / f"{service}.log"
        self.notify = NotifyListener(str(workdir / "notify.sock"))
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.address, CINDER_RELOAD_STATE_DIR=str(self.state_dir))
        env.pop("RUNTIME_DIRECTORY", None)
        env.update(extra_env or {})
        self.output = open(workdir / "stdout.log", "wb")
        self.proc = subprocess.Popen(
            [self.bin("cinder-reload"), "run", service, "--", "--config-file", str(self.config_file)],
            env=env,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            start_new_session=True,
        )

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> set[int]:
        return {self.pid} | children_of(self.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        try:
            self.notify.wait_for(lambda m: m.get("READY") == "1", timeout)
        except AssertionError:
            raise AssertionError(f"{self.service} never sent READY=1; log:\n{self.log_tail()}") from None

    def state(self, name: str | None = None) -> dict[str, Any]:
        path = self.state_dir / f"{name or self.service}.reload.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def worker_pid(self, worker: str) -> int:
        """A worker's pid: cinder-volume's backends from the main state file
        (the main process drives them), other services' from their own."""
        if self.service == "cinder-volume":
            by_name = {w["worker"]: w for w in self.state().get("workers", [])}
            return int(by_name[worker]["pid"])
        return int(self.state(f"{self.service}.{worker}")["pid"])

    def reload(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``cinder-reload signal SERVICE --pid MAINPID --wait``: what ExecReload= runs."""
        return signal_wait([self.bin("cinder-reload")], self.service, self.pid, self.state_dir, timeout)

    def check_running(self) -> subprocess.CompletedProcess[str]:
        """``cinder-reload check SERVICE --running``: what a reload now would change, before it does."""
        return subprocess.run(
            [self.bin("cinder-reload"), "check", self.service, "--running", "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
        )

    def edit(self, text: str) -> None:
        self.config_file.write_text(text)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    def log_mark(self) -> int:
        return len(self.log())

    def log_tail(self, lines: int = 40) -> str:
        out = (
            (self.workdir / "stdout.log").read_text(errors="replace") if (self.workdir / "stdout.log").exists() else ""
        )
        return "\n".join((self.log() + out).splitlines()[-lines:])

    @contextmanager
    def stopped(self, pid: int) -> Iterator[None]:
        """SIGSTOP a process for the block: alive, but answering nothing."""
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def stop(self, timeout: float = 30.0) -> None:
        pids = self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        # Workers of a killed main process: never leave one behind.
        deadline = time.monotonic() + 10
        for pid in pids - {self.pid}:
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        self.output.close()
        self.notify.close()


def wait_state(service: CinderService, name: str, predicate: Any, timeout: float = 30.0) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        try:
            doc = service.state(name)
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return doc if predicate(doc) else None

    result: dict[str, Any] = wait_until(probe, timeout, f"state of {name}")
    return result
