"""Smoke tests: cinder-backup and cinder-api 29 under ``cinder-reload run``."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from cinderproc import CinderService, backup_config

pytestmark = [pytest.mark.cinder, pytest.mark.process]

Start = Callable[..., CinderService]


def test_backup_driver_is_rebuilt_when_its_options_change(start_cinder: Start) -> None:
    backup = start_cinder("cinder-backup", backup_config)
    pid = backup.pid
    good = backup.config_file.read_text()
    elsewhere = backup.workdir / "backups2"
    elsewhere.mkdir()
    backup.edit(re.sub(r"backup_posix_path = .*", f"backup_posix_path = {elsewhere}", good))
    done = backup.reload()
    # Re-initialised, not pending a restart.  That the next backup is written
    # to the new path is proven with a whole stack (a backup needs a volume
    # service to attach from): tests/stack/test_scheduler_backup.py.
    assert done.returncode == 0 and "re-initialised DEFAULT" in done.stdout, done.stdout + done.stderr
    assert [c["option"] for c in backup.state()["changed"]] == ["backup_posix_path"]
    # A driver that cannot be loaded: reported, the old one stays.
    backup.edit(good.replace("posix.PosixBackupDriver", "posix.NoSuchDriver"))
    done = backup.reload()
    assert done.returncode == 1 and "NoSuchDriver" in done.stderr and "keeps its old configuration" in done.stderr
    backup.edit(good + "[broken\n")
    done = backup.reload()
    assert done.returncode == 1 and "syntax error" in done.stderr
    assert backup.pids() == {pid}

