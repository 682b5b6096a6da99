"""A drain gate around a cinder manager's RPC-callable methods.

:class:`RpcGate` shadows each public method of a cinder manager (the RPC
endpoint oslo.messaging dispatches to by name, and ``run_periodic_tasks``,
which the service's timer calls) with a copy tracked by a drain gate:
instance attributes, so the class, other services and every other process
are untouched.  It counts what is in flight, by method, so a drain that
does not finish can say what it waited for.

cinder-volume's workers use it to know when a retiring backend is quiet;
cinder-scheduler and cinder-backup also close it around an in-process
rebuild (:class:`GatedReinitializer`).
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..drain import DrainGate
from ..reinit import GroupChange

__all__ = ["GatedReinitializer", "RpcGate", "import_driver_class"]

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

#: What the service's own timer calls (not RPC): skipped by a retired worker.
_PERIODIC = frozenset({"run_periodic_tasks"})


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
        #: Calls in flight, by method name (outermost calls only).
        self.busy: collections.Counter[str] = collections.Counter()
        #: A drained worker waiting for its successor: the periodic tasks
        #: skip their turn (RPC cannot arrive, its servers are stopped).
        self.retired = False

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
        busy = self.busy
        name = getattr(func, "__name__", "operation")
        periodic = name in _PERIODIC

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            depth = getattr(local, "depth", 0)
            if depth:
                return func(*args, **kwargs)
            if periodic and self.retired:
                return None
            with gate.operation():
                local.depth = 1
                busy[name] += 1
                try:
                    return func(*args, **kwargs)
                finally:
                    busy[name] -= 1
                    if busy[name] <= 0:
                        del busy[name]
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
