"""cinder-scheduler: rebuild the host manager's config-dependent caches on reload.

``HostManager.__init__`` resolves ``scheduler_default_filters`` into filter
classes and ``scheduler_weight_handler`` into a handler and its weigher
classes once; ``FilterScheduler`` reads ``scheduler_max_attempts`` once.  An
edit of any of them is re-initialised here: the new filters, handler and
weighers are resolved first (an unknown name fails the reload and the old
ones stay), then swapped in while the scheduler's RPC calls are drained.
The weighers' multipliers (``capacity_weight_multiplier``, ...) are read
from the configuration at every decision: nothing caches them, so the
re-initialisation is what releases them from the pin every immutable
change gets until its group is rebuilt.  The host manager's capability
state (what each backend last reported) is kept: rebuilding it would blind
the scheduler until every backend reports again.  Every other immutable
[DEFAULT] option is restart-only.

The scheduler is one process (oslo.service's ServiceLauncher): there is no
worker to replace, so the rebuild is in place, and
tests/stack/test_scheduler_backup.py proves it by where the next volume
lands.
"""

from __future__ import annotations

import logging
from typing import Any

from oslo_config import cfg

from ..diff import OptKey
from ..reinit import GroupChange
from .options import default_restart_only_except
from .rpcgate import GatedReinitializer, RpcGate

__all__ = ["REINIT_OPTIONS", "SchedulerReinitializer", "restart_only_for_scheduler", "setup"]

LOG = logging.getLogger(__name__)

#: Resolved once by the host manager or the filter scheduler: rebuilt here.
CACHED_OPTIONS = frozenset({"scheduler_default_filters", "scheduler_weight_handler", "scheduler_max_attempts"})

#: Read by the host manager or a weigher at every decision (cinder.scheduler.
#: host_manager, weights.capacity, weights.volume_number): in effect once unpinned.
PER_DECISION_OPTIONS = frozenset(
    {
        "scheduler_default_weighers",
        "capacity_weight_multiplier",
        "allocated_capacity_weight_multiplier",
        "volume_number_multiplier",
    }
)

REINIT_OPTIONS = CACHED_OPTIONS | PER_DECISION_OPTIONS


def restart_only_for_scheduler(conf: cfg.ConfigOpts, common: frozenset[OptKey]) -> frozenset[OptKey]:
    """Every immutable [DEFAULT] option but the ones re-initialised here."""
    return default_restart_only_except(conf, common, REINIT_OPTIONS)


class SchedulerReinitializer(GatedReinitializer):
    def _rebuild(self, change: GroupChange) -> None:
        from oslo_utils import importutils

        driver = self.manager.driver
        host_manager = driver.host_manager
        conf = self.conf
        # Build: resolve every name first; any unknown one raises here.
        filters = host_manager._choose_backend_filters(conf.scheduler_default_filters)
        handler = importutils.import_object(conf.scheduler_weight_handler, "cinder.scheduler.weights")
        weight_classes = handler.get_all_classes()
        known = {cls.__name__ for cls in weight_classes}
        unknown = [name for name in conf.scheduler_default_weighers if name not in known]
        if unknown:
            raise ValueError(f"scheduler weigher(s) not found: {', '.join(unknown)}")
        max_attempts = conf.scheduler_max_attempts
        if max_attempts < 1:
            raise ValueError("scheduler_max_attempts must be >= 1")
        # Swap.
        host_manager.enabled_filters = filters
        host_manager.weight_handler = handler
        host_manager.weight_classes = weight_classes
        if hasattr(driver, "max_attempts"):
            driver.max_attempts = max_attempts
        LOG.info(
            "reload: scheduler caches rebuilt (changed: %s): filters=%s weighers=%s max_attempts=%s "
            "capacity_weight_multiplier=%s",
            ", ".join(change.options),
            [f.__name__ for f in filters],
            list(conf.scheduler_default_weighers),
            max_attempts,
            conf.capacity_weight_multiplier,
        )


def setup(engine: Any, service: Any) -> None:
    """Gate the scheduler's RPC methods and register the [DEFAULT] re-initialiser."""
    manager = service.manager
    rpc_gate = RpcGate(engine.gates.scope("scheduler"))
    methods = rpc_gate.wrap(manager)
    engine.reinitializers.register("DEFAULT", SchedulerReinitializer(manager, engine.conf, rpc_gate), scope="scheduler")
    LOG.info(
        "reload: scheduler: %d RPC methods drained on reload; %s re-initialised on change",
        len(methods),
        ", ".join(sorted(REINIT_OPTIONS)),
    )
