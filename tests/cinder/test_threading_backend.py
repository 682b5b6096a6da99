"""cinder-volume on oslo.service's threading backend (OS_CINDER_DISABLE_EVENTLET_PATCHING=true).

There cotyledon restarts the workers on SIGHUP; under ``cinder-reload run``
the file is validated first, a broken one changes nothing, and RELOADING=1 /
READY=1 report each reload.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cinderproc import CinderService, children_of
from helpers import wait_until

pytestmark = [pytest.mark.cinder, pytest.mark.process]

THREADING = {"OS_CINDER_DISABLE_EVENTLET_PATCHING": "true"}


def test_threading_backend_validates_first_and_reports(start_cinder: Callable[..., CinderService]) -> None:
    volume = start_cinder(env=THREADING)
    workers = wait_until(
        lambda: children_of(volume.pid) if len(children_of(volume.pid)) == 2 else None, 60, "2 workers"
    )
    assert "threading backend" in volume.notify.messages[-1]["STATUS"]

    good = volume.config_file.read_text()
    before = len(volume.notify.messages)
    volume.edit(good + "[fake2\n")
    done = volume.reload()
    assert done.returncode == 1 and "syntax error" in done.stderr
    # Nothing was signalled: the same workers, the main process alive.
    assert children_of(volume.pid) == workers
    assert volume.notify.wait_for(lambda m: m.get("RELOADING") == "1", start=before) >= before
    ready = volume.notify.wait_for(lambda m: m.get("READY") == "1", start=before)
    assert volume.notify.messages[ready]["STATUS"].startswith("Reload failed: invalid configuration")

    volume.edit(good.replace("debug = false", "debug = true"))
    done = volume.reload()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 changed: 1 live" in done.stdout
    doc = volume.state()
    assert doc["workers"][0]["message"].startswith("restarted by cotyledon")
    # cotyledon restarted the workers on the validated file; the main process stayed.
    wait_until(lambda: len(children_of(volume.pid)) == 2 and not (children_of(volume.pid) & workers), 60, "new workers")


def test_threading_backend_scheduler(start_cinder: Callable[..., CinderService]) -> None:
    from cinderproc import scheduler_config

    scheduler = start_cinder("cinder-scheduler", scheduler_config, env=THREADING)
    good = scheduler.config_file.read_text()
    scheduler.edit(good + "[broken\n")
    done = scheduler.reload()
    assert done.returncode == 1 and "syntax error" in done.stderr
    scheduler.edit(good.replace("debug = false", "debug = true"))
    done = scheduler.reload()
    assert done.returncode == 0 and "1 changed: 1 live" in done.stdout, done.stdout + done.stderr
    assert scheduler.proc.poll() is None
