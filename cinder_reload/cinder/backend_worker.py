"""One cinder-volume backend's (or cinder-backup process's) worker, as the main process drives it.

cinder-backup with ``backup_workers > 1`` runs N identical processes; each
is driven exactly as a backend's worker is (backup.py says what differs).

Runs in the forked worker.  cinder brings the backend up itself
(``Service.start()``: ``init_host``, the RPC servers, ``init_host_with_rpc``,
the timers); this module only adds what the reload needs around it:

* **start**: the outcome goes to the main process over the control channel
  (channel.py): ``ready`` (with whether the driver initialised, and if not,
  the driver's own reason from cinder's log record) or ``failed``.  A worker
  the main process started *during a reload* must not consume the backend's
  queue with a driver that did not come up (every operation would fail with
  DriverNotInitialized): its ``init_host`` raises after cinder's own when
  the driver is not initialised, so ``Service.start()`` stops before the
  first RPC server exists.  At service start and on a crash respawn, cinder's
  own behaviour stands (it serves with an uninitialised driver).
* **apply**: mutable option values the main process validated, applied with
  ``set_override()`` and oslo.config's mutate hooks; then ``reset()`` (drop
  cached RPC version pins), as oslo.service's SIGHUP did.  No file is read.
* **retire**: stop consuming (the three RPC servers; messages wait in the
  broker), wait until nothing is in flight up to the drain timeout, then
  stay quiet (periodic tasks skip their turn) until the main process says
  ``exit`` (its successor is up: leave through cinder's own graceful stop,
  SIGTERM to itself, as oslo.service's child handler does it) or
  ``resume`` (the successor did not come up: consume again, on the
  configuration this worker always had).  A drain that does not finish
  restarts the RPC servers at once.

A stray SIGHUP is ignored here: a worker never reads the files.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from ..apply import run_mutate_hooks
from ..channel import Channel, ChannelClosed, Message
from ..diff import DEFAULT_GROUP, ChangeKind, OptionChange
from ..drain import DrainGate, DrainTimeout
from .logcapture import ErrorRecords, capturing_errors
from .rpcgate import RpcGate
from .services import WrappedService

__all__ = ["BackendService", "DriverDidNotStart", "drained", "not_drained"]

LOG = logging.getLogger(__name__)


class DriverDidNotStart(Exception):
    """A backend's driver did not initialise in a worker started by a reload."""


def drained(stopped_at: float, in_flight: int) -> Message:
    """The reply to ``retire`` when the worker drained: what the main process records (paused, drained_s)."""
    return {
        "ok": True,
        "stopped_at": stopped_at,
        "drained_s": round(time.monotonic() - stopped_at, 6),
        "in_flight": in_flight,
    }


def not_drained(stopped_at: float, reason: str) -> Message:
    """The reply to ``retire`` when the worker could not drain in time, with why."""
    return {"ok": False, "stopped_at": stopped_at, "reason": reason}


def _stop_consuming(server: Any, gate: DrainGate) -> int:
    """Stop one RPC server so that nothing it received is lost; the number rescued.

    oslo.messaging's rabbit driver acknowledges an RPC request *on receipt*
    (RpcAMQPListener.__call__), and ``stop()`` only ends the poll loop: the
    broker-side consumer stays, so a request delivered after that (the
    connection's heartbeat thread still reads the socket) is acknowledged,
    queued in the listener and never dispatched.  Seen here: 7 of 40 creates
    sent during a replacement stayed ``creating`` for ever, with the queue
    empty.  So right after ``stop()`` the listener's connection is closed
    (the broker keeps the rest in the queue for the next consumer), and what
    it had queued is dispatched in this worker, on its old configuration,
    counted by the drain gate from the moment it is rescued (the executor
    would start it later, after the drain could already have seen zero).
    """
    stopper = threading.Thread(target=server.stop, name="reload-rpc-stop", daemon=True)
    stopper.start()
    _wake_rabbit_listener(server, stopper)
    stopper.join()
    listener = getattr(server, "listener", None)
    if listener is None:
        return 0
    listener.cleanup()
    queued = getattr(getattr(listener, "_poll_style_listener", None), "incoming", None)
    if not queued:
        return 0
    rescued = list(queued)
    del queued[:]
    for message in rescued:
        operation = gate.operation()
        operation.__enter__()
        threading.Thread(target=_dispatch_rescued, args=(server, message, operation), daemon=True).start()
    LOG.warning("reload: %d request(s) received while stopping were dispatched here", len(rescued))
    return len(rescued)


