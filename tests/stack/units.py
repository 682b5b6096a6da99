"""The stack's services as the rendered units under a real systemd user manager.

Each service runs from the unit ``cinder-reload render`` writes (issue 3:
``cinder_reload.render``), rendered for this run with the cinder venv's
``cinder-reload``, the run's ``cinder.conf`` and no ``User=``/``Group=`` (a
user manager cannot switch users: real-components.md), plus one line the
product's units do not have: ``Environment=`` with ``PYTHONPATH`` for the
slow test driver and PyMySQL; each unit is installed under a name of the
run's own (see ``UnitStack.unit``).  ``ExecStart=`` is ``cinder-reload run SERVICE
-- --config-file ...`` (issue 5); ``systemctl reload`` is the operator's
reload.  The state files are where the units put them,
``$RUNTIME_DIRECTORY`` = ``$XDG_RUNTIME_DIR/cinder`` of the user manager.

The user manager runs in a private mount namespace over the host's file
system and network (tests/harness), so the units see the same paths, and
MariaDB and RabbitMQ on loopback.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.commands import CommandResult
from harness.managers import UserManager

from cinder_reload.render import RenderSpec, render_unit

from .stack import Stack, children_of

__all__ = ["UnitStack", "stack_unit"]


def stack_unit(
    service: str, *, systemd_version: int, cinder_reload: str, python: str | None, config: Path, env: dict[str, str]
) -> str:
    """The rendered unit of ``service`` for this run."""
    spec = RenderSpec(
        systemd_version=systemd_version,
        cinder_reload=cinder_reload,
        python=python,
        user=None,
        group=None,
        config_files=(str(config),),
        # The api/scheduler units' sandboxing (ProtectSystem=strict,
        # PrivateTmp=, ProtectHome=, ...) cannot apply here: the run's files
        # are under /tmp, the venv's interpreter under /root (pyenv), and the
        # units exit 226/NAMESPACE under this user manager.  tests/units
        # covers the hardened units; this test is about reloads under load.
        hardening=False,
    )
    (service_spec,) = [s for s in spec.services if s.name == service]
    environment = "Environment=" + " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    lines = []
    for line in render_unit(spec, service_spec).splitlines():
        lines.append(line)
        if line == "[Service]":
            lines.append("# stack test only: the slow test driver and PyMySQL")
            lines.append(environment)
    return "\n".join(lines) + "\n"


@dataclass
class UnitStack(Stack):
    """A Stack whose services are units of ``manager`` (mode is always ``reload``)."""

    manager: UserManager | None = None
    #: The unit flavour: < 253 Type=notify + synchronous ExecReload=, >= 253 Type=notify-reload.
    systemd_version: int = 252
    #: More Environment= of the units (OS_CINDER_DISABLE_EVENTLET_PATCHING: oslo.service's threading backend).
    unit_env: dict[str, str] = field(default_factory=dict)
    last: dict[str, CommandResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mode = "reload"
        super().__post_init__()
        assert self.manager is not None
        # RuntimeDirectory=cinder of the rendered units, as the host sees it.
        self.state_dir = self.manager.host_path(f"{self.manager.runtime_dir}/cinder")

    def unit(self, service: str) -> str:
        # A name of this run's own: every systemd --user started here (every
        # test's, every session's) puts its units' cgroups at the same place,
        # /app.slice/NAME.service under the cgroup root, so two managers'
        # cinder-volume.service share one cgroup and stopping either SIGKILLs
        # the other's processes (KillMode=mixed).  Seen here: cinder-volume and
        # cinder-scheduler killed mid-test while another test stopped its own.
        return f"{service}-{self.backing.database}.service"

    def start_service(self, service: str) -> None:
        assert self.manager is not None
        env = self.env()
        keep = {k: env[k] for k in ("PYTHONPATH", "PYTHONUNBUFFERED", "PATH")} | self.unit_env
        text = stack_unit(
            service,
            systemd_version=self.systemd_version,
            cinder_reload=self.venv.bin("cinder-reload"),
            # As `cinder-reload render --python` writes units for a virtualenv:
            # ExecReload= runs the venv's interpreter with -S on entry.py.
            python=self.venv.python,
            config=self.config.path,
            env=keep,
        )
        (self.workdir / self.unit(service)).write_text(text)  # for the record
        self.manager.install_unit(self.unit(service), text)
        # --no-block: the API answers only once all three run; wait_serving() waits.
        self.manager.systemctl("start", "--no-block", self.unit(service)).check()

    def wait_started(self, timeout: float = 180.0) -> None:
        assert self.manager is not None
        for service in self.services:
            self.manager.wait_for(self.unit(service), timeout, ActiveState="active", SubState="running")

    def start(self, timeout: float = 180.0) -> None:
        self.db_sync()
        for service in self.services:
            self.start_service(service)
        self.wait_serving(timeout)
        self.wait_started(timeout)

    def main_pid(self, service: str) -> int:
        assert self.manager is not None
        return int(self.manager.show(self.unit(service), ("MainPID",))["MainPID"])

    def _check_alive(self) -> bool:
        assert self.manager is not None
        for service in self.services:
            props = self.manager.show(self.unit(service))
            if props.get("ActiveState") in ("failed", "inactive") and props.get("SubState") != "start-pre":
                raise RuntimeError(f"{service}: {props}\n{self.log_tail(service)}")
        return False

    def pids(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for service in self.services:
            pid = self.main_pid(service)
            found[service] = pid
            for index, child in enumerate(children_of(pid)):
                found[f"{service}/child{index}"] = child
        return found

    def reload(self, service: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        assert self.manager is not None
        result = self.manager.reload(self.unit(service), timeout=timeout + 30)
        self.last[service] = result
        # What the operator sees: the exit status, and the reason in the unit's
        # status (the ExecReload= command's own stderr goes to the journal).
        status = self.manager.show(self.unit(service), ("StatusText",)).get("StatusText", "")
        return subprocess.CompletedProcess(
            list(result.argv), result.returncode, result.stdout, result.stderr + f"StatusText={status}\n"
        )

    def restart(self, service: str, timeout: float = 180.0) -> CommandResult:
        assert self.manager is not None
        return self.manager.restart(self.unit(service), timeout=timeout)

    def status(self, service: str) -> dict[str, Any]:
        assert self.manager is not None
        return self.manager.show(self.unit(service))

    def stop(self, timeout: float = 60.0) -> None:
        if self.manager is None or self.manager.closed:
            return
        for service in reversed(self.services):
            self.manager.systemctl("stop", "--no-block", self.unit(service))
        for service in self.services:
            try:
                self.manager.wait_for(self.unit(service), timeout, ActiveState="inactive")
            except AssertionError:
                self.manager.systemctl("kill", "--signal=SIGKILL", self.unit(service))
