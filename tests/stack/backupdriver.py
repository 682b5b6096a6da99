"""cinder's POSIX backup driver, telling which class wrote a backup.

``TaggedPosixBackupDriver`` writes exactly as cinder's
``PosixBackupDriver`` does, one directory level down, under ``tagged/``
in ``backup_posix_path``.  A test that switches ``backup_driver`` to it
with a reload reads from where the next backup's objects are whether the
reload really swapped the driver class in (cinder-backup resolves
``backup_driver`` once, when its manager is built).

cinder-backup imports it as ``stack.backupdriver.TaggedPosixBackupDriver``
with the repository's ``tests/`` directory on ``PYTHONPATH``, as the slow
volume driver (slowdriver.py).
"""

from __future__ import annotations

from typing import Any

from cinder.backup.drivers.posix import PosixBackupDriver

#: The directory, under backup_posix_path, that holds this class's backups.
TAG = "tagged"


class TaggedPosixBackupDriver(PosixBackupDriver):  # type: ignore[misc]
    def update_container_name(self, backup: Any, container: Any) -> Any:
        name = super().update_container_name(backup, container)
        return name if str(name).startswith(f"{TAG}/") else f"{TAG}/{name}"
