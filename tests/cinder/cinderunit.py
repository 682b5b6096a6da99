"""A rendered cinder unit under a real systemd 252 user manager, and its fixture.

The unit is what ``cinder-reload render`` writes (issue 3), rendered for this
run: the cached cinder venv's ``cinder-reload``, the test's cinder.conf, no
``User=``/``Group=`` (a user manager cannot switch users) and no sandboxing
(the run's files are under /tmp; tests/units covers the hardened units).
``ExecStart=`` is ``cinder-reload run SERVICE``; every reload is the
operator's ``systemctl reload``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cinderproc import children_of
from harness.commands import CommandResult
from harness.managers import UserManager

from cinder_reload.render import RenderSpec, render_unit

__all__ = ["Unit", "cinder_unit"]


class Unit:
    """One rendered cinder unit running under ``manager``."""

    def __init__(
        self, manager: UserManager, venv: Path, workdir: Path, service: str, config: str, extra: str = ""
    ) -> None:
        self.manager = manager
        self.service = service
        self.unit = f"{service}.service"
        self.workdir = workdir
        self.config_file = workdir / "cinder.conf"
        self.config_file.write_text(config)
        spec = RenderSpec(
            systemd_version=252,
            cinder_reload=str(venv / "bin" / "cinder-reload"),
            user=None,
            group=None,
            config_files=(str(self.config_file),),
            hardening=False,
        )
        (service_spec,) = [s for s in spec.services if s.name == service]
        # ``extra``: more unit lines a test needs (systemd merges a repeated [Service]).
        text = render_unit(spec, service_spec) + extra
        (workdir / self.unit).write_text(text)  # for the record
        manager.install_unit(self.unit, text)
        self.state_dir = manager.host_path(f"{manager.runtime_dir}/cinder")

    def start(self) -> CommandResult:
        return self.manager.start(self.unit, timeout=180)

    def show(self) -> dict[str, str]:
        return self.manager.show(self.unit)

    def pids(self) -> set[int]:
        main = int(self.show()["MainPID"])
        return {main} | children_of(main)

    def reload(self) -> CommandResult:
        result = self.manager.reload(self.unit, timeout=150)
        if not result.ok:
            # What the operator reads next: the unit's status, ExecReload='s reason included.
            print(self.manager.systemctl("status", "--lines=0", self.unit).stdout)
        return result

    def state(self, name: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / f"{name or self.service}.reload.json").read_text())
        return data

    def log(self) -> str:
        path = self.workdir / f"{self.service}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def edit(self, text: str) -> None:
        self.config_file.write_text(text)


@pytest.fixture
def cinder_unit(systemd252: UserManager, cinder_venv: Path, cinder_db: Path, tmp_path: Path) -> Iterator[Any]:
    units: list[Unit] = []

    def deploy(service: str, config: Any, extra: str = "") -> Unit:
        workdir = tmp_path / service
        workdir.mkdir()
        for sub in ("state", "lock"):
            (workdir / sub).mkdir()
        shutil.copy(cinder_db, workdir / "cinder.sqlite")
        unit = Unit(systemd252, cinder_venv, workdir, service, config(workdir), extra)
        units.append(unit)
        started = unit.start()
        if not started.ok:
            status = systemd252.systemctl("status", "--lines=0", unit.unit).stdout
            raise AssertionError(f"{started}\n{status}\n{unit.log()[-3000:]}")
        return unit

    yield deploy
    for unit in units:
        if not systemd252.closed:
            systemd252.stop(unit.unit, timeout=120)
        tail = unit.log()[-3000:]
        print(f"----- {unit.service}.log -----\n{tail}")
