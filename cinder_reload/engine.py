"""The reload engine: SIGHUP -> RELOADING=1 -> cycle -> READY=1 + STATUS=.

Usage from a service::

    engine = ReloadEngine("cinder-volume", CONF)
    engine.reinitializers.register("lvm-1", rebuild_lvm_1)
    with engine.signals():              # main thread: handlers recorded, restored on exit
        engine.start()                  # the loop, in one dedicated (green) thread
        ...serve, wrapping work in engine.gates.scope("lvm-1").operation()...
        engine.ready()                  # READY=1; a SIGHUP received earlier runs now
        ...
        engine.stop()

or ``engine.run()`` to drive the loop from the calling thread.

The signal handler only records (see signals.py); everything else happens in
the loop: one cycle at a time, SIGHUPs that arrive during a cycle merged into
exactly one follow-up cycle, SIGHUPs before ``ready()`` kept until then.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oslo_config import cfg

from .apply import Overrides
from .config import CandidateLoader, ConfigProblem, option_count, registered_options, secret_values
from .cycle import CycleResult, ReloadCycle
from .diff import OptKey, mask_text
from .drain import DrainGates
from .events import EventSink, LoggingEvents, emit_all
from .masking import SecretLogFilter, SecretNames, secret_names, secret_values_in_parsed
from .notify import SystemdNotifier, monotonic_usec
from .phases import Phase, PhaseMachine
from .preview import running_document
from .reinit import ReinitRegistry
from .report import build_report, failure_reason, status_line
from .signals import SignalInbox
from .state import runtime_dir, state_path, write_state
from .workers import Workers

if TYPE_CHECKING:
    from .state import StateDocument

__all__ = ["ReloadEngine"]

LOG = logging.getLogger(__name__)


#: How long after a reload's READY=1 the loop records the running
#: configuration: enough for `signal --wait` to read the state file and exit
#: and for the manager to finish its reload job (~20 ms here).
RUNNING_RECORD_DELAY = 0.1


def _utc_now(wall_clock: Callable[[], float]) -> str:
    return datetime.datetime.fromtimestamp(wall_clock(), datetime.UTC).isoformat(timespec="milliseconds")


class ReloadEngine:
    """Runs reload cycles for one service process."""

    def __init__(
        self,
        service: str,
        conf: cfg.ConfigOpts,
        *,
        gates: DrainGates | None = None,
        reinitializers: ReinitRegistry | None = None,
        notifier: SystemdNotifier | None = None,
        events: Sequence[EventSink] = (),
        state_dir: str | os.PathLike[str] | None = None,
        drain_timeout: float = 60.0,
        restart_only: Collection[OptKey] = (),
        restart_reasons: Mapping[OptKey, str] | None = None,
        handle_sigterm: bool = False,
        slow_drain_after: float = 3.0,
        event_prefix: str | None = None,
        workers: Workers | None = None,
        worker_timeout: float | None = None,
        ignored_groups: Collection[str] = (),
        candidate_checks: Sequence[Callable[[cfg.ConfigOpts], Sequence[ConfigProblem]]] = (),
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.conf = conf
        self.gates = gates if gates is not None else DrainGates(clock)
        self.reinitializers = reinitializers if reinitializers is not None else ReinitRegistry()
        self.notifier = notifier if notifier is not None else SystemdNotifier()
        self.events: list[EventSink] = [LoggingEvents(), *events]
        self.state_file: Path = state_path(service, runtime_dir(override=state_dir))
        self.drain_timeout = drain_timeout
        self.restart_only = frozenset(restart_only)
        #: Why each restart-only option needs a restart, for the operator.
        self.restart_reasons = dict(restart_reasons or {})
        self.slow_drain_after = slow_drain_after
        self.event_prefix = event_prefix or service
        #: A main process's workers: after this process's own cycle succeeded
        #: (the files are valid), each worker runs its cycle and the report
        #: sums them up.  See workers.py.
        self.workers = workers
        self.worker_timeout = worker_timeout if worker_timeout is not None else drain_timeout + 60.0
        self.ignored_groups = frozenset(ignored_groups)
        self.candidate_checks = tuple(candidate_checks)
        self._clock = clock
        self._wall_clock = wall_clock
        self.inbox = SignalInbox((signal.SIGHUP, signal.SIGTERM) if handle_sigterm else (signal.SIGHUP,))
        self.machine = PhaseMachine()
        self.overrides = Overrides(conf)
        #: Validation's scratch object, built once for the life of the process.
        self.loader = CandidateLoader(conf)
        self._secrets_cache: tuple[tuple[Any, int], tuple[str, ...]] | None = None
        self._names_cache: tuple[int, SecretNames] | None = None
        self.generation = 0
        self.last_report: StateDocument | None = None
        self._reload_pending = False
        self._stop_requested = False
        self._lock = threading.Lock()  # guards phase changes between ready()/stop() and the loop
        self._thread: threading.Thread | None = None
        self._current: dict[str, Any] | None = None
        #: The loop runs (run()): the running configuration is recorded by it, after a cycle.
        self._looping = False
        #: CLOCK_MONOTONIC when the loop records the running configuration next; None: recorded.
        self._running_due: float | None = None

    # -- public controls -------------------------------------------------------
    @contextmanager
    def signals(self) -> Iterator[SignalInbox]:
        """Install the signal handlers for the duration of the block."""
        with self.inbox:
            yield self.inbox

    @property
    def phase(self) -> Phase:
        return self.machine.phase

    def ready(self, status: str = "Ready", workers: list[dict[str, Any]] | None = None) -> None:
        """The service is up: send READY=1 and run any SIGHUP that arrived earlier.

        ``workers``: a pre-fork service's worker processes as started, for
        the state file (``status`` and ``signal`` show them).
        """
        with self._lock:
            if self.machine.phase is not Phase.STARTING:
                return
            self.machine.advance(Phase.IDLE)
        self._write(
            {
                "service": self.service,
                "pid": os.getpid(),
                "generation": 0,
                "result": "ok",
                "message": status,
                "started_at": None,
                "finished_at": _utc_now(self._wall_clock),
                "started_monotonic": None,
                "changed": [],
                "reinitialized": [],
                "pending_restart": [],
                "problems": [],
                "phase": "idle",
                "in_progress": None,
                "waits": self.gates.wait_stats(),
                "workers": workers or [],
            }
        )
        self._write_running()
        self.notifier.ready(status)
        LOG.info("%s ready (pid %d); SIGHUP reloads %s", self.service, os.getpid(), self._files_label())
        self.inbox.wake()

    def request_reload(self) -> None:
        """Ask for a cycle, as a SIGHUP would (any thread)."""
        self.inbox.handler(signal.SIGHUP)

    def stop(self) -> None:
        """Ask the loop to stop (any thread); a running cycle is aborted at its next step."""
        self._stop_requested = True
        self.inbox.wake()

    def start(self) -> threading.Thread:
        """Run the loop in one dedicated thread (a greenthread under eventlet)."""
        if self._thread is not None:
            raise RuntimeError("engine already started")
        self._thread = threading.Thread(target=self.run, name=f"{self.service}-reload", daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """The loop: wait for a signal, act on it, until stopped."""
        with self._masked_logs():
            self._loop()

    @contextmanager
    def _masked_logs(self) -> Iterator[None]:
        """While the loop runs, this package's log records carry no secret (masking.SecretLogFilter)."""
        log_filter = SecretLogFilter(self._secret_values)
        names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "cinder_reload"]
        loggers = [logging.getLogger(name) for name in sorted(names)]
        for logger in loggers:
            logger.addFilter(log_filter)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeFilter(log_filter)

    def _loop(self) -> None:
        self._looping = True
        try:
            while True:
                due = self._running_due
                self.inbox.wait(None if due is None else max(0.0, due - time.monotonic()))
                for signum in self.inbox.take():
                    if signum == signal.SIGHUP:
                        self._reload_pending = True
                    elif signum == signal.SIGTERM:
                        self._stop_requested = True
                if self._stop_requested:
                    self._shutdown()
                    return
                if self._reload_pending and self.machine.phase is Phase.IDLE:
                    self._reload_pending = False
                    self.run_cycle()
                elif self._running_due is not None and time.monotonic() >= self._running_due:
                    self._running_due = None
                    self._write_running()
        finally:
            self._looping = False

    # -- one cycle -------------------------------------------------------------
    def run_cycle(self) -> StateDocument:
        """Run one cycle now, in this thread; return the state document."""
        if self.machine.phase is not Phase.IDLE:
            # Before ready() the service has nothing to reconfigure yet (the
            # loop keeps the request for later); during a cycle or a stop,
            # a second cycle would interleave with it.
            raise RuntimeError(f"cannot reload while {self.machine.phase.value}")
        generation = self.generation + 1
        started = self._clock()
        started_monotonic = monotonic_usec() / 1e6
        started_at = _utc_now(self._wall_clock)
        self.notifier.reloading(f"Reloading configuration (reload #{generation})")
        self._current = {
            "generation": generation,
            "started_at": started_at,
            "started_monotonic": started_monotonic,
            "phase": Phase.VALIDATING.value,
        }
        # The state file first: `signal --wait` takes this write as the sign
        # that its SIGHUP arrived (waiter.ACK_TIMEOUT), and a notification
        # bus that is slow to take the start event must not delay it.
        self._write_progress()
        LOG.info("reload #%d started (SIGHUP): re-reading %s", generation, self._files_label())
        emit_all(
            self.events,
            f"{self.event_prefix}.reload.start",
            {"service": self.service, "pid": os.getpid(), "generation": generation},
        )
        cycle = ReloadCycle(
            conf=self.conf,
            gates=self.gates,
            registry=self.reinitializers,
            overrides=self.overrides,
            drain_timeout=self.drain_timeout,
            restart_only=self.restart_only,
            enter=self._enter,
            should_abort=self._stopping,
            on_slow_drain=self._on_slow_drain,
            slow_drain_after=self.slow_drain_after,
            workers=self.workers,
            generation=generation,
            worker_timeout=self.worker_timeout,
            ignored=self.ignored_groups,
            loader=self.loader,
            candidate_checks=self.candidate_checks,
        )
        try:
            result = cycle.run()
        except Exception as exc:  # a bug must not take the service down with it
            LOG.exception("reload #%d: internal error", generation)
            result = CycleResult(error=f"internal error: {type(exc).__name__}: {exc}")
        self.generation = generation
        self._current = None
        secrets = self._secret_values()
        report = build_report(
            service=self.service,
            pid=os.getpid(),
            generation=generation,
            result=result,
            started_at=started_at,
            finished_at=_utc_now(self._wall_clock),
            started_monotonic=started_monotonic,
            duration=self._clock() - started,
            secrets=secrets,
            extra={"waits": self.gates.wait_stats()},
            restart_reasons=self.restart_reasons,
        )
        self.last_report = report
        with self._lock:
            self.machine.advance(Phase.IDLE)
        status = mask_text(status_line(result, generation), secrets)
        # Logged before the state file is written: `signal --wait` returns
        # (and `systemctl reload` with it) as soon as that file lands, and the
        # operator who then reads the journal must find the outcome there.
        if report["result"] == "ok":
            LOG.info("reload #%d ok in %.3fs: %s", generation, report["duration_s"], status)
        else:
            LOG.error(
                "reload #%d failed in %.3fs, still serving on the previous configuration: %s",
                generation,
                report["duration_s"],
                mask_text(failure_reason(result) or "", secrets),
            )
        unwritten = self._write(report)
        if unwritten:
            # Where else would the operator learn it: `signal --wait` and
            # `status` read that file.
            status = f"{status} (state file not written: {unwritten})"
        self.notifier.ready(status)
        # Every option of the service, for `check --running`: not part of the
        # reload anyone waits for.  Run by the loop a moment later, once
        # `signal --wait` and the manager finished on these two CPUs (the
        # document of a 50-backend cinder-volume takes ~10 ms to build);
        # `check --running` waits for it (cli.py).  Called from elsewhere
        # (tests, cotyledon's main loop), the cycle writes it now.
        if self._looping:
            self._running_due = time.monotonic() + RUNNING_RECORD_DELAY
        else:
            self._write_running()
        suffix = "end" if report["result"] == "ok" else "error"
        emit_all(self.events, f"{self.event_prefix}.reload.{suffix}", report)
        return report

    # -- internals -------------------------------------------------------------
    def _enter(self, phase: Phase) -> None:
        with self._lock:
            self.machine.advance(phase)
        # The cycle's first phase (validating) was written when it began.
        if self._current is not None and self._current["phase"] != phase.value:
            self._current["phase"] = phase.value
            self._write_progress()

    def _write_progress(self) -> None:
        """The last report, with the running cycle's progress (``in_progress``, ``phase``)."""
        assert self._current is not None
        base = dict(self.last_report or {"service": self.service, "pid": os.getpid(), "generation": 0})
        self._write({**base, "phase": self._current["phase"], "in_progress": dict(self._current)})

    def _stopping(self) -> bool:
        return self._stop_requested or self.inbox.pending(signal.SIGTERM)

    def _on_slow_drain(self, elapsed: float, in_flight: dict[str, int]) -> None:
        # Ask systemd for more time before TimeoutStartSec= (which bounds a
        # reload) expires: twice the report interval, so one late report is
        # not fatal, never more than the drain can still take.
        remaining = max(self.drain_timeout - elapsed, 0.0)
        self.notifier.extend_timeout(min(2 * self.slow_drain_after, remaining) + 5.0)
        busy = ", ".join(f"{scope}: {n}" for scope, n in sorted(in_flight.items()) if n)
        self.notifier.status(f"Reloading: draining for {elapsed:.0f}s ({busy} in flight)")
        LOG.warning("reload: still draining after %.1fs (%s in flight)", elapsed, busy)

    def _shutdown(self) -> None:
        with self._lock:
            if self.machine.phase is not Phase.STOPPING:
                self.machine.advance(Phase.STOPPING)
        self.notifier.stopping("Stopping")
        LOG.info("%s stopping", self.service)
        if self.last_report is not None:
            self._write({**self.last_report, "phase": Phase.STOPPING.value})
        with self._lock:
            self.machine.advance(Phase.STOPPED)

    def _write(self, document: Mapping[str, Any]) -> str | None:
        """Write the state file; return why it could not be written, or None."""
        try:
            write_state(self.state_file, document)
        except OSError as exc:
            LOG.warning("could not write reload state file %s: %s", self.state_file, exc)
            return f"{self.state_file}: {exc.strerror or exc}"
        return None

    def _write_running(self) -> None:
        """What ``check --running`` compares the files with (preview.py)."""
        worker_groups = frozenset(self.workers.groups()) if self.workers is not None else frozenset()
        try:
            document = running_document(
                self.conf,
                service=self.service,
                pid=os.getpid(),
                reinit_groups=self.reinitializers.groups() | worker_groups,
                worker_groups=worker_groups,
                shared_groups=frozenset(self.workers.shared_groups()) if self.workers is not None else frozenset(),
                restart_only=self.restart_only,
                ignored=self.ignored_groups,
                owned=frozenset(self.workers.owned_options()) if self.workers is not None else frozenset(),
                names=self._secret_names(),
            )
            # `check --running` waits for the record of the reload the state
            # file reports; it is the only reader, so compact (C encoder, 7x faster).
            document["generation"] = self.generation
            write_state(self.state_file.with_name(f"{self.service}.running.json"), document, compact=True)
        except (OSError, cfg.Error) as exc:  # a preview is a convenience: never a reason to fail a reload
            LOG.warning("could not record the running configuration for `check --running`: %s", exc)

    def _secret_values(self) -> list[str]:
        """Every secret this process could quote: running values and what the files say.

        The files' values (parsed by oslo.config, so after a reload the new
        ones) cover a secret pinned to its old value pending a restart, a
        multi-line one, and a driver's password option that only its worker
        registers (masking.SecretNames falls back to the key's name there).
        """
        # Called for every log record of this package: computed again only
        # when the files were installed again or options were registered (a
        # 50-backend cinder-volume has ~4,000 options to look through).
        namespace = getattr(self.conf, "_namespace", None)
        # The namespace object itself, not its id(): a freed one's id can be reused.
        key = (namespace, option_count(self.conf))
        cached = self._secrets_cache
        if cached is not None and cached[0][0] is namespace and cached[0][1] == key[1]:
            return list(cached[1])
        values = secret_values(self.conf)
        names = self._secret_names()
        parsed = getattr(namespace, "_parsed", None) or []
        values.extend(secret_values_in_parsed(parsed, names))
        self._secrets_cache = (key, tuple(values))
        return values

    def _secret_names(self) -> SecretNames:
        """The registered options' names, split by ``secret=``: new only when options were registered."""
        count = option_count(self.conf)
        cached = self._names_cache
        if cached is None or cached[0] != count:
            cached = self._names_cache = (count, secret_names(reg.opt for reg in registered_options(self.conf)))
        return cached[1]

    def _files_label(self) -> str:
        try:
            files = list(self.conf.config_file or [])
        except cfg.Error:
            files = []
        return ", ".join(files) or "the configuration"
