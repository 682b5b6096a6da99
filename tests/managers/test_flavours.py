"""Every unit flavour `cinder-reload render` writes, on every systemd here: 252, 257, 262.

The flavours (``render --systemd-version N``):
* ``< 253`` (N < 253, the committed default): ``Type=notify`` + synchronous ``ExecReload=``;
* ``253-258``: ``Type=notify-reload`` alone;
* ``>= 259``: ``Type=notify-reload`` + the synchronous ``ExecReload=``.

Each is run with the reference daemon (a 1 s re-initialisation) under each
manager, and what an operator meets is recorded: whether ``systemctl reload``
of a good change exits 0, how many reload cycles it caused (the daemon's
generation), whether the unit showed ``reloading`` meanwhile, and whether
``systemctl reload`` of a broken file fails.  The table below *is*
doc/source/admin/units.rst's flavour table; a change in any manager's behaviour fails here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from harness.commands import CommandResult
from harness.managers import UserManager
from harness.refservice import SystemdRefService, default_config

pytestmark = pytest.mark.systemd

REINIT = 1.0


@dataclass(frozen=True)
class Seen:
    good_reload_ok: bool
    cycles_per_reload: int  # 0: no reload happened at all
    reloading_shown: bool
    broken_reload_fails: bool


FLAVOURS = {"lt253": 252, "notify-reload": 257, "ge259": 262}
MANAGERS = {"252": "systemd252", "257": "systemd257", "262": "systemd262"}

EXPECTED: dict[tuple[str, str], Seen] = {
    # The < 253 flavour does the same everywhere: the committed default.
    ("lt253", "252"): Seen(True, 1, True, True),
    ("lt253", "257"): Seen(True, 1, True, True),
    ("lt253", "262"): Seen(True, 1, True, True),
    # 252 does not know notify-reload: the unit runs as Type=simple with no
    # reload at all ("Job type reload is not applicable").
    ("notify-reload", "252"): Seen(False, 0, False, True),
    # Type=notify-reload alone: a refused reload still ends with READY=1, exit 0.
    ("notify-reload", "257"): Seen(True, 1, True, False),
    ("notify-reload", "262"): Seen(True, 1, True, False),
    # >= 259 on 252: Type=simple (no readiness) but ExecReload= still reloads honestly.
    ("ge259", "252"): Seen(True, 1, True, True),
    # >= 259 on 257: the manager signals *first*, then ExecReload= signals
    # again: two cycles per reload (honest exit status, double work).
    ("ge259", "257"): Seen(True, 2, True, True),
    # >= 259 on 262: one cycle, reloading shown, a broken file fails the command.
    ("ge259", "262"): Seen(True, 1, True, True),
}


def _reload_watching(service: SystemdRefService) -> tuple[CommandResult, bool]:
    """``systemctl reload`` while another thread polls SubState for reload*."""
    seen = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if service.status().get("SubState", "").startswith("reload"):
                seen.set()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = service.reload(timeout=60)
    finally:
        done.set()
        watcher.join(10)
    return result, seen.is_set()


@pytest.mark.parametrize("manager_name", list(MANAGERS), ids=[f"systemd-{m}" for m in MANAGERS])
@pytest.mark.parametrize("flavour", list(FLAVOURS))
def test_flavour_on_manager(
    flavour: str, manager_name: str, harness_workdir: Path, request: pytest.FixtureRequest
) -> None:
    manager: UserManager = request.getfixturevalue(MANAGERS[manager_name])
    assert manager.version >= int(manager_name)  # sid's systemd may move past 262
    service = SystemdRefService(manager, harness_workdir, flavour_version=FLAVOURS[flavour])
    service.write_config(default_config(reinit_seconds=REINIT))
    assert service.start().ok
    service.wait_answering()
    pid = service.main_pid()
    before = service.generation()

    service.write_config(default_config(label1="uno", reinit_seconds=REINIT))
    good, shown = _reload_watching(service)
    # A reload the manager started may still be finishing its follow-up cycle.
    status = service.wait_status(lambda s: s["SubState"] == "running", "the cycles to end", timeout=30)
    cycles = service.generation() - before

    service.write_config(default_config(label1="dos", reinit_seconds=REINIT) + "[backend2\n")
    broken = service.reload(timeout=60)
    after = service.wait_status(lambda s: s["SubState"] == "running", "the cycles to end", timeout=30)

    seen = Seen(good.ok, cycles, shown, not broken.ok)
    why = f"\ngood: {good}\nbroken: {broken}\nstatus: {after}\n{service.unit_text}"
    assert seen == EXPECTED[(flavour, manager_name)], why
    # Whatever the flavour, the process was never replaced and kept serving.
    assert status["MainPID"] == after["MainPID"] == str(pid), why
    assert service.ask()["label"] == ("uno" if cycles else "one"), why
