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
"""

from __future__ import annotations

import logging
import os
import time

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
]


class SlowFakeDriver(FakeLoggingVolumeDriver):
    """FakeLoggingVolumeDriver whose create, extend and delete take time."""

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(slow_opts)
        self.backend_name = self.configuration.safe_get("volume_backend_name") or "fake"
        self.slow_op_seconds = float(self.configuration.safe_get("slow_op_seconds") or 0.0)
        LOG.info(
            "SlowFakeDriver built for backend %s: slow_op_seconds=%s (pid %d)",
            self.backend_name,
            self.slow_op_seconds,
            os.getpid(),
        )

    def _take_time(self) -> None:
        if self.slow_op_seconds:
            time.sleep(self.slow_op_seconds)

    def create_volume(self, volume):  # type: ignore[no-untyped-def]
        self._take_time()
        return super().create_volume(volume)

    def extend_volume(self, volume, new_size):  # type: ignore[no-untyped-def]
        self._take_time()
        return super().extend_volume(volume, new_size)

    def delete_volume(self, volume):  # type: ignore[no-untyped-def]
        self._take_time()
        return super().delete_volume(volume)
