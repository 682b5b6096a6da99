"""cinder-scheduler and cinder-backup: a reload proven by what happens next.

One stack for the module (real MariaDB and RabbitMQ, a database and a vhost
of the run's own), every service a rendered unit under one systemd 252 user
manager: cinder-api (noauth), cinder-scheduler, cinder-volume with two
backends on the test driver, cinder-backup with cinder's POSIX backup
driver.  Each test changes the file, runs ``systemctl reload`` on one unit
and then asks cinder to do something whose outcome depends on the change:

* the scheduler: where a new volume lands (``os-vol-host-attr:host``).
  fake1 reports 1000 GB free, fake2 100 GB; fake2's ``filter_function``
  refuses every volume, which only matters once ``DriverFilter`` is among
  the scheduler's filters;
* cinder-backup: in which directory a new backup's objects are written,
  after ``backup_posix_path`` moved; and a backup already running when the
  reload came (fake1's attach takes a few seconds) finishes, on the path it
  began with, before the reload returns; and after ``backup_driver`` moved
  to a subclass that writes under ``tagged/``, the next backup is there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.fixtures import namespaces_unavailable
from harness.managers import SystemdHost252

from .cinderenv import CinderVenv, find_cinder_venv
from .infra import backing_services
from .stack import children_of, wait_for
from .units import UnitStack

pytestmark = [pytest.mark.stack, pytest.mark.systemd]

SERVICES = ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup")
POSIX = "cinder.backup.drivers.posix.PosixBackupDriver"
#: The same driver, writing under TAG/ (tests/stack/backupdriver.py).
TAGGED = "stack.backupdriver.TaggedPosixBackupDriver"
TAG = "tagged"
#: fake1's attach time: long enough to reload cinder-backup while a backup waits on it.
ATTACH_SECONDS = 6


class Fixture:
    """The module's stack and the places its backups go."""

    def __init__(self, stack: UnitStack, workdir: Path) -> None:
        self.stack = stack
        self.workdir = workdir
        self.volumes = workdir / "volumes"
        self.backups_a = workdir / "backups-a"
        self.backups_b = workdir / "backups-b"

    def defaults(
        self, *, posix_path: Path, scheduler: tuple[str, ...] = (), backup_workers: int = 1, driver: str = POSIX
    ) -> tuple[str, ...]:
        return (
            f"backup_driver = {driver}",
            f"backup_posix_path = {posix_path}",
            f"backup_workers = {backup_workers}",
            *scheduler,
        )

    def write(self, *, drain_timeout: float | None = None, **kwargs: Any) -> None:
        extra = f"\n[reload]\ndrain_timeout = {drain_timeout:g}\n" if drain_timeout is not None else ""
        self.stack.config.write(default_lines=self.defaults(**kwargs), extra=extra)

    def reload(self, service: str) -> None:
        before = self.stack.main_pid(service)
        done = self.stack.reload(service, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        # The same process: nothing was restarted to get there.
        props = self.stack.status(service)
        assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props
        assert self.stack.main_pid(service) == before

    def placed(self, name: str) -> str:
        """Create a 1 GB volume of the default type: the backend the scheduler chose."""
        api = self.stack.api
        vid = api.create_volume(name, 1)
        vol = wait_for(lambda: (v := api.volume(vid)) and v["status"] != "creating" and v, 120, f"volume {name}")
        assert vol["status"] == "available", vol
        host = str(vol["os-vol-host-attr:host"])  # crstack@fake1#fake1
        api.delete_volume(vid)
        return host.split("@", 1)[1].split("#", 1)[0]


@pytest.fixture(scope="module")
def env() -> Iterator[Fixture]:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    venv: CinderVenv | None = find_cinder_venv()
    if venv is None:
        pytest.fail("no cinder virtualenv; run tools/setup")
    workdir = Path(tempfile.mkdtemp(prefix="crsb."))
    workdir.chmod(0o755)
    (workdir / "um").mkdir()
    manager = SystemdHost252(workdir / "um")
    try:
        with backing_services() as backing:
            for sub in ("volumes", "backups-a", "backups-b"):
                (workdir / sub).mkdir()
            stack = UnitStack(
                workdir / "stack",
                venv,
                backing,
                manager=manager,
                services=SERVICES,
                slow_op_seconds=0.0,
                default_lines=(f"backup_driver = {POSIX}", f"backup_posix_path = {workdir / 'backups-a'}"),
                backend_lines={
                    "fake1": (
                        "fake_capacity_gb = 1000",
                        f"fake_volume_dir = {workdir / 'volumes'}",
                        f"slow_attach_seconds = {ATTACH_SECONDS}",
                    ),
                    # Valid, and false for every volume.  (Not "volume.size > N": cinder
                    # 29's evaluator cannot parse a variable under pyparsing 3.3, and
                    # a parse error fails the backend too, which would prove less.)
                    "fake2": ("fake_capacity_gb = 100", 'filter_function = "1 < 0"'),
                },
                # os-brick's connector properties (a backup's attach) go
                # through privsep: its helper from the venv, not sudo + rootwrap.
                extra_sections=f"\n[privsep_osbrick]\nhelper_command = {venv.bin('privsep-helper')}\n",
            )
            try:
                stack.start()
                yield Fixture(stack, workdir)
            finally:
                stack.stop()
                for service in SERVICES:
                    print(stack.log_tail(service, 4000))
    finally:
        manager.close()
        if os.environ.get("CRSTACK_KEEP"):
            print(f"kept {workdir} (CRSTACK_KEEP is set)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def test_scheduler_reload_changes_where_a_volume_lands(env: Fixture) -> None:
    posix = env.backups_a
    env.write(posix_path=posix)
    # Spread (capacity_weight_multiplier = 1.0): the backend with the most free space.
    assert env.placed("sched-0") == "fake1"

    # Stack instead: the weigher's multiplier is read at each decision, so
    # once the reload unpinned it, the fuller backend wins.
    flipped = ("capacity_weight_multiplier = -1.0",)
    env.write(posix_path=posix, scheduler=flipped)
    env.reload("cinder-scheduler")
    assert env.placed("sched-1") == "fake2"

    # A filter added: the host manager resolves its filter classes once, so
    # only a rebuilt cache makes DriverFilter run fake2's filter_function,
    # which refuses every volume; fake1 is all that is left.
    filters = "AvailabilityZoneFilter,CapacityFilter,CapabilitiesFilter,DriverFilter"
    filtered = (*flipped, f"scheduler_default_filters = {filters}")
    env.write(posix_path=posix, scheduler=filtered)
    env.reload("cinder-scheduler")
    assert env.placed("sched-2") == "fake1"

    # DriverFilter out again: fake2 is eligible again, and the fuller one still wins.
    env.write(posix_path=posix, scheduler=flipped)
    env.reload("cinder-scheduler")
    assert env.placed("sched-3") == "fake2"


def _objects(root: Path, backup_id: str) -> list[Path]:
    """The files the POSIX driver wrote for one backup (``ROOT/ab/cd/<backup id>/...``)."""
    return [p for p in root.rglob("*") if p.is_file() and backup_id in p.parts]


def _backup_done(env: Fixture, backup_id: str) -> dict[str, Any]:
    api = env.stack.api
    backup = wait_for(
        lambda: (b := api.backup(backup_id)) and b["status"] not in ("creating",) and b, 180, f"backup {backup_id}"
    )
    assert backup["status"] == "available", backup
    return dict(backup)


def _backup_across_a_reload(env: Fixture, old: Path, new: Path, **config: Any) -> None:
    """A backup running while ``backup_posix_path`` moves from ``old`` to ``new``, and one after."""
    api = env.stack.api
    vid = api.create_volume("bk-src", 1, env.stack.types["fake1"])
    wait_for(lambda: (v := api.volume(vid)) and v["status"] == "available", 120, "the volume to back up")
    marker = env.volumes / f"volume-{vid}.attaching"

    # A backup on the old path: in flight (waiting for its attach) when the reload comes.
    marker.unlink(missing_ok=True)
    running = api.create_backup(vid, "bk-running")
    try:
        wait_for(marker.exists, 120, "the running backup's attach to begin")
    except AssertionError as exc:
        # Before any reload of this test: say where the backup stopped (seen
        # once in 4 runs on two xdist workers, with nothing else to go by).
        tails = "\n".join(env.stack.log_tail(s, 4000) for s in ("cinder-backup", "cinder-scheduler", "cinder-api"))
        raise AssertionError(f"{exc}\nbackup: {api.backup(running)}\nservices: {api.services()}\n{tails}") from None
    env.write(posix_path=new, **config)
    # Still running as the reload is sent (else the check below proves nothing).
    assert (api.backup(running) or {}).get("status") == "creating"
    env.reload("cinder-backup")
    # The reload waited for it: done by the time `systemctl reload` returned,
    # and written where it began, not split across the two paths.
    backup = api.backup(running)
    assert backup is not None and backup["status"] == "available", backup
    assert _objects(old, running) and not _objects(new, running)

    # A backup after the reload: on the new path only.
    wait_for(lambda: (v := api.volume(vid)) and v["status"] == "available", 60, "the volume after its backup")
    after = api.create_backup(vid, "bk-after")
    _backup_done(env, after)
    assert _objects(new, after), sorted(str(p) for p in new.rglob("*"))
    assert not _objects(old, after)

    # The driver class itself: cinder-backup resolves backup_driver once, so
    # only a swapped class (or a new process) writes the next backup under tagged/.
    env.write(posix_path=new, driver=TAGGED, **config)
    env.reload("cinder-backup")
    wait_for(lambda: (v := api.volume(vid)) and v["status"] == "available", 60, "the volume after its backup")
    tagged = api.create_backup(vid, "bk-tagged")
    _backup_done(env, tagged)
    assert _objects(new / TAG, tagged), sorted(str(p) for p in new.rglob("*"))


def test_backup_single_process_reload_goes_to_the_new_posix_path(env: Fixture) -> None:
    """backup_workers = 1: one process, its driver rebuilt in place after the drain."""
    env.write(posix_path=env.backups_a)
    _backup_across_a_reload(env, env.backups_a, env.backups_b)


def test_backup_workers_replaced_one_at_a_time_write_to_the_new_posix_path(env: Fixture) -> None:
    """backup_workers = 2: each process replaced through cinder's own start path, under the same main PID."""
    env.write(posix_path=env.backups_b, backup_workers=2)
    restarted = env.stack.restart("cinder-backup")
    assert restarted.ok, restarted
    main = env.stack.main_pid("cinder-backup")
    before = set(children_of(main))
    assert len(before) == 2, before

    _backup_across_a_reload(env, env.backups_b, env.backups_a, backup_workers=2)

    # Both processes are new, the main process is the same.
    assert env.stack.main_pid("cinder-backup") == main
    after = set(children_of(main))
    assert len(after) == 2 and not after & before, (before, after)
    state = env.stack.state_files()["cinder-backup"]
    doc = json.loads(state.read_text())
    workers = {w["worker"]: w for w in doc["workers"]}
    assert sorted(workers) == ["backup1", "backup2"], workers
    # The last reload (the driver's) replaced each process by one running now.
    assert all(w["result"] == "ok" and w["pid"] in after and w["old_pid"] not in after for w in workers.values())


def test_backup_workers_that_cannot_drain_in_time_fail_the_reload_and_keep_serving(env: Fixture) -> None:
    """A drain shorter than the running backup: the reload fails with the reason, nothing is lost,
    and the next reload (once the backup is done) replaces every process."""
    api = env.stack.api
    short = {"backup_workers": 2, "drain_timeout": 2.0}
    env.write(posix_path=env.backups_a, **short)
    assert env.stack.restart("cinder-backup").ok  # [reload] drain_timeout is read at start
    main = env.stack.main_pid("cinder-backup")
    before = set(children_of(main))
    vid = api.create_volume("bk-slow", 1, env.stack.types["fake1"])
    wait_for(lambda: (v := api.volume(vid)) and v["status"] == "available", 120, "the volume to back up")
    marker = env.volumes / f"volume-{vid}.attaching"
    marker.unlink(missing_ok=True)
    running = api.create_backup(vid, "bk-longer-than-the-drain")
    wait_for(marker.exists, 120, "the running backup's attach to begin")
    env.write(posix_path=env.backups_b, **short)
    assert (api.backup(running) or {}).get("status") == "creating"
    done = env.stack.reload("cinder-backup", timeout=120)
    # What the operator sees: the reload failed, and why; the service runs on.
    assert done.returncode != 0, done.stdout + done.stderr
    assert "could not drain" in done.stderr and "in flight" in done.stderr, done.stderr
    props = env.stack.status("cinder-backup")
    assert props["ActiveState"] == "active" and props["NRestarts"] == "0", props
    assert env.stack.main_pid("cinder-backup") == main
    # The process that held the backup was not replaced, and the backup ends well, on the old path.
    assert before & set(children_of(main)), (before, children_of(main))
    _backup_done(env, running)
    assert _objects(env.backups_a, running) and not _objects(env.backups_b, running)

    # Once nothing runs, the same files reload: every process is new, the next backup on the new path.
    wait_for(lambda: (v := api.volume(vid)) and v["status"] == "available", 60, "the volume after its backup")
    env.reload("cinder-backup")
    assert not before & set(children_of(main)), (before, children_of(main))
    after = api.create_backup(vid, "bk-after-the-retry")
    _backup_done(env, after)
    assert _objects(env.backups_b, after) and not _objects(env.backups_a, after)
