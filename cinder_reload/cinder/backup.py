"""cinder-backup: the backup driver's options take effect on reload, after running backups finish.

``BackupManager`` resolves ``backup_driver`` to a class once and checks the
driver once (``init_host``); each backup or restore then builds a driver
instance from that class, which reads its options (``backup_posix_path``,
``backup_compression_algorithm``, ...) at that moment.  Options read once
at start (the number of processes, thread pool, polling intervals) are
restart-only.  cinder runs the service one of two ways, and so does the
reload:

* ``backup_workers = 1`` (the default): one process (``serve()``), no
  worker to replace.  The reload drains the backup RPC calls (a running
  backup's ``continue_backup`` finishes, new ones wait, or the cycle reports
  that it cannot drain in time), resolves and checks the driver with the
  new values (``check_for_setup_error``) and only then swaps the class in
  (:class:`BackupDriverReinitializer`);
* ``backup_workers > 1``: N identical processes under oslo.service's
  ProcessLauncher.  They are replaced one after the other as cinder-volume's
  backends are (backends.py ``BackendWorkers._roll``): the old process stops
  consuming and drains its running backups, a new one comes up through
  cinder's own ``cinder.cmd.backup._launch_backup_process()`` with the new
  values, then the old one leaves.  The others keep consuming the host's
  queue meanwhile, so at most one process is paused.  A replacement gets a
  process number above ``backup_workers`` (launchers.py): cinder's process 1
  resets every unfinished backup of the host when it starts, which would
  break the backups the other processes are running.

tests/stack/test_scheduler_backup.py proves both by where the next backup
is written after ``backup_posix_path`` moved, and that a backup running
during the reload finishes before it returns.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg

from ..config import registered_options
from ..diff import DEFAULT_GROUP, OptKey
from ..reinit import GroupChange
from .options import default_restart_only_except, restart_only
from .rpcgate import GatedReinitializer, RpcGate, import_driver_class

__all__ = ["BackupDriverReinitializer", "prepare", "restart_only_for_backup", "setup"]

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


def shared_options(conf: cfg.ConfigOpts) -> frozenset[OptKey]:
    """The driver's options, as keys: what replacing every backup process applies."""
    return frozenset((DEFAULT_GROUP, name) for name in reinit_options(conf))


def prepare(integration: Any) -> None:
    """Once cinder parsed its configuration: what needs a restart, what the processes share."""
    integration.restart_only = restart_only_for_backup(integration.conf, restart_only("cinder-backup"))
    integration.shared_options = shared_options


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
