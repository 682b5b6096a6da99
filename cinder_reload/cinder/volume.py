"""cinder-volume, one backend per worker: drain its RPC calls, rebuild its driver.

Runs inside the worker process of one backend.  Two hooks into cinder's
public objects, nothing patched in cinder's code:

* :class:`RpcGate` shadows each public method of the backend's
  ``VolumeManager`` (the RPC endpoint oslo.messaging dispatches to by name,
  and ``run_periodic_tasks``, which the service's timer calls) with a copy
  tracked by the backend's drain gate.  Instance attributes: the class, the
  other backends and every other process are untouched.
* :class:`DriverReinitializer` builds a new driver from the backend's new
  configuration and brings it up the way ``VolumeManager.__init__`` and
  ``init_host`` bring one up (``do_setup``, ``check_for_setup_error``,
  capabilities, ``set_initialized``, stats), and only then swaps it in.  If
  any step raises, the old driver stays and the engine puts the backend's
  old option values back.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..drain import DrainGate
from ..reinit import GroupChange

__all__ = ["DriverReinitializer", "GatedReinitializer", "RpcGate", "import_driver_class"]

LOG = logging.getLogger(__name__)

#: Manager methods that are not operations on the backend: lifecycle hooks the
#: service calls itself, and the reload path's own entry points.
_NOT_OPERATIONS = frozenset(
    {
        "init_host",
        "init_host_with_rpc",
        "reset",
        "is_working",
        "add_periodic_task",
        "periodic_tasks",
    }
)


class RpcGate:
    """A backend's drain gate around its manager's RPC-callable methods.

    Re-entrant per (green) thread: a tracked method that calls another one
    (``_do_cleanup`` -> ``delete_volume``, ``publish_service_capabilities``
    -> ``update_service_capabilities``) is one operation, and
    :meth:`bypass` lets the re-initialiser, which runs while the gate is
    closed, call them without waiting for itself.
    """

    def __init__(self, gate: DrainGate) -> None:
        self.gate = gate
        self._local = threading.local()  # green under eventlet's monkey-patching
        self.methods: list[str] = []

    def wrap(self, manager: Any) -> list[str]:
        """Shadow every RPC-callable method of ``manager`` with a tracked copy."""
        for name, member in inspect.getmembers(type(manager)):
            if name.startswith("_") or name in _NOT_OPERATIONS:
                continue
            static = inspect.getattr_static(type(manager), name)
            if isinstance(static, (staticmethod, classmethod, property)) or not inspect.isfunction(member):
                continue
            setattr(manager, name, self._tracked(getattr(manager, name)))
            self.methods.append(name)
        return self.methods

    @contextmanager
    def bypass(self) -> Iterator[None]:
        """Calls from this (green) thread pass the gate, closed or not."""
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth

    def _tracked(self, func: Callable[..., Any]) -> Callable[..., Any]:
        local = self._local
        gate = self.gate

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(local, "depth", 0)
            if depth:
                return func(*args, **kwargs)
            with gate.operation():
                local.depth = 1
                try:
                    return func(*args, **kwargs)
                finally:
                    local.depth = 0

        return call


class GatedReinitializer:
    """A re-initialiser whose rebuild runs inside its own drained RPC gate.

    The engine drains the gate before calling; the rebuild itself calls
    methods that the gate tracks, so it bypasses the gate it drained.
    """

    def __init__(self, manager: Any, conf: Any, rpc_gate: RpcGate) -> None:
        self.manager = manager
        self.conf = conf
        self.rpc_gate = rpc_gate

    def __call__(self, change: GroupChange) -> None:
        with self.rpc_gate.bypass():
            self._rebuild(change)

    def _rebuild(self, change: GroupChange) -> None:
        raise NotImplementedError


def import_driver_class(path: str) -> Any:
    """Import a driver class; an ImportError becomes a one-line reason."""
    from oslo_utils import importutils

    try:
        return importutils.import_class(path)
    except ImportError as exc:
        # oslo.utils puts the whole traceback in the message: keep its first line.
        raise RuntimeError(f"cannot load driver {path}: {str(exc).split(' ([', 1)[0]}") from None


class DriverReinitializer:
    """Re-initialiser for one backend's section: a new driver, then the swap."""

    def __init__(self, manager: Any, rpc_gate: RpcGate) -> None:
        self.manager = manager
        self.rpc_gate = rpc_gate
        self.generation = 0

    def __call__(self, change: GroupChange) -> None:
        with self.rpc_gate.bypass():
            self._rebuild(change)

    def _rebuild(self, change: GroupChange) -> None:
        from cinder import context
        from cinder.volume import manager as volume_manager
        from oslo_serialization import jsonutils

        manager = self.manager
        backend = manager.configuration.config_group
        old = manager.driver
        driver_path = manager.configuration.volume_driver
        driver_path = volume_manager.MAPPING.get(driver_path, driver_path)
        ctxt = context.get_admin_context()
        LOG.info(
            "reload: re-initialising the driver of backend %s (changed: %s): building %s",
            backend,
            ", ".join(change.options),
            driver_path,
        )
        try:
            active_backend_id = manager._get_service().active_backend_id
        except Exception:  # the service row is gone: as VolumeManager.__init__ does, assume the default
            active_backend_id = None
        # Build: everything VolumeManager.__init__ does for a driver...
        driver_class = import_driver_class(driver_path)
        new = driver_class(
            configuration=manager.configuration,
            host=manager.host,
            cluster_name=manager.cluster,
            is_vol_db_empty=False,
            active_backend_id=active_backend_id,
        )
        if manager.cluster and not new.SUPPORTS_ACTIVE_ACTIVE:
            raise RuntimeError(f"driver {driver_path} does not support active-active (cluster {manager.cluster})")
        extra_capabilities = jsonutils.loads(new.configuration.extra_capabilities or "{}")
        # ...and what init_host / init_host_with_rpc do to bring it up.
        LOG.info("Starting volume driver %s (%s)", new.__class__.__name__, new.get_version())
        new.do_setup(ctxt)
        new.check_for_setup_error()
        new.init_capabilities()
        new.set_throttle()
        new.set_initialized()
        stats = new.get_volume_stats(refresh=True)
        # Swap: from here on every operation (the gate reopens after us) uses it.
        manager.driver = new
        manager.extra_capabilities = extra_capabilities
        self.generation += 1
        zone = new.configuration.safe_get("backend_availability_zone")
        if zone:
            manager.availability_zone = zone
        # Publish the new capabilities to the schedulers, as init_host does.
        manager.publish_service_capabilities(ctxt)
        pools = [p.get("pool_name") for p in (stats or {}).get("pools", [])]
        LOG.info(
            "reload: backend %s now served by a new %s (driver generation %d, was %s at 0x%x); "
            "volume_backend_name=%s, pools=%s",
            backend,
            new.__class__.__name__,
            self.generation,
            old.__class__.__name__,
            id(old),
            new.configuration.safe_get("volume_backend_name"),
            pools,
        )