def _dispatch_rescued(server: Any, message: Any, operation: Any) -> None:
    try:
        server._process_incoming([message])
    finally:
        operation.__exit__(None, None, None)


def _wake_rabbit_listener(server: Any, stopper: threading.Thread) -> None:
    """Make a stopping rabbit listener notice at once, not at its next poll timeout.

    The listener's poll loop checks its shutdown flag only between two
    ``drain_events(timeout)`` calls, and an idle listener's timeout grows to
    5 s (amqpdriver's ACK_REQUEUE_EVERY_SECONDS_MAX): a backend that had been
    idle for a minute stayed paused up to 5 s longer, seen here at 2 s.  Once
    the flag is set, a ``basic.cancel`` for each of the connection's
    consumers stops the broker's deliveries, and its ``cancel-ok`` is the
    frame that ends the waiting ``drain_events`` (py-amqp dispatches it to
    the channel's own handler).  The frame is sent without waiting for the
    reply here: the poll loop's thread is the connection's only reader.
    Anything not shaped like oslo.messaging's rabbit driver is left to its
    own ``stop()``.
    """
    listener = getattr(getattr(server, "listener", None), "_poll_style_listener", None)
    shutdown = getattr(listener, "_shutdown", None)
    connection = getattr(getattr(listener, "conn", None), "connection", None)
    consumers = getattr(connection, "_consumers", None)
    channel = getattr(connection, "channel", None)
    if shutdown is None or not consumers or channel is None or not hasattr(channel, "send_method"):
        return
    while stopper.is_alive() and not shutdown.is_set():
        time.sleep(0.001)
    if not stopper.is_alive():
        return
    try:
        from amqp import spec

        for tag in list(consumers.values()):
            channel.send_method(spec.Basic.Cancel, "sb", (str(tag), False))
    except Exception as exc:  # the slow path still works: the poll times out
        LOG.debug("reload: could not cancel the rabbit consumers early: %s", exc)


def _servers(service: Any) -> list[Any]:
    """The backend's RPC servers (topic, topic.host@backend, topic.cluster@backend)."""
    return [s for s in (service.rpcserver, service.backend_rpcserver, service.cluster_rpcserver) if s is not None]


def driver_initialised(manager: Any) -> bool:
    """Whether the manager's driver came up: cinder-volume's ``driver.initialized``,
    cinder-backup's ``is_initialized``."""
    driver = getattr(manager, "driver", None)
    if driver is not None:
        return bool(getattr(driver, "initialized", False))
    return bool(getattr(manager, "is_initialized", False))


