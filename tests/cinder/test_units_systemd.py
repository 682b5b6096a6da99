"""Issue 5's "Done when", through the rendered unit under a real systemd 252 user manager.

The unit is what ``cinder-reload render`` writes (issue 3), rendered for this
run: the cached cinder venv's ``cinder-reload``, the test's cinder.conf, no
``User=``/``Group=`` (a user manager cannot switch users) and no sandboxing
(the run's files are under /tmp; tests/units covers the hardened units).
``ExecStart=`` is ``cinder-reload run SERVICE``; every reload below is the
operator's ``systemctl reload``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cinderproc import FAKE_DRIVER, children_of, scheduler_config, volume_config
from harness.commands import CommandResult
from harness.managers import UserManager

from cinder_reload.render import RenderSpec, render_unit

pytestmark = [pytest.mark.cinder, pytest.mark.systemd]


class Unit:
    """One rendered cinder unit running under ``manager``."""

    def __init__(self, manager: UserManager, venv: Path, workdir: Path, service: str, config: str) -> None:
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
        text = render_unit(spec, service_spec)
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

    def deploy(service: str, config: Any) -> Unit:
        workdir = tmp_path / service
        workdir.mkdir()
        for sub in ("state", "lock"):
            (workdir / sub).mkdir()
        shutil.copy(cinder_db, workdir / "cinder.sqlite")
        unit = Unit(systemd252, cinder_venv, workdir, service, config(workdir))
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


def test_cinder_volume_unit(cinder_unit: Any) -> None:
    volume: Unit = cinder_unit("cinder-volume", volume_config)
    props = volume.show()
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert props["StatusText"].startswith("Serving: fake1 (pid")
    pids = volume.pids()
    assert len(pids) == 3
    good = volume.config_file.read_text()

    # debug: applied in every process, systemctl reload exits 0, same PIDs.
    text = good.replace("debug = false", "debug = true")
    volume.edit(text)
    done = volume.reload()
    assert done.ok, done
    assert volume.pids() == pids
    assert volume.show()["StatusText"].startswith("Reload #1 ok: 1 changed: 1 live; 2/2 workers ok")
    assert all(w["changed"][0]["option"] == "debug" for w in volume.state()["workers"])

    # One backend's driver option: that backend re-initialised, the other untouched.
    fake2_pid = volume.state("cinder-volume.fake2")["pid"]
    fake2_generation = volume.state("cinder-volume.fake2")["generation"]
    text = text.replace("volume_backend_name = fake1", "volume_backend_name = fake1-gold")
    volume.edit(text)
    done = volume.reload()
    assert done.ok, done
    assert volume.state()["reinitialized"] == ["fake1"]
    assert "backend fake1 now served by a new FakeLoggingVolumeDriver" in volume.log()
    assert "volume_backend_name=fake1-gold" in volume.log()
    fake2 = volume.state("cinder-volume.fake2")
    assert fake2["generation"] == fake2_generation + 1 and fake2["reinitialized"] == [] and fake2["changed"] == []
    assert not [line for line in volume.log().splitlines() if f" {fake2_pid} " in line and "now served" in line]
    assert volume.pids() == pids

    # Broken files: systemctl reload fails with the reason, nothing changes.
    for broken, reason in (
        (text + "[fake2\n", "syntax error"),
        (text.replace("debug = true", "debug = true\nreport_interval = soon"), "[DEFAULT] report_interval"),
        ("", "file is empty"),
        (text.split("[fake2]")[0], "[fake2]"),
    ):
        volume.edit(broken)
        done = volume.reload()
        props = volume.show()
        assert not done.ok, (reason, done)
        assert props["StatusText"].startswith("Reload failed: invalid configuration") and reason in props["StatusText"]
        assert props["ActiveState"] == "active" and props["SubState"] == "running", props
        assert volume.pids() == pids
        assert volume.state()["reinitialized"] == [] and volume.state()["workers"] == []

    # A driver that fails to initialise: the old one keeps serving fake1.
    volume.edit(text.replace(f"volume_driver = {FAKE_DRIVER}", "volume_driver = cinder.tests.fake_driver.Nope", 1))
    done = volume.reload()
    props = volume.show()
    assert not done.ok
    assert (
        "re-initialising [fake1] failed" in props["StatusText"] and "keeps its old configuration" in props["StatusText"]
    )
    assert props["ActiveState"] == "active" and volume.pids() == pids
    volume.edit(text)
    done = volume.reload()
    assert done.ok and "no changes" in volume.show()["StatusText"]

    # Restart-only options: reported pending restart.
    volume.edit(text.replace("transport_url = fake://", "transport_url = fake://other"))
    done = volume.reload()
    assert done.ok, done
    assert "pending restart: DEFAULT.transport_url" in volume.show()["StatusText"]
    assert [c["option"] for c in volume.state()["pending_restart"]] == ["transport_url"]
    assert volume.pids() == pids


def test_cinder_scheduler_unit(cinder_unit: Any) -> None:
    scheduler: Unit = cinder_unit("cinder-scheduler", scheduler_config)
    pids = scheduler.pids()
    assert len(pids) == 1
    good = scheduler.config_file.read_text()
    text = good.replace(
        "debug = false", "debug = true\nscheduler_default_filters = AvailabilityZoneFilter,CapacityFilter"
    )
    scheduler.edit(text)
    done = scheduler.reload()
    assert done.ok, done
    assert "re-initialised DEFAULT" in scheduler.show()["StatusText"]
    assert "scheduler caches rebuilt" in scheduler.log()
    scheduler.edit(text + "[broken\n")
    done = scheduler.reload()
    props = scheduler.show()
    assert not done.ok and "syntax error" in props["StatusText"] and props["ActiveState"] == "active"
    scheduler.edit(text.replace("CapacityFilter", "NoSuchFilter"))
    done = scheduler.reload()
    assert not done.ok and "NoSuchFilter" in scheduler.show()["StatusText"]
    scheduler.edit(text.replace("debug = true", "debug = true\nperiodic_interval = 30"))
    done = scheduler.reload()
    assert done.ok and "pending restart: DEFAULT.periodic_interval" in scheduler.show()["StatusText"]
    assert scheduler.pids() == pids
