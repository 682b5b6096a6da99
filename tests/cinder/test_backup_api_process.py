"""Smoke tests: cinder-backup and cinder-api 29 under ``cinder-reload run``."""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from cinderproc import CinderService, api_config, backup_config

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


def test_api_workers_apply_mutable_options_and_report_the_rest(start_cinder: Start, cinder_venv: Path) -> None:
    api = start_cinder("cinder-api", lambda workdir: api_config(workdir, cinder_venv))
    pids = api.pids()
    assert len(pids) == 3  # the main process and osapi_volume_workers = 2
    port = re.search(r"osapi_volume_listen_port = (\d+)", api.config_file.read_text())
    assert port is not None
    url = f"http://127.0.0.1:{port.group(1)}/"

    def versions() -> int:
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as exc:  # the versions document answers 300
            return int(exc.code)

    assert versions() == 300
    good = api.config_file.read_text()
    api.edit(
        good.replace("debug = false", "debug = true").replace("osapi_volume_workers = 2", "osapi_volume_workers = 3")
    )
    done = api.reload()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 live" in done.stdout and "2/2 workers ok" in done.stdout
    assert "pending restart: DEFAULT.osapi_volume_workers" in done.stdout
    doc = api.state()
    assert len(doc["workers"]) == 2 and all(w["result"] == "ok" for w in doc["workers"])
    assert api.pids() == pids and versions() == 300
