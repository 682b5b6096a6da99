"""cinder-api, cinder-scheduler and cinder-volume of one stack, as processes.

Two ways to run each service:

* ``plain``: cinder's own console script, as a plain child process (today's
  cinder: SIGHUP is oslo.service's mutate, nothing waits for it);
* ``reload``: ``cinder-reload run SERVICE -- --config-file ...`` from the
  cinder venv (issue 5), with a state directory; a reload is
  ``cinder-reload signal SERVICE --pid PID --wait``.

Under the systemd user manager the same commands become ``ExecStart=`` of the
rendered units (tests/stack/units.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import wait_until

from .api import CinderAPI
from .cinderenv import CinderVenv, StackConfig, service_env, stack_deps
from .infra import Backing, free_port

#: cinder's RPC API from outside the services (create a volume on a backend).
RPCCLIENT = Path(__file__).resolve().parents[1] / "cinder" / "rpcclient.py"

__all__ = ["SERVICES", "Stack", "children_of", "wait_for"]

SERVICES = ("cinder-api", "cinder-scheduler", "cinder-volume")
CINDER_RELOAD = str(Path(sys.executable).parent / "cinder-reload")


def wait_for(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """helpers.wait_until, polling less often: the stack's probes ask the REST API."""
    return wait_until(probe, timeout, what, interval)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (cinder-volume's per-backend workers)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


@dataclass
class Stack:
    """One Cinder stack on a run's own database and vhost."""

    workdir: Path
    venv: CinderVenv
    backing: Backing
    backends: Sequence[str] = ("fake1", "fake2")
    mode: str = "plain"  # plain | reload
    slow_op_seconds: float = 0.3
    api_port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)  # backend -> volume type name
    #: NOTIFY_SOCKET per service (plain processes): a test's own sd_notify listener.
    notify: dict[str, str] = field(default_factory=dict)
    #: Backends that must create a volume before the stack counts as serving (default: all).
    probe: Sequence[str] | None = None
    #: The services it runs (cinder-backup on top, for the backup tests).
    services: Sequence[str] = SERVICES
    #: More configuration: see StackConfig.
    default_lines: Sequence[str] = ()
    backend_lines: Mapping[str, Sequence[str]] = field(default_factory=dict)
    extra_sections: str = ""

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.deps = stack_deps(self.venv)
        self.config = StackConfig(
            workdir=self.workdir,
            database_url=self.backing.database_url,
            transport_url=self.backing.transport_url,
            api_port=self.api_port,
            api_paste=self.venv.api_paste,
            backends=tuple(self.backends),
            default_slow=self.slow_op_seconds,
            default_lines=tuple(self.default_lines),
            backend_lines=dict(self.backend_lines),
            extra_sections=self.extra_sections,
        )
        self.config.prepare()
        self.state_dir = self.workdir / "run"
        self.state_dir.mkdir(exist_ok=True)
        self.api = CinderAPI(self.api_port)

    # -- commands ------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        # cinder-reload is installed (editable) in the cinder venv itself.
        return service_env(self.venv, self.deps)

    def argv(self, service: str) -> list[str]:
        config = ["--config-file", str(self.config.path)]
        if self.mode == "reload":
            return [self.venv.bin("cinder-reload"), "run", service, "--state-dir", str(self.state_dir), "--", *config]
        return [self.venv.bin(service), *config]

    def rpc_create_volume(self, host_pool: str, size: int = 1, wait: float = 60.0) -> dict[str, Any]:
        """A volume created on ``host@backend#pool`` through cinder's RPC API
        (tests/cinder/rpcclient.py, with the services' environment: PyMySQL),
        as the row the run's database holds once it left ``creating``."""
        done = subprocess.run(
            [self.venv.bin("python"), str(RPCCLIENT), str(self.config.path)]
            + ["create", host_pool, str(size), "--wait", f"{wait:g}"],
            capture_output=True,
            text=True,
            timeout=wait + 60,
            env=self.env(),
        )
        assert done.returncode == 0, done.stderr[-2000:]
        volume: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        return volume

    def db_sync(self) -> None:
        out = subprocess.run(
            [self.venv.bin("cinder-manage"), "--config-file", str(self.config.path), "db", "sync"],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"cinder-manage db sync failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        self.db_sync()
        for service in self.services:
            self.start_service(service)
        self.wait_serving(timeout)

    def start_service(self, service: str) -> None:
        with open(self.workdir / f"{service}.out", "ab") as out:
            self.procs[service] = subprocess.Popen(
                self.argv(service),
                env=dict(self.env(), **({"NOTIFY_SOCKET": self.notify[service]} if service in self.notify else {})),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_serving(self, timeout: float = 120.0) -> None:
        """Until the API answers, every service reports up and each backend
        has really created a volume (so the scheduler has its capabilities)."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(1.0, deadline - time.monotonic())

        self._check_alive()
        wait_for(lambda: self._check_alive() or self.api.answering(), left(), "cinder-api to answer")
        wanted = {"cinder-scheduler"} | {f"cinder-volume@{b}" for b in self.backends}
        wanted |= {s for s in self.services if s == "cinder-backup"}

        def services_up() -> bool:
            self._check_alive()
            up = set()
            for svc in self.api.services():
                if svc["state"] == "up" and svc["status"] == "enabled":
                    binary = svc["binary"]
                    up.add(binary if binary != "cinder-volume" else f"cinder-volume@{svc['host'].split('@', 1)[1]}")
            return wanted <= up

        wait_for(services_up, left(), f"services {sorted(wanted)} up")
        for backend in self.backends:
            if backend not in self.types:
                name = f"type-{backend}"
                self.api.create_type(name, backend)
                self.types[backend] = name
        # The scheduler learns each backend's capabilities from its periodic
        # report: create one volume per backend until one lands.
        for backend in self.backends if self.probe is None else self.probe:
            wait_for(lambda b=backend: self._probe(b), left(), f"a volume on {backend}", interval=0.5)

    def _probe(self, backend: str) -> bool:
        vid = self.api.create_volume(f"probe-{backend}", 1, self.types[backend])
        # cinder-scheduler holds requests for up to periodic_interval (60 s)
        # after its start while it waits for the backends' capabilities; when
        # both fanouts crossed at start, the next periodic report is what
        # ends that wait (seen: a probe scheduled at 60.9 s).
        vol = wait_for(
            lambda: (v := self.api.volume(vid)) and v["status"] != "creating" and v, 150, f"probe volume on {backend}"
        )
        ok = vol["status"] == "available"
        self.api.delete_volume(vid)
        wait_for(
            lambda: self.api.volume(vid) is None or self.api.volume(vid)["status"] == "error_deleting",
            60,
            f"probe volume on {backend} deleted",
        )
        return ok

    def _check_alive(self) -> bool:
        for service, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{service} exited {proc.returncode}:\n{self.log_tail(service)}")
        return False

    def pids(self) -> dict[str, int]:
        """Every process of the stack: main PIDs and cinder-volume's workers."""
        found: dict[str, int] = {}
        for service, proc in self.procs.items():
            found[service] = proc.pid
            for index, child in enumerate(children_of(proc.pid)):
                found[f"{service}/child{index}"] = child
        return found

    def reload(self, service: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """One reload of ``service``; synchronous in ``reload`` mode."""
        pid = self.procs[service].pid
        if self.mode == "plain":
            os.kill(pid, signal.SIGHUP)
            return subprocess.CompletedProcess(["kill", "-HUP", str(pid)], 0, "", "")
        return subprocess.run(
            [
                CINDER_RELOAD,
                "signal",
                service,
                "--pid",
                str(pid),
                "--wait",
                "--timeout",
                str(timeout),
                "--state-dir",
                str(self.state_dir),
            ],
            capture_output=True,
            text=True,
            timeout=timeout + 30,
            check=False,
        )

    def state_files(self) -> dict[str, Path]:
        return {p.name.removesuffix(".reload.json"): p for p in sorted(self.state_dir.glob("*.reload.json"))}

    def log_tail(self, service: str, chars: int = 3000) -> str:
        text = ""
        for path in (self.config.log_dir / f"{service}.log", self.workdir / f"{service}.out"):
            if path.exists():
                text += f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}\n"
        return text

    def stop(self, timeout: float = 30.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            # cinder-volume's workers are in the service's session: none may outlive it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_stack(workdir: Path, venv: CinderVenv, backing: Backing, **kwargs: Any) -> Iterator[Stack]:
    stack = Stack(workdir, venv, backing, **kwargs)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