class BackendWorker:
    """The reload's side of one backend's (or backup process's) worker process."""

    def __init__(self, service: Any, channel: Channel, *, strict: bool, name: str) -> None:
        self.service = service
        self.manager = service.manager
        self.backend = name
        self.channel = channel
        self.strict = strict
        self.gate = DrainGate(self.backend)
        self.rpc_gate = RpcGate(self.gate)
        self._errors = ErrorRecords()

    # -- start -----------------------------------------------------------------
    def start(self) -> None:
        self.rpc_gate.wrap(self.manager)
        if self.strict and getattr(self.manager, "driver", None) is not None:
            # cinder-volume's driver is set up inside init_host.  cinder-backup
            # checks its driver in a looping call that outlives init_host
            # (BackupManager.setup_backup_backend): nothing to wait for there;
            # a backup sent to a worker whose driver is not up fails as cinder's
            # own "backup service is down".
            self._require_initialised_driver()
        try:
            # cinder's "Failed to initialize driver." record, from whichever manager this is.
            with capturing_errors(type(self.manager).__module__, self._errors):
                self.service.start()
        except Exception as exc:
            self._start_failed(str(exc) if isinstance(exc, DriverDidNotStart) else f"{type(exc).__name__}: {exc}")
        initialised = driver_initialised(self.manager)
        self._report_ready(
            initialised, None if initialised else (self._errors.reason() or "the driver did not initialise")
        )

    def _start_failed(self, reason: str) -> None:
        """cinder's start raised: say why, wait until the main process stopped counting us, exit."""
        LOG.error("backend %s did not start: %s", self.backend, reason)
        self._send({"event": "failed", "pid": os.getpid(), "reason": reason})
        self._wait_for_exit_order()
        # Nothing consumed, nothing in flight: nothing to drain.
        os._exit(3)

    def _report_ready(self, initialised: bool, reason: str | None) -> None:
        """The service is up: tell the main process, then answer its requests."""
        self._send(
            {"event": "ready", "pid": os.getpid(), "initialized": initialised, "reason": reason, "at": time.monotonic()}
        )
        threading.Thread(target=self.serve, name=f"reload-control-{self.backend}", daemon=True).start()

    def _require_initialised_driver(self) -> None:
        original: Callable[..., None] = self.manager.init_host
        manager, errors = self.manager, self._errors

        def init_host(*args: Any, **kwargs: Any) -> None:
            original(*args, **kwargs)
            if not manager.driver.initialized:
                raise DriverDidNotStart(errors.reason() or "the driver did not initialise")

        self.manager.init_host = init_host

    def _wait_for_exit_order(self) -> None:
        # The main process must stop counting this worker before it exits, or
        # oslo.service would fork it again at once with the same configuration.
        try:
            while self.channel.receive().get("op") != "exit":
                pass
        except ChannelClosed:
            pass

    # -- requests --------------------------------------------------------------
    def serve(self) -> None:
        """Answer the main process's requests until it goes away."""
        while True:
            try:
                message = self.channel.receive()
            except ChannelClosed:
                return  # the main process is gone: oslo.service's pipe watcher stops us
            op = message.get("op")
            deadline = message.get("deadline")
            if isinstance(deadline, (int, float)) and time.monotonic() > deadline:
                # The main process gave up on this request and reported it
                # failed: acting on it now would make that report a lie.
                LOG.warning("reload request %r arrived after its deadline: not acted upon", op)
                self._send({"id": message.get("id"), "ok": False, "reason": "arrived after its deadline"})
                continue
            try:
                if op == "apply":
                    reply = self.apply(message.get("options") or [])
                elif op == "retire":
                    reply = self.retire(float(message["timeout"]))
                elif op == "resume":
                    reply = self.resume()
                elif op == "exit":
                    # cinder's own graceful stop: oslo.service's child SIGTERM
                    # handler stops the service; its wait() lets the RPC
                    # executors and the timers finish; then the process exits.
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
                else:
                    reply = {"ok": False, "reason": f"unknown request {op!r}"}
            except Exception as exc:  # a bug here must not take the backend down
                LOG.exception("reload request %r failed", op)
                reply = {"ok": False, "reason": f"{type(exc).__name__}: {exc}"}
            self._send({"id": message.get("id"), **reply})

    def apply(self, options: list[dict[str, Any]]) -> Message:
        from oslo_config import cfg  # the process's global CONF: what cinder and oslo's hooks read

        changes = []
        for item in options:
            group, name = str(item["group"]), str(item["name"])
            group_arg = None if group == DEFAULT_GROUP else group
            old = cfg.CONF[name] if group_arg is None else cfg.CONF[group_arg][name]
            cfg.CONF.set_override(name, item["value"], group_arg)
            new = cfg.CONF[name] if group_arg is None else cfg.CONF[group_arg][name]
            changes.append(OptionChange(group, name, old, new, ChangeKind.LIVE, bool(item.get("secret")), True))
        run_mutate_hooks(cfg.CONF, changes)
        # Logged after the hooks: at DEBUG, so it shows only once `debug` is.
        LOG.debug("reload: backend %s runs with %d new live value(s)", self.backend, len(changes))
        # As oslo.service's SIGHUP did: cached RPC and object version pins dropped.
        self.service.reset()
        return {"ok": True, "applied": len(changes)}

    def retire(self, timeout: float) -> Message:
        """Stop consuming and drain; the worker then waits for ``exit`` or ``resume``.

        A drained worker stays alive, paused, until its successor is up: if
        the new worker does not come up, this one consumes again and the
        backend never ran without a worker started on its previous values.
        """
        servers = _servers(self.service)
        stopped_at = time.monotonic()
        # Side by side: the backend is paused from the first stop on.
        stoppers = [
            threading.Thread(target=_stop_consuming, args=(s, self.gate), name="reload-rpc-stop") for s in servers
        ]
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        in_flight_at_stop = self.gate.in_flight
        LOG.info(
            "reload: backend %s stopped consuming RPC (%d in flight); draining up to %gs",
            self.backend,
            in_flight_at_stop,
            timeout,
        )
        try:
            self.gate.wait_drained(stopped_at + timeout)
        except DrainTimeout:
            busy = ", ".join(f"{name} x{n}" for name, n in sorted(self.rpc_gate.busy.items())) or "unknown"
            in_flight = self.gate.in_flight
            self._consume_again(servers)
            LOG.warning(
                "reload: backend %s did not drain within %gs (%s); consuming again", self.backend, timeout, busy
            )
            return not_drained(
                stopped_at,
                f"{in_flight} operation(s) still in flight after {timeout:g}s ({busy}); "
                "it keeps serving on its previous configuration",
            )
        # Quiet from here on: nothing consumed, nothing in flight, and the
        # periodic tasks skip their turn (a stale capability report sent
        # after the new worker's own would mislead the scheduler).
        self.rpc_gate.retired = True
        return drained(stopped_at, in_flight_at_stop)

    def resume(self) -> Message:
        """The successor did not come up: serve again, on the configuration this worker always had."""
        self._consume_again(_servers(self.service))
        LOG.warning("reload: backend %s consumes again on its previous configuration", self.backend)
        return {"ok": True, "at": time.monotonic()}

    def _consume_again(self, servers: list[Any]) -> None:
        self.rpc_gate.retired = False
        for server in servers:
            server.start()  # a new listener on the same queues

    def _send(self, message: Message) -> None:
        try:
            self.channel.send(message)
        except ChannelClosed:
            LOG.warning("reload: the main process is gone; backend %s could not report %s", self.backend, message)


