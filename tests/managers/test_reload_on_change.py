"""The optional reload-on-change ``.path`` units under a real manager (issue 11).

``cinder-volume-reload.path`` watches ``/etc/cinder/cinder.conf`` and starts
``cinder-volume-reload.service``, which runs ``systemctl reload`` and so fails
when the reload failed.  Here the units are rendered for the reference
daemon's configuration file (harness/units.py: ``--user`` is the only
change) and run by systemd 252 and 257 user managers, with the committed
unit flavour (``Type=notify`` + the synchronous ``ExecReload=``), the one whose
``systemctl reload`` fails when the reload failed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.managers import UserManager
from harness.refservice import SystemdRefService, default_config
from harness.units import refdaemon_path_units
from helpers import wait_until


@pytest.fixture(
    params=[
        pytest.param("systemd252", marks=pytest.mark.systemd, id="systemd-252"),
        pytest.param("systemd257", marks=pytest.mark.systemd, id="systemd-257"),
    ]
)
def manager(request: pytest.FixtureRequest) -> UserManager:
    found: UserManager = request.getfixturevalue(request.param)
    return found


def test_an_edit_reloads_once_and_a_broken_edit_fails_the_reload_unit(
    manager: UserManager, harness_workdir: Path
) -> None:
    service = SystemdRefService(manager, harness_workdir, flavour_version=252)
    assert service.start().ok
    service.wait_answering()
    units = refdaemon_path_units(service.paths)
    for name, text in units.items():
        manager.install_unit(name, text, reload=False)
    manager.daemon_reload()
    path_unit = next(name for name in units if name.endswith(".path"))
    reload_unit = path_unit.removesuffix(".path") + ".service"
    assert manager.start(path_unit).ok
    pid, generation = service.main_pid(), service.generation()

    def settled(expected_generation: int) -> dict[str, str] | None:
        props = manager.show(reload_unit, ("ActiveState", "Result"))
        if service.generation() >= expected_generation and props["ActiveState"] in ("inactive", "failed"):
            return props
        return None

    # Saved as editors and configuration tools save: a new file renamed over it.
    service.write_config(default_config(label1="uno"))
    props = wait_until(lambda: settled(generation + 1), 30, "the reload started by the .path unit")
    assert props == {"ActiveState": "inactive", "Result": "success"}, props
    assert service.ask("backend1")["label"] == "uno" and service.main_pid() == pid

    # A broken edit: the service keeps serving its old configuration and the
    # reload unit is failed, so `systemctl --failed` shows it.
    service.write_config("[DEFAULT]\ngreeting = hi\n[backend1\nlabel = broken\n")
    props = wait_until(lambda: settled(generation + 2), 30, "the failed reload")
    assert props == {"ActiveState": "failed", "Result": "exit-code"}, props
    status = service.status()
    assert status["ActiveState"] == "active" and service.main_pid() == pid
    assert status["StatusText"].startswith("Reload failed: invalid configuration"), status
    assert service.ask("backend1")["label"] == "uno"

    # The watch goes on after a failure; each save is exactly one reload (a
    # save that fired twice would have made it generation + 4 by now).
    service.write_config(default_config(label1="tres"))
    props = wait_until(lambda: settled(generation + 3), 30, "the reload after the fix")
    assert props == {"ActiveState": "inactive", "Result": "success"}, props
    assert service.ask("backend1")["label"] == "tres" and service.main_pid() == pid
    assert service.generation() == generation + 3
    assert manager.show(path_unit, ("ActiveState",))["ActiveState"] == "active"
