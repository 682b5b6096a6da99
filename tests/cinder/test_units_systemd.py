"""Issue 5's "Done when", through the rendered unit under a real systemd 252 user manager.

The unit is what ``cinder-reload render`` writes (issue 3), rendered for this
run: the cached cinder venv's ``cinder-reload``, the test's cinder.conf, no
``User=``/``Group=`` (a user manager cannot switch users) and no sandboxing
(the run's files are under /tmp; tests/units covers the hardened units).
``ExecStart=`` is ``cinder-reload run SERVICE``; every reload below is the
operator's ``systemctl reload``.
"""

from __future__ import annotations

from typing import Any

import pytest
from cinderproc import FAKE_DRIVER, scheduler_config, volume_config
from cinderunit import Unit

pytestmark = [pytest.mark.cinder, pytest.mark.systemd]


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
    assert {w["worker"]: w["result"] for w in volume.state()["workers"]} == {"fake1": "ok", "fake2": "ok"}

    # One backend's driver option: that backend's worker replaced, the other untouched.
    workers = {w["worker"]: w["pid"] for w in volume.state()["workers"]}
    text = text.replace("volume_backend_name = fake1", "volume_backend_name = fake1-gold")
    volume.edit(text)
    done = volume.reload()
    assert done.ok, done
    state = volume.state()
    assert state["reinitialized"] == ["fake1"]
    now = {w["worker"]: w for w in state["workers"]}
    assert now["fake1"]["old_pid"] == workers["fake1"] and now["fake1"]["new_pid"] != workers["fake1"]
    assert now["fake2"]["pid"] == workers["fake2"]
    main_pid = int(volume.show()["MainPID"])
    assert main_pid in pids  # the main process was never replaced
    pids = volume.pids()
    assert pids == {main_pid, now["fake1"]["new_pid"], workers["fake2"]}

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

    # A driver that cannot be built: fake1 comes back on its previous configuration.
    volume.edit(text.replace(f"volume_driver = {FAKE_DRIVER}", "volume_driver = cinder.tests.fake_driver.Nope", 1))
    done = volume.reload()
    props = volume.show()
    assert not done.ok
    assert "fake1: new worker failed" in props["StatusText"] and "Nope" in props["StatusText"], props
    assert props["ActiveState"] == "active"
    pids = volume.pids()
    volume.edit(text)
    done = volume.reload()
    assert done.ok and "no changes" in volume.show()["StatusText"]

    # Restart-only options: reported pending restart.
    volume.edit(text.replace("[DEFAULT]\n", "[DEFAULT]\ncluster = moved\n", 1))
    done = volume.reload()
    assert done.ok, done
    assert "pending restart: DEFAULT.cluster" in volume.show()["StatusText"]
    assert [c["option"] for c in volume.state()["pending_restart"]] == ["cluster"]
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
    # Where the next volume lands after such a change: tests/stack/test_scheduler_backup.py.
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
