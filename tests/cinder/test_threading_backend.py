"""cinder on oslo.service's threading backend (OS_CINDER_DISABLE_EVENTLET_PATCHING=true): cotyledon.

cinder-volume's backends are replaced one by one there as on eventlet
(test_volume_process.py and test_connections_roll.py run on both backends);
this file holds what only cotyledon needs proving: its workers are the main
process's own children, forked again from it when a backend changes, and
each reload is reported with RELOADING=1 / READY=1.  cinder-scheduler's workers are still
restarted by cotyledon, after the file was validated.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cinderproc import THREADING, CinderService, children_of

pytestmark = [pytest.mark.cinder, pytest.mark.process]


def test_cotyledon_workers_are_the_main_process_children_and_replaced_per_backend(
    start_cinder: Callable[..., CinderService],
) -> None:
    volume = start_cinder(env=THREADING)
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    # cotyledon's own children, each backend's worker reported in READY=1's status.
    assert children_of(volume.pid) == {fake1, fake2}
    ready = volume.notify.messages[volume.notify.wait_for(lambda m: m.get("READY") == "1")]
    assert f"fake1 (pid {fake1})" in ready["STATUS"] and f"fake2 (pid {fake2})" in ready["STATUS"]

    # A broken file: validated in the main process, nothing signalled, both reported.
    good = volume.config_file.read_text()
    before = len(volume.notify.messages)
    volume.edit(good + "[fake2\n")
    done = volume.reload()
    assert done.returncode == 1 and "syntax error" in done.stderr
    assert volume.pids() == {volume.pid, fake1, fake2}
    reloading = volume.notify.wait_for(lambda m: m.get("RELOADING") == "1", start=before)
    assert volume.notify.messages[reloading]["MONOTONIC_USEC"].isdigit()
    failed = volume.notify.wait_for(lambda m: m.get("READY") == "1", start=reloading)
    assert volume.notify.messages[failed]["STATUS"].startswith("Reload failed: invalid configuration")

    # One backend changed: its worker alone is replaced, by a child of the same main process.
    before = len(volume.notify.messages)
    volume.edit(good.replace("volume_backend_name = fake2", "volume_backend_name = fake2-gold"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr + volume.log_tail()
    new2 = volume.worker_pid("fake2")
    assert new2 != fake2 and children_of(volume.pid) == {fake1, new2}
    ready_at = volume.notify.wait_for(lambda m: m.get("READY") == "1", start=before)
    assert volume.notify.messages[ready_at]["STATUS"].startswith("Reload #")
    assert "re-initialised fake2" in volume.notify.messages[ready_at]["STATUS"]


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
