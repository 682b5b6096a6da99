"""cinder-volume 29 under ``cinder-reload run``: a main process and one worker per backend.

Plain processes with a real NOTIFY_SOCKET (the systemd runs are in
test_volume_systemd.py).  Every assertion is on something observable from
outside: sd_notify datagrams, state files, the log, PIDs.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from cinderproc import FAKE_DRIVER, OSLO_BACKENDS, CinderService, on_backend, volume_config
from helpers import wait_until

pytestmark = [pytest.mark.cinder, pytest.mark.process]

Start = Callable[..., CinderService]

@pytest.fixture(params=OSLO_BACKENDS)
def start_cinder(request: pytest.FixtureRequest, start_cinder: Start) -> Start:
    """Every test here on both of oslo.service's backends: eventlet, and cotyledon's threads."""
    return on_backend(request.param, start_cinder)


def edited(service: CinderService, old: str, new: str, count: int = 1) -> str:
    text = service.config_file.read_text()
    assert old in text, old
    return text.replace(old, new, count)


def lines_of(log: str, pid: int, pattern: str) -> list[str]:
    return [line for line in log.splitlines() if f" {pid} " in line and re.search(pattern, line)]


def test_start_reports_ready_once_after_every_backend_is_up(start_cinder: Start) -> None:
    volume = start_cinder()
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    assert volume.pids() == {volume.pid, fake1, fake2}
    ready = volume.notify.messages[volume.notify.wait_for(lambda m: m.get("READY") == "1")]
    assert f"fake1 (pid {fake1})" in ready["STATUS"] and f"fake2 (pid {fake2})" in ready["STATUS"]
    # READY=1 came after both drivers finished their RPC initialisation...
    log = volume.log()
    for pid in (fake1, fake2):
        assert lines_of(log, pid, "Driver post RPC initialization completed successfully")
    # ...and oslo.service's notify_once() sent none of its own.
    assert volume.notify.count("READY") == 1


def test_debug_is_applied_in_every_process_with_the_same_pids(start_cinder: Start) -> None:
    volume = start_cinder()
    pids = volume.pids()
    mark = volume.log_mark()
    before = len(volume.notify.messages)
    volume.edit(edited(volume, "debug = false", "debug = true"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr + volume.log_tail()
    assert "Reload #1 ok: 1 changed: 1 live; 2/2 workers ok" in done.stdout
    assert volume.pids() == pids
    # One RELOADING=1 (with MONOTONIC_USEC) and one READY=1 for the whole service.
    reloading = volume.notify.wait_for(lambda m: m.get("RELOADING") == "1", start=before)
    assert volume.notify.messages[reloading]["MONOTONIC_USEC"].isdigit()
    ready = volume.notify.wait_for(lambda m: m.get("READY") == "1", start=reloading)
    assert volume.notify.messages[ready]["STATUS"].startswith("Reload #1 ok")
    # In effect in every process: each logs at DEBUG right after its cycle.
    # The end event follows READY=1 and the state file the reload command
    # waits for: give it a moment to be logged.
    ended = r" DEBUG cinder_reload\.events .*reload\.end generation=1"
    wait_until(lambda: lines_of(volume.log_since(mark), volume.pid, ended), 30, "the reload.end event, at DEBUG")
    log = volume.log_since(mark)
    for pid in pids - {volume.pid}:
        assert lines_of(log, pid, r" DEBUG cinder_reload\.cinder\.backend_worker .*new live value"), pid
    # Each backend's manager dropped its cached RPC version pins, as a SIGHUP did before.
    for pid in pids - {volume.pid}:
        assert lines_of(log, pid, "Resetting cached RPC version pins"), pid
    doc = volume.state()
    assert [c["option"] for c in doc["changed"]] == ["debug"]
    assert {w["worker"]: w["result"] for w in doc["workers"]} == {"fake1": "ok", "fake2": "ok"}
    # The reload events went out through oslo.messaging (log driver) with the
    # service's publisher id.
    sent = r'"publisher_id": "volume\.[^"]+", "event_type": "cinder-volume\.reload\.end"'
    wait_until(lambda: re.search(sent, volume.log_since(mark)), 30, "the reload.end notification")


def test_one_backend_option_replaces_that_backends_worker_only(start_cinder: Start) -> None:
    volume = start_cinder()
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    mark = volume.log_mark()
    volume.edit(edited(volume, "volume_backend_name = fake1", "volume_backend_name = fake1-gold"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr + volume.log_tail()
    assert "re-initialised fake1" in done.stdout
    new1 = volume.worker_pid("fake1")
    # The old worker is gone, a new one serves fake1; fake2 and the main process kept their pids.
    assert new1 != fake1 and not Path(f"/proc/{fake1}").exists()
    assert volume.pids() == {volume.pid, new1, fake2}
    doc = volume.state()
    assert doc["reinitialized"] == ["fake1"]
    assert doc["changed"] == [
        {"group": "fake1", "option": "volume_backend_name", "old": "fake1", "new": "fake1-gold", "applied": "reinit"}
    ]
    workers = {w["worker"]: w for w in doc["workers"]}
    assert workers["fake1"]["old_pid"] == fake1 and workers["fake1"]["new_pid"] == new1
    assert 0 < workers["fake1"]["start_s"] <= workers["fake1"]["paused_s"] < 30
    assert workers["fake2"]["pid"] == fake2 and "old_pid" not in workers["fake2"]
    log = volume.log_since(mark)
    # cinder's own start path brought the new worker up...
    assert lines_of(log, new1, "Starting volume driver FakeLoggingVolumeDriver")
    assert lines_of(log, new1, "Driver post RPC initialization completed successfully")
    # ...and fake2 did nothing at all (no drain, no driver start, not even a reset).
    assert not lines_of(log, fake2, "Starting volume driver|stopped consuming|Driver post RPC|Resetting cached RPC")
    # The same file again: nothing left to do anywhere, nothing replaced.
    again = volume.reload()
    assert again.returncode == 0 and "no changes" in again.stdout
    assert volume.pids() == {volume.pid, new1, fake2}


BROKEN = {
    "syntax error": lambda text: text + "[fake2\n",
    "bad boolean": lambda text: text.replace("debug = false", "debug = maybe"),
    "bad integer in a backend": lambda text: text.replace(
        "volume_backend_name = fake2", "volume_backend_name = fake2\nreserved_percentage = lots"
    ),
    "empty file": lambda text: "",
    "backend section removed": lambda text: text.split("[fake2]")[0],
}


def test_broken_files_fail_the_reload_and_change_nothing(start_cinder: Start) -> None:
    volume = start_cinder()
    pids = volume.pids()
    good = volume.config_file.read_text()
    mark = volume.log_mark()
    for kind, breaker in BROKEN.items():
        volume.edit(breaker(good))
        done = volume.reload()
        assert done.returncode == 1, (kind, done.stdout)
        assert "Reload failed: invalid configuration" in done.stderr, (kind, done.stderr)
        assert volume.pids() == pids, kind
        doc = volume.state()
        assert doc["result"] == "failed" and doc["problems"] and doc["reinitialized"] == [] and doc["workers"] == []
    # Missing file: moved away.
    moved = volume.config_file.with_suffix(".moved")
    volume.config_file.rename(moved)
    done = volume.reload()
    assert done.returncode == 1 and "file not found" in done.stderr
    moved.rename(volume.config_file)
    volume.edit(good)
    # No worker was ever told anything, nothing was replaced.
    assert volume.pids() == pids
    assert not re.search("Starting volume driver|stopped consuming|new live value", volume.log_since(mark))
    done = volume.reload()
    assert done.returncode == 0 and "no changes" in done.stdout, done.stderr


def test_a_driver_that_cannot_be_built_rolls_the_backend_back(start_cinder: Start) -> None:
    volume = start_cinder()
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    good = volume.config_file.read_text()
    broken = good.replace(
        f"volume_driver = {FAKE_DRIVER}\nvolume_backend_name = fake1",
        "volume_driver = cinder.tests.fake_driver.NoSuchDriver\nvolume_backend_name = fake1-new",
    )
    assert broken != good
    volume.edit(broken)
    done = volume.reload()
    assert done.returncode == 1
    assert "fake1: new worker failed" in done.stderr and "NoSuchDriver" in done.stderr, done.stderr
    assert "back on its previous configuration" in done.stderr
    # The old worker was drained, kept alive while the new one tried, and
    # consumes again: same pid, never restarted.
    back = volume.worker_pid("fake1")
    assert back == fake1 and volume.pids() == {volume.pid, fake1, fake2}
    doc = volume.state()
    assert "fake1" in doc["failed_groups"] and doc["reinitialized"] == []
    assert {c["option"] for c in doc["not_applied"]} == {"volume_driver", "volume_backend_name"}
    # The rolled-back worker runs the old driver, up and consuming.
    assert lines_of(volume.log(), back, "Driver post RPC initialization completed successfully")
    # The old values are still in effect: going back to the old file is
    # "no changes", not a replacement...
    volume.edit(good)
    done = volume.reload()
    assert done.returncode == 0 and "no changes" in done.stdout, done.stdout + done.stderr
    # ...and a good change afterwards replaces it as usual.
    volume.edit(good.replace("volume_backend_name = fake1", "volume_backend_name = fake1-new"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    assert volume.worker_pid("fake1") not in {fake1, back}


def test_restart_only_options_are_reported_pending(start_cinder: Start) -> None:
    volume = start_cinder()
    pids = volume.pids()
    # Identities: the service's cluster and a backend's host (neither is an
    # input of another option, which a reload would then apply).
    text = volume.config_file.read_text().replace("debug = false", "debug = false\ncluster = moved", 1)
    text = text.replace("[fake2]", "[fake1]\nbackend_host = moved\n\n[fake2]", 1)
    volume.edit(text)
    before = len(volume.notify.messages)
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    assert "pending restart: DEFAULT.cluster, fake1.backend_host" in done.stdout
    assert volume.pids() == pids
    pending = {(c["group"], c["option"]): c["reason"] for c in volume.state()["pending_restart"]}
    assert set(pending) == {("DEFAULT", "cluster"), ("fake1", "backend_host")}
    # Each with the reason a restart is needed.
    assert "Active/Active" in pending[("DEFAULT", "cluster")]
    assert "identity" in pending[("fake1", "backend_host")]
    # READY=1 follows the state file the command waits for: wait for it.
    ready = volume.notify.wait_for(lambda m: m.get("READY") == "1", start=before)
    assert "pending restart: DEFAULT.cluster" in volume.notify.messages[ready]["STATUS"]
    # Still pending at the next reload, whatever else it changes.
    volume.edit(text.replace("volume_backend_name = fake2", "volume_backend_name = fake2-gold"))
    done = volume.reload()
    assert done.returncode == 0 and "pending restart: DEFAULT.cluster" in done.stdout, done.stdout


def test_backends_are_added_and_removed_live(start_cinder: Start, cinder_venv: Path) -> None:
    """enabled_backends: a new backend's worker comes up and serves, a removed one is stopped."""
    import json
    import os
    import subprocess

    from stack.infra import backing_services

    with backing_services(prefix="crmembers") as backing:
        volume = start_cinder(
            config=lambda workdir: volume_config(workdir).replace(
                "transport_url = fake://", f"transport_url = {backing.transport_url}"
            )
        )
        main, fake1, fake2 = volume.pid, volume.worker_pid("fake1"), volume.worker_pid("fake2")
        text = volume.config_file.read_text()
        section = "\n[{0}]\nvolume_driver = {1}\nvolume_backend_name = {0}\n"

        # Added: its worker starts through cinder's start path and takes volumes.
        added = text.replace("enabled_backends = fake1,fake2", "enabled_backends = fake1,fake2,fake3")
        added += section.format("fake3", FAKE_DRIVER)
        volume.edit(added)
        done = volume.reload()
        assert done.returncode == 0, done.stderr
        fake3 = volume.worker_pid("fake3")
        assert volume.pid == main and volume.pids() == {main, fake1, fake2, fake3}
        doc = volume.state()
        assert doc["pending_restart"] == [] and "fake3" in doc["reinitialized"], doc
        client = [
            str(cinder_venv / "bin" / "python"),
            str(Path(__file__).parent / "rpcclient.py"),
            str(volume.config_file),
        ]
        created = subprocess.run(
            [*client, "create", f"{os.uname().nodename}@fake3#fake3", "2", "--wait", "60"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert created.returncode == 0, created.stderr[-2000:]
        assert [json.loads(line)["status"] for line in created.stdout.splitlines()] == ["available"] * 2

        # Removed (its section too): drained and stopped, the others untouched.
        removed = added.replace("enabled_backends = fake1,fake2,fake3", "enabled_backends = fake1,fake3")
        removed = removed[: removed.index("[fake2]")] + removed[removed.index("[fake3]") :]
        volume.edit(removed)
        done = volume.reload()
        assert done.returncode == 0, done.stderr
        # Gone (oslo.service reaps it a moment later: no zombie is left either).
        assert not Path(f"/proc/{fake2}").exists() or ") Z " in Path(f"/proc/{fake2}/stat").read_text()
        wait_until(lambda: volume.pids() == {main, fake1, fake3}, 10, "the removed worker reaped")
        doc = volume.state()
        assert doc["pending_restart"] == [] and doc["not_applied"] == [], doc
        assert {w["worker"] for w in doc["workers"]} == {"fake1", "fake2", "fake3"}  # fake2: its removal
        assert "no changes" in (volume.reload().stdout), "a second reload of the same file changes nothing"

        # A backend that cannot come up fails the reload and is not half-added.
        broken = removed.replace("enabled_backends = fake1,fake3", "enabled_backends = fake1,fake3,fake4")
        broken += section.format("fake4", "cinder.tests.fake_driver.NoSuchDriver")
        volume.edit(broken)
        done = volume.reload()
        assert done.returncode == 1 and "fake4: could not be added" in done.stderr, done.stderr
        assert "NoSuchDriver" in done.stderr and volume.pids() == {main, fake1, fake3}
        # Fixed, the next reload adds it.
        volume.edit(broken.replace("cinder.tests.fake_driver.NoSuchDriver", FAKE_DRIVER))
        done = volume.reload()
        assert done.returncode == 0, done.stderr
        assert volume.pids() == {main, fake1, fake3, volume.worker_pid("fake4")}


def test_a_backend_cinder_could_not_create_at_start_is_reported_and_retried(start_cinder: Start) -> None:
    """cinder's start goes on without a backend whose service it cannot create; so do we, and say so."""
    broken_driver = "cinder.tests.fake_driver.NoSuchDriver"
    volume = start_cinder(
        config=lambda workdir: volume_config(workdir).replace(
            f"volume_driver = {FAKE_DRIVER}", f"volume_driver = {broken_driver}", 1
        )
    )
    ready = [m for m in volume.notify.messages if m.get("READY") == "1"]
    assert "fake1: not started" in ready[0]["STATUS"], ready
    fake2 = volume.worker_pid("fake2")
    assert volume.pids() == {volume.pid, fake2}
    # The driver fixed, a reload brings it up; fake2 is not touched.
    volume.edit(volume.config_file.read_text().replace(broken_driver, FAKE_DRIVER))
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    assert volume.pids() == {volume.pid, fake2, volume.worker_pid("fake1")}
    assert volume.state()["reinitialized"] == ["fake1"]


def test_a_worker_that_does_not_answer_fails_the_cycle_without_hanging_it(start_cinder: Start) -> None:
    volume = start_cinder()
    fake2 = volume.worker_pid("fake2")
    volume.edit(edited(volume, "debug = false", "debug = true"))
    mark = volume.log_mark()
    with volume.stopped(fake2):
        done = volume.reload(timeout=30)
    assert done.returncode == 1
    assert f"fake2 (pid {fake2}) did not take the change" in done.stderr, done.stderr
    # Continued, it reads the request it missed, and does not act on it: the
    # state said it did not take the change, and that stays true.
    from helpers import wait_until

    read = "after its deadline|Option DEFAULT.debug changed"
    wait_until(lambda: lines_of(volume.log_since(mark), fake2, read), 15, "fake2 to read the request it missed")
    assert not lines_of(volume.log_since(mark), fake2, "Option DEFAULT.debug changed"), volume.log_since(mark)
    assert lines_of(volume.log_since(mark), volume.worker_pid("fake1"), "Option DEFAULT.debug changed")
    # The next reload is clean.
    done = volume.reload()
    assert done.returncode == 0, done.stderr


def test_config_is_checked_before_the_service_ever_sees_it(cinder_venv: Path, tmp_path: Path) -> None:
    """``cinder-reload check cinder-volume`` with the options provider of the cinder venv."""
    import subprocess

    config = tmp_path / "cinder.conf"
    config.write_text(volume_config(tmp_path).replace("volume_backend_name = fake2", "reserved_percentage = lots"))
    done = subprocess.run(
        [
            str(cinder_venv / "bin" / "cinder-reload"),
            "check",
            "cinder-volume",
            "--options",
            "cinder_reload.cinder.options:register_volume_opts",
            "--",
            "--config-file",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "[fake2] reserved_percentage" in done.stderr


def test_a_worker_killed_after_a_reload_comes_back_with_the_reloaded_configuration(start_cinder: Start) -> None:
    import os
    import signal

    from helpers import wait_until

    volume = start_cinder()
    volume.edit(edited(volume, "volume_backend_name = fake2", "volume_backend_name = fake2-gold"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    fake2 = volume.worker_pid("fake2")
    mark = volume.log_mark()
    os.kill(fake2, signal.SIGKILL)
    # oslo.service forks it again, from the service cinder's start path built
    # with the reloaded values (not the one from the main process's start).
    respawned = wait_until(
        lambda: next(iter(volume.pids() - {volume.pid, volume.worker_pid("fake1")} - {fake2}), None), 30, "respawn"
    )
    wait_until(
        lambda: lines_of(volume.log_since(mark), respawned, "Driver post RPC initialization completed"), 30, "up"
    )
    # Nothing to do: the respawned worker already runs what the file says...
    done = volume.reload()
    assert done.returncode == 0 and "no changes" in done.stdout, done.stdout + done.stderr
    # ...and the next change reaches it (a replacement of the respawned worker).
    volume.edit(edited(volume, "volume_backend_name = fake2-gold", "volume_backend_name = fake2-silver"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    workers = {w["worker"]: w for w in volume.state()["workers"]}
    assert workers["fake2"]["old_pid"] == respawned and workers["fake2"]["new_pid"] in volume.pids()


def test_operations_sent_during_a_replacement_are_all_carried_out(start_cinder: Start, cinder_venv: Path) -> None:
    """On RabbitMQ: creates before, during and after fake1's worker is replaced all end available."""
    import json
    import os
    import subprocess

    from stack.infra import backing_services

    with backing_services(prefix="crburst") as backing:
        volume = start_cinder(
            config=lambda workdir: volume_config(workdir).replace(
                "transport_url = fake://", f"transport_url = {backing.transport_url}"
            )
        )
        client = [
            str(cinder_venv / "bin" / "python"),
            str(Path(__file__).parent / "rpcclient.py"),
            str(volume.config_file),
        ]
        host = f"{os.uname().nodename}@fake1#fake1"
        burst = subprocess.Popen(
            [*client, "create", host, "40", "--wait", "60", "--interval", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        import time

        time.sleep(0.5)
        volume.edit(edited(volume, "volume_backend_name = fake1", "volume_backend_name = fake1-gold"))
        done = volume.reload()
        assert done.returncode == 0, done.stderr
        out, err = burst.communicate(timeout=120)
        assert burst.returncode == 0, err[-2000:]
        results = [json.loads(line) for line in out.splitlines()]
        stuck = [r for r in results if r["status"] != "available"]
        assert len(results) == 40 and not stuck, (stuck, volume.state()["workers"])


def test_a_sighup_storm_during_a_replacement_runs_at_most_one_more_cycle(start_cinder: Start) -> None:
    import os
    import signal

    from cinderproc import wait_state

    volume = start_cinder()
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    volume.edit(edited(volume, "volume_backend_name = fake1", "volume_backend_name = fake1-gold"))
    for _ in range(200):
        os.kill(volume.pid, signal.SIGHUP)
    wait_state(volume, "cinder-volume", lambda d: d["generation"] >= 1 and not d.get("in_progress"), 60)
    # The signals that arrived during the first cycle merge into one follow-up.
    done = volume.reload()
    assert done.returncode == 0 and "no changes" in done.stdout, done.stdout + done.stderr
    doc = volume.state()
    assert doc["generation"] <= 3, doc["generation"]
    new1 = volume.worker_pid("fake1")
    assert new1 != fake1 and volume.pids() == {volume.pid, new1, fake2}


def test_a_sighup_to_the_whole_process_group_reaches_the_main_process_only(start_cinder: Start) -> None:
    """As cotyledon's own reload sends it (os.killpg(0, SIGHUP)), or an operator's ``kill -HUP -PGID``.

    The file is broken meanwhile: the main process validates it and fails
    the reload; a worker that acted on the signal would read it (oslo.service's
    eventlet child mutates the files, and dies on a syntax error) or restart
    (cotyledon's worker terminates and is forked again).  Every worker ignores it.
    """
    import os
    import signal

    from cinderproc import wait_state

    volume = start_cinder()
    pids = volume.pids()
    good = volume.config_file.read_text()
    volume.edit(good + "[fake2\n")
    os.killpg(volume.pid, signal.SIGHUP)
    doc = wait_state(volume, "cinder-volume", lambda d: d["generation"] >= 1 and not d.get("in_progress"), 60)
    assert doc["result"] == "failed" and doc["workers"] == [], doc
    volume.edit(good)
    done = volume.reload()  # one more round trip through the main process
    assert done.returncode == 0 and "no changes" in done.stdout, done.stdout + done.stderr
    assert volume.pids() == pids


def test_a_drain_counts_cinders_own_rpc_call_in_flight(start_cinder: Start, cinder_venv: Path) -> None:
    """The RPC gate wraps the real VolumeManager: a create_volume cast that is
    still running when the backend's worker is to retire keeps it (drain
    timeout shorter than the call), and the reload says what it waited for."""
    import json
    import os
    import subprocess

    from helpers import TESTS, wait_until
    from stack.infra import rabbit_vhost

    with rabbit_vhost("crgate") as url:

        def config(workdir: Path) -> str:
            text = volume_config(workdir).replace("transport_url = fake://", f"transport_url = {url}")
            text = text.replace("drain_timeout = 10", "drain_timeout = 1")
            return text.replace(
                f"volume_driver = {FAKE_DRIVER}\nvolume_backend_name = fake1",
                "volume_driver = stack.slowdriver.SlowFakeDriver\nvolume_backend_name = fake1\nslow_op_seconds = 4",
            )

        volume = start_cinder(config=config, env={"PYTHONPATH": str(TESTS)})
        fake1 = volume.worker_pid("fake1")
        client = [str(cinder_venv / "bin" / "python"), str(Path(__file__).parent / "rpcclient.py")]
        sent = subprocess.run(
            [*client, str(volume.config_file), "create", f"{os.uname().nodename}@fake1#fake1", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr[-2000:]
        ident = json.loads(sent.stdout.splitlines()[0])["id"]
        # cinder's own line when the create flow starts in fake1's worker.
        wait_until(lambda: lines_of(volume.log(), fake1, f"Volume {ident}: being created"), 20, "the create to start")
        volume.edit(edited(volume, "volume_backend_name = fake1", "volume_backend_name = fake1-gold"))

        done = volume.reload()

        assert done.returncode == 1, done.stdout + done.stderr
        assert "create_volume x1" in done.stderr, done.stderr
        assert volume.worker_pid("fake1") == fake1, "the backend keeps serving on its previous configuration"

        def status() -> str:
            shown = subprocess.run([*client, str(volume.config_file), "show", ident], capture_output=True, text=True)
            return str(json.loads(shown.stdout)["status"])

        assert wait_until(lambda: status() != "creating" and status(), 30, "the create to finish") == "available"
        done = volume.reload()
        assert done.returncode == 0, done.stderr
        assert volume.worker_pid("fake1") != fake1


def _service_records(volume: CinderService) -> dict[str, tuple[str, str]]:
    """Each backend's (availability zone, last state report) in cinder's own service records
    (what `openstack volume service list` shows)."""
    import sqlite3

    path = re.search(r"sqlite:///(\S+?)\?", volume.config_file.read_text())
    assert path is not None
    with sqlite3.connect(f"file:{path.group(1)}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            "SELECT host, availability_zone, updated_at FROM services WHERE topic = 'cinder-volume' AND deleted = 0"
        )
        return {host.rsplit("@", 1)[-1]: (zone, str(updated)) for host, zone, updated in rows}


def _zones(volume: CinderService) -> dict[str, str]:
    return {backend: zone for backend, (zone, _) in _service_records(volume).items()}


def _zones_reported_after(volume: CinderService, since: str) -> dict[str, str] | None:
    """The zones, once every backend sent a state report after ``since`` (UTC, as cinder stores it)."""
    records = _service_records(volume)
    if records and all(updated > since for _, updated in records.values()):
        return {backend: zone for backend, (zone, _) in records.items()}
    return None


def test_a_default_option_replaces_every_worker_one_at_a_time(start_cinder: Start) -> None:
    """[DEFAULT] is read by every backend's worker: each is replaced in turn, never two paused at once."""
    volume = start_cinder()
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    # report_interval too: the zone reaches the service records at the next state report.
    rolled = "debug = false\nstorage_availability_zone = az-rolled\nreport_interval = 2"
    volume.edit(edited(volume, "debug = false", rolled))
    done = volume.reload()
    assert done.returncode == 0, done.stderr + volume.log_tail()
    assert volume.pid in volume.pids()
    new1, new2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    assert {new1, new2}.isdisjoint({fake1, fake2}) and volume.pids() == {volume.pid, new1, new2}
    doc = volume.state()
    assert {c["option"] for c in doc["changed"]} == {"storage_availability_zone", "report_interval"}
    assert doc["pending_restart"] == [] and doc["not_applied"] == []
    # One backend paused after the other: the pause windows do not overlap.
    windows = sorted((w["paused_at"], w["paused_at"] + w["paused_s"]) for w in doc["workers"])
    assert len(windows) == 2 and windows[0][1] <= windows[1][0], windows
    # In effect: both backends' service records carry the new zone.
    wait_until(lambda: set(_zones(volume).values()) == {"az-rolled"}, 30, "the new zone in the service records")

    # Logging is set up by the main process: no new worker would take it.
    volume.edit(edited(volume, "debug = false", "debug = false\nuse_json = true"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    pending = {c["option"]: c["reason"] for c in volume.state()["pending_restart"]}
    assert "main process" in pending["use_json"], pending
    assert volume.worker_pid("fake1") == new1 and volume.worker_pid("fake2") == new2


def test_a_default_change_a_backend_cannot_take_leaves_every_backend_as_it_was(start_cinder: Start) -> None:
    """The roll stops at the first backend whose new worker fails; the ones before it are put back."""
    volume = start_cinder()
    fake1, fake2 = volume.worker_pid("fake1"), volume.worker_pid("fake2")
    good = volume.config_file.read_text()
    bad = good.replace("debug = false", "debug = false\nstorage_availability_zone = az-rolled\nreport_interval = 2")
    bad = bad.replace(
        f"volume_driver = {FAKE_DRIVER}\nvolume_backend_name = fake2",
        "volume_driver = cinder.tests.fake_driver.NoSuchDriver\nvolume_backend_name = fake2",
    )
    volume.edit(bad)
    done = volume.reload()
    since = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert done.returncode == 1
    assert "fake2" in done.stderr and "NoSuchDriver" in done.stderr, done.stderr
    doc = volume.state()
    assert {"DEFAULT", "fake2"} <= set(doc["failed_groups"]), doc["failed_groups"]
    assert {c["option"] for c in doc["not_applied"]} >= {"storage_availability_zone", "volume_driver"}
    # fake2's old worker consumes again (same pid); fake1, replaced first, got
    # a fresh worker on the previous values.
    assert volume.worker_pid("fake2") == fake2
    back1 = volume.worker_pid("fake1")
    assert back1 != fake1 and volume.pids() == {volume.pid, back1, fake2}
    # Every backend reports its previous zone, in a state report sent after the reload.
    zones = wait_until(lambda: _zones_reported_after(volume, since), 40, "a state report of every backend")
    assert zones == {"fake1": "nova", "fake2": "nova"}, zones
    # The file fixed: the same [DEFAULT] change goes through.
    volume.edit(good.replace("debug = false", "debug = false\nstorage_availability_zone = az-rolled"))
    done = volume.reload()
    assert done.returncode == 0, done.stderr
    assert volume.worker_pid("fake2") != fake2
