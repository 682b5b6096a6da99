"""The reload under oslo.service's threading backend (cotyledon's ServiceManager)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Collection
from typing import Any

from ..diff import OptKey
from ..engine import ReloadEngine
from ..workers import WorkerPlan, WorkerResult
from .integration import Integration

__all__ = ["CotyledonRestart", "ThreadingReload"]

LOG = logging.getLogger(__name__)


class CotyledonRestart:
    """The workers' part of a reload under cotyledon: it restarts them all."""

    def __init__(self, dispatch: Callable[[int], None], groups: Collection[str]) -> None:
        self._dispatch = dispatch
        self._groups = frozenset(groups)

    def groups(self) -> Collection[str]:
        return self._groups

    def shared_groups(self) -> Collection[str]:
        return ()

    def owned_options(self) -> Collection[OptKey]:
        return ()

    def required_groups(self) -> Collection[str]:
        return self._groups

    def candidate_groups(self, candidate: Any) -> Collection[str]:
        return self._groups

    def reload(self, plan: WorkerPlan) -> list[WorkerResult]:
        generation = plan.generation
        LOG.info("reload #%d: valid configuration; cotyledon restarts the workers to apply it", generation)
        self._dispatch(signal.SIGHUP)
        return [
            WorkerResult(
                "workers",
                None,
                True,
                "restarted by cotyledon (threading backend): every worker starts on the new configuration",
                reinitialized=tuple(sorted(self._groups)),
            )
        ]


class ThreadingReload:
    """The reload under oslo.service's threading backend (cotyledon's ServiceManager).

    cotyledon owns the main process's signals through ``signal.set_wakeup_fd``
    and dispatches them from its main loop (``_on_signal_received``); on
    SIGHUP it mutates the configuration (oslo_config_glue) and restarts
    every worker.  Its workers run their service in a thread, where no
    signal can be caught.  So here the engine runs in the main loop: SIGHUP
    first runs a cycle in the main process (RELOADING=1, validation, the
    main process's own changes), and only a valid configuration goes on to
    cotyledon's own reload, which restarts the workers with it.  A broken
    file ends the cycle with nothing else happening; READY=1 reports the
    outcome either way.  Uses one private name of cotyledon,
    ``_on_signal_received``, its documented-in-code dispatch point.
    """

    def __init__(self, engine: ReloadEngine, manager: Any, integration: Integration) -> None:
        self.engine = engine
        self.manager = manager
        self.integration = integration

    def wait(self, run: Callable[[], Any]) -> Any:
        self.engine.events.extend(self.integration.events())
        dispatch = self.manager._on_signal_received
        self.engine.workers = CotyledonRestart(dispatch, self.integration.all_worker_groups())

        def on_signal(sig: int) -> None:
            if sig == signal.SIGHUP:
                # In cotyledon's main loop, the main thread: the cycle runs
                # here, and CotyledonRestart hands a valid file on to cotyledon.
                self.engine.run_cycle()
            else:
                dispatch(sig)

        self.manager._on_signal_received = on_signal
        # cotyledon starts its workers inside run(); READY=1 as early as
        # cotyledon's own notify would have sent it (NOTIFY_SOCKET is ours).
        self.engine.ready("Serving (threading backend: workers restart on reload)")
        try:
            return run()
        finally:
            self.engine.stop()
