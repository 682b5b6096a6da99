"""cinder-backup: rebuild the backup driver on reload, after draining running backups.

``BackupManager`` resolves ``backup_driver`` to a class once and checks the
driver once (``init_host``); each backup or restore then builds a driver
instance from that class, which reads its options (``backup_posix_path``,
``backup_compression_algorithm``, ...) at that moment.  A reload that
changes the driver or its options therefore drains the backup RPC calls
(running backups finish, new ones wait, or the cycle reports it cannot drain
in time), resolves and checks the driver with the new values
(``check_for_setup_error``), and only then swaps the class in.  Options read
once at start (workers, thread pool, polling intervals) are restart-only.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg

from ..config import registered_options
from ..diff import OptKey
from ..reinit import GroupChange
from .options import default_restart_only_except
from .rpcgate import GatedReinitializer, RpcGate, import_driver_class

__all__ = ["BackupDriverReinitializer", "restart_only_for_backup", "setup"]

LOG = logging.getLogger(__name__)

#: backup_* options read once at start, not by the driver.
_READ_ONCE = frozenset(
    {
        "backup_api_class",
        "backup_manager",
        "backup_native_threads_pool_size",
        "backup_workers",
        "backup_max_operations",
        "backup_driver_init_check_interval",
        "backup_driver_stats_polling_interval",
        "backup_service_inithost_offload",
    }
)


def reinit_options(conf: cfg.ConfigOpts) -> frozenset[str]:
    return frozenset(
        reg.opt.dest
        for reg in registered_options(conf)
        if reg.group == "DEFAULT" and reg.opt.dest.startswith("backup_") and reg.opt.dest not in _READ_ONCE
    )


def restart_only_for_backup(conf: cfg.ConfigOpts, common: frozenset[OptKey]) -> frozenset[OptKey]:
    """Every immutable [DEFAULT] option but the backup driver's."""
    return default_restart_only_except(conf, common, reinit_options(conf))


class BackupDriverReinitializer(GatedReinitializer):
    def _rebuild(self, change: GroupChange) -> None:
        from cinder import context
        from cinder.backup import manager as backup_manager

        manager = self.manager
        name = self.conf.backup_driver
        name = backup_manager.MAPPING.get(name, name)
        ctxt = context.get_admin_context()
        # Build and check, as init_host's _setup_backup_driver does...
        driver_class = import_driver_class(name)
        driver_class(context=ctxt).check_for_setup_error()
        # ...then swap: every later backup/restore builds from the new class.
        manager.driver_name = name
        manager.service = driver_class
        manager.is_initialized = True
        manager.publish_service_capabilities(ctxt)
        LOG.info("reload: backup driver re-initialised (changed: %s): %s", ", ".join(change.options), name)


def setup(engine: Any, service: Any) -> None:
    manager = service.manager
    rpc_gate = RpcGate(engine.gates.scope("backup"))
    methods = rpc_gate.wrap(manager)
    engine.reinitializers.register("DEFAULT", BackupDriverReinitializer(manager, engine.conf, rpc_gate), scope="backup")
    LOG.info("reload: backup: %d RPC methods drained on reload, driver re-initialised on change", len(methods))