class BackendService(WrappedService):
    """cinder's Service of one backend, as oslo.service's ProcessLauncher runs it.

    The main process sets ``channel``, ``strict`` and ``inherited`` right
    before each fork (launchers.py); the forked copy uses them.
    """

    def __init__(
        self, inner: Any, name: str, worker: type[BackendWorker] | None = None, *, in_thread: bool = False
    ) -> None:
        super().__init__(inner)
        self.name = name
        #: What runs the reload's side in the worker (api.ApiWorker for cinder-api's).
        self.worker_class = worker or BackendWorker
        #: oslo.service's threading backend: cotyledon runs start() and wait()
        #: in a thread of the worker (said by the launcher: under eventlet
        #: threading.current_thread() is never the main thread either).
        self.in_thread = in_thread
        self.channel: Channel | None = None
        self.strict = False
        #: The main process's ends of the other workers' channels, inherited
        #: by the fork: closed in the worker, which has no business with them.
        self.inherited: list[Channel] = []
        self.worker: BackendWorker | None = None
        #: Set by stop(): under cotyledon, wait() holds cinder's own wait() until then.
        self._stopping = threading.Event()

    def start(self) -> None:
        for other in self.inherited:
            other.close()
        if not self.in_thread:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        # else cotyledon runs the service in a thread, where no signal
        # disposition can be set: its new-worker hook did it (threading_backend.py).
        if self.channel is None:  # not forked by the reloading launcher
            self.inner.start()
            return
        self.worker = self.worker_class(self.inner, self.channel, strict=self.strict, name=self.name)
        self.worker.start()

    def stop(self) -> None:
        self._stopping.set()
        self.inner.stop()

    def wait(self) -> None:
        """cinder's wait(), once the service is stopping.

        oslo.service's threading ServiceWrapper calls wait() right after
        start(), in the thread that runs the service; cinder's wait() waits on
        each RPC server's own wait(), which oslo.messaging lets through as soon
        as the server is stopped, and then closes the server's connection.  A
        retiring worker stops its RPC servers without stopping the service
        (it may consume again): cinder's wait() would then close the
        connection the drain is using, from a second thread (seen: both
        blocked on the same socket for 20 s).  On eventlet oslo.service calls
        wait() only after stop().
        """
        if self.in_thread:
            self._stopping.wait()
        self.inner.wait()
