"""Real collaborators for tests: a bound AF_UNIX notify socket and a runner
for the reference daemon as a real process.  No mocks: the daemon talks to a
socket exactly as it would to systemd."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
REFDAEMON = TESTS / "refdaemon.py"
# The installed console script, exactly what ExecReload= and init scripts run.
CINDER_RELOAD = [str(Path(sys.executable).parent / "cinder-reload")]


def signal_wait(
    command: list[str], service: str, pid: int, state_dir: Path, timeout: float, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`cinder-reload signal SERVICE --pid PID --wait`: what ExecReload= and init scripts run."""
    return subprocess.run(
        [
            *command,
            "signal",
            service,
            "--pid",
            str(pid),
            "--wait",
            "--timeout",
            str(timeout),
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )


def start_sighup_catcher(marker: Path, seconds: float = 120) -> subprocess.Popen[str]:
    """A process that is not the service but catches SIGHUP (it touches ``marker``), ready when returned."""
    target = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import pathlib, signal, sys, time\n"
            f"signal.signal(signal.SIGHUP, lambda *a: pathlib.Path({str(marker)!r}).touch())\n"
            "print('ready', flush=True)\n"
            f"time.sleep({seconds})\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert target.stdout is not None and target.stdout.readline().strip() == "ready"
    return target


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class NotifyListener:
    """A real sd_notify receiver: an AF_UNIX datagram socket, like systemd's."""

    def __init__(self, path: str) -> None:
        self.address = path
        self.messages: list[dict[str, str]] = []
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind_to = "\0" + path[1:] if path.startswith("@") else path
        self._sock.bind(bind_to)
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            text = data.decode("latin-1")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            with self._cond:
                self.raw.append(text)
                self.messages.append(fields)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, str]], bool], timeout: float = 10.0, start: int = 0) -> int:
        """Index of the first message from ``start`` matching ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for index in range(start, len(self.messages)):
                    if predicate(self.messages[index]):
                        return index
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching sd_notify message within {timeout}s; got {self.raw!r}")
                self._cond.wait(remaining)

    def settled(self, timeout: float = 10.0) -> dict[str, str]:
        """The READY=1 that ends the cycle just waited for.

        ``signal --wait`` returns once the state file is in place; the
        engine's READY=1 follows it by microseconds, but this reader's thread
        may take longer to receive it: wait until the newest message is one.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.messages and self.messages[-1].get("READY") == "1"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no READY=1 after the last reload within {timeout}s; got {self.raw!r}")
                self._cond.wait(remaining)
            return self.messages[-1]

    def count(self, key: str) -> int:
        with self._cond:
            return sum(1 for m in self.messages if key in m)

    def close(self) -> None:
        self._sock.close()
        if not self.address.startswith("@"):
            Path(self.address).unlink(missing_ok=True)


class RefDaemon:
    """The reference daemon as a real process with a real NOTIFY_SOCKET."""

    def __init__(
        self,
        workdir: Path,
        config: str,
        *,
        eventlet: bool = False,
        startup_seconds: float = 0.0,
        prefix: list[str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.config_file = workdir / "refdaemon.conf"
        self.config_file.write_text(config)
        self.socket_path = workdir / "refdaemon.sock"
        self.pidfile = workdir / "refdaemon.pid"
        self.state_dir = workdir / "state"
        self.log_file = workdir / "refdaemon.log"
        self.notify = NotifyListener(str(workdir / "notify.sock"))
        args = [
            *(prefix or []),
            sys.executable,
            str(REFDAEMON),
            "--config-file",
            str(self.config_file),
            "--socket",
            str(self.socket_path),
            "--pidfile",
            str(self.pidfile),
            "--state-dir",
            str(self.state_dir),
            "--log-file",
            str(self.log_file),
        ]
        if eventlet:
            args.append("--eventlet")
        if startup_seconds:
            args += ["--startup-seconds", str(startup_seconds)]
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.address, PYTHONUNBUFFERED="1")
        env.pop("RUNTIME_DIRECTORY", None)
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=workdir)

    def __enter__(self) -> RefDaemon:
        self.wait_ready()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 15.0) -> None:
        try:
            self.notify.wait_for(lambda m: m.get("READY") == "1", timeout)
        except AssertionError:
            raise AssertionError(f"daemon never became ready; output:\n{self.output()}") from None

    def ask(self, backend: str, timeout: float = 30.0) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(timeout)
            client.connect(str(self.socket_path))
            client.sendall(f"{backend}\n".encode())
            return client.makefile("r").readline().strip()

    def in_flight(self, backend: str) -> int:
        counts = dict(item.split("=") for item in self.ask("stats").split())
        return int(counts[backend])

    def hold(self, backend: str, replies: list[str]) -> threading.Thread:
        """Start a request in the background; return once the daemon counts it in flight."""
        before = self.in_flight(backend)
        thread = threading.Thread(target=lambda: replies.append(self.ask(backend)), daemon=True)
        thread.start()
        wait_until(lambda: self.in_flight(backend) > before, 5, f"a request in flight on {backend}")
        return thread

    def state(self) -> dict[str, Any]:
        return json.loads((self.state_dir / "refdaemon.reload.json").read_text())

    def reload(self, timeout: float = 30.0, *extra: str) -> subprocess.CompletedProcess[str]:
        """`cinder-reload signal refdaemon --wait`, as ExecReload= runs it."""
        return signal_wait(CINDER_RELOAD, "refdaemon", self.pid, self.state_dir, timeout, *extra)

    def edit(self, text: str) -> None:
        self.config_file.write_text(text)

    def output(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self.notify.close()
        return self.proc.returncode


BASE_CONFIG = """\
[DEFAULT]
greeting = hello
op_seconds = 0
reinit_seconds = 0
drain_timeout = 10

[backend1]
label = one
password = s3cr3t-one

[backend2]
label = two
password = s3cr3t-two
"""
