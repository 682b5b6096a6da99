"""A test volume driver whose operations take a configurable time.

cinder's own ``FakeLoggingVolumeDriver`` (cinder.tests.fake_driver) does
nothing and returns at once, so no operation is ever in flight when a reload
drains.  This one sleeps ``slow_op_seconds`` (a per-backend option) in
create, extend and delete; under cinder's eventlet monkey-patching the sleep
is green, so the service keeps serving other requests meanwhile.

It also reports the backend's own ``volume_backend_name`` (the fake driver
reports "fake" for every backend, so volume types bound to a backend name
would never be scheduled).

cinder-volume imports it as ``stack.slowdriver.SlowFakeDriver`` with the
repository's ``tests/`` directory on ``PYTHONPATH`` (tests/stack/cinderenv.py
sets that up for the processes it starts, and the unit files of the stack
tests carry it in ``Environment=``)::

    [fake1]
    volume_driver = stack.slowdriver.SlowFakeDriver
    volume_backend_name = fake1
    slow_op_seconds = 0.3

A new value of ``slow_op_seconds`` takes effect when the driver is built
again, i.e. when the backend is re-initialised by a reload; each build logs
one INFO line naming the backend and the value, which the tests read.

Three more per-backend options, off by default, serve the scheduler and
backup tests (tests/stack/test_scheduler_backup.py):

* ``fake_capacity_gb``: the pool reports this much total and free space
  (instead of "infinite"), so the scheduler's capacity weigher can tell two
  backends apart;
* ``fake_volume_dir``: each volume is a small file there, and a connection
  is os-brick's ``local`` one to that file, so cinder-backup can read the
  volume as it reads any attached device;
* ``slow_attach_seconds``: ``initialize_connection`` takes that long (after
  touching ``<volume file>.attaching``, which a test waits for), which keeps
  a backup in flight in cinder-backup while a test reloads it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from cinder.tests.fake_driver import FakeLoggingVolumeDriver
from oslo_config import cfg

LOG = logging.getLogger(__name__)

slow_opts = [
    cfg.FloatOpt(
        "slow_op_seconds",
        default=0.0,
        min=0.0,
        help="Seconds each create/extend/delete of this backend takes (test driver).",
    ),
    cfg.FloatOpt(
        "fake_capacity_gb",
        default=0.0,
        min=0.0,
        help="Total and free capacity the pool reports; 0: infinite (test driver).",
    ),
    cfg.StrOpt("fake_volume_dir", help="Volumes are files here, attached as os-brick 'local' (test driver)."),
    cfg.FloatOpt(
        "slow_attach_seconds",
        default=0.0,
        min=0.0,
        help="Seconds each initialize_connection of this backend takes (test driver).",
    ),
]

#: What a file-backed volume holds: a few chunks' worth, so a backup writes real objects.
VOLUME_BYTES = 3 * 1024 * 1024


class SlowFakeDriver(FakeLoggingVolumeDriver):
    """FakeLoggingVolumeDriver whose create, extend and delete take time."""

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(slow_opts)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "fake"
        self.slow_op_seconds = float(self.configuration.safe_get("slow_op_seconds") or 0.0)
        self.capacity_gb = float(self.configuration.safe_get("fake_capacity_gb") or 0.0)
        volume_dir = self.configuration.safe_get("fake_volume_dir")
        self.volume_dir = Path(volume_dir) if volume_dir else None
        self.slow_attach_seconds = float(self.configuration.safe_get("slow_attach_seconds") or 0.0)
        LOG.info(
            "SlowFakeDriver built for backend %s: slow_op_seconds=%s (pid %d)",
            self.backend_name,
            self.slow_op_seconds,
            os.getpid(),
        )

    def _take_time(self) -> None:
        if self.slow_op_seconds:
            time.sleep(self.slow_op_seconds)

    def _volume_file(self, volume: Any) -> Path:
        assert self.volume_dir is not None
        return self.volume_dir / f"volume-{volume['id']}"

    def create_volume(self, volume):  # type: ignore[no-untyped-def]
        self._take_time()
        if self.volume_dir is not None:
            self.volume_dir.mkdir(parents=True, exist_ok=True)
            # Not zeros: the backup compresses what it reads.
            pattern = (str(volume["id"]).encode() * 64)[:4096]
            self._volume_file(volume).write_bytes(pattern * (VOLUME_BYTES // len(pattern)))
        return super().create_volume(volume)

    def extend_volume(self, volume, new_size):  # type: ignore[no-untyped-def]
        self._take_time()
        return super().extend_volume(volume, new_size)

    def delete_volume(self, volume):  # type: ignore[no-untyped-def]
        self._take_time()
        if self.volume_dir is not None:
            self._volume_file(volume).unlink(missing_ok=True)
        return super().delete_volume(volume)

    def _update_volume_stats(self) -> None:
        super()._update_volume_stats()
        if self.capacity_gb:
            for pool in self._stats["pools"]:
                pool.update(
                    total_capacity_gb=self.capacity_gb, free_capacity_gb=self.capacity_gb, reserved_percentage=0
                )

    def validate_connector(self, connector):  # type: ignore[no-untyped-def]
        if self.volume_dir is None:
            return super().validate_connector(connector)
        return None  # a local file needs no initiator

    def initialize_connection(self, volume, connector):  # type: ignore[no-untyped-def]
        if self.volume_dir is None:
            return super().initialize_connection(volume, connector)
        path = self._volume_file(volume)
        # The test's sign that an attach (a backup's, say) has begun.
        path.with_name(path.name + ".attaching").touch()
        if self.slow_attach_seconds:
            time.sleep(self.slow_attach_seconds)
        return {"driver_volume_type": "local", "data": {"device_path": str(path)}}
