"""cinder-scheduler 29 under ``cinder-reload run``: one process (oslo.service ServiceLauncher)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from cinderproc import CinderService, scheduler_config
from helpers import wait_until

pytestmark = [pytest.mark.cinder, pytest.mark.process]

Start = Callable[..., CinderService]


def test_scheduler_reload_debug_filters_broken_and_restart_only(start_cinder: Start) -> None:
    scheduler = start_cinder("cinder-scheduler", scheduler_config)
    pid = scheduler.pid
    assert scheduler.pids() == {pid}
    assert scheduler.notify.count("READY") == 1
    good = scheduler.config_file.read_text()

    # debug: live.
    mark = scheduler.log_mark()
    scheduler.edit(good.replace("debug = false", "debug = true"))
    done = scheduler.reload()
    assert done.returncode == 0 and "1 changed: 1 live" in done.stdout, done.stdout + done.stderr
    # The end event follows READY=1 and the state file the reload command waits for.
    ended = rf" {pid} DEBUG cinder_reload\.events .*reload\.end generation=1"
    wait_until(lambda: re.search(ended, scheduler.log_since(mark)), 30, "the reload.end event, logged at DEBUG")

    # Filters and max attempts: re-initialised, not pending a restart.  That
    # the rebuilt filters decide where the next volume goes is proven with a
    # whole stack: tests/stack/test_scheduler_backup.py.
    filtered = good.replace(
        "debug = false",
        "debug = true\nscheduler_default_filters = AvailabilityZoneFilter,CapacityFilter\nscheduler_max_attempts = 5",
    )
    scheduler.edit(filtered)
    done = scheduler.reload()
    assert done.returncode == 0 and "re-initialised DEFAULT" in done.stdout, done.stdout + done.stderr
    assert {c["option"] for c in scheduler.state()["changed"]} == {
        "scheduler_default_filters",
        "scheduler_max_attempts",
    }

    # An unknown filter: the re-initialisation fails, the old caches stay.
    scheduler.edit(filtered.replace("CapacityFilter", "NoSuchFilter"))
    done = scheduler.reload()
    assert done.returncode == 1 and "NoSuchFilter could not be found" in done.stderr
    assert "[DEFAULT] keeps its old configuration" in done.stderr
    scheduler.edit(filtered)
    done = scheduler.reload()
    assert done.returncode == 0 and "no changes" in done.stdout, done.stdout + done.stderr

    # A broken file: nothing happens, the process stays.
    scheduler.edit(filtered + "[oops\n")
    done = scheduler.reload()
    assert done.returncode == 1 and "syntax error" in done.stderr

    # Anything else in [DEFAULT] is restart-only.
    scheduler.edit(filtered.replace("debug = true", "debug = true\nperiodic_interval = 30"))
    done = scheduler.reload()
    assert done.returncode == 0 and "pending restart: DEFAULT.periodic_interval" in done.stdout
    assert scheduler.pids() == {pid}
