"""cinder-api: its workers replaced at every reload, as gunicorn does on HUP.

cinder's ``main()`` builds one ``WSGIService('osapi_volume')`` in the main
process (the paste pipeline is loaded there, and oslo.service's
``wsgi.Server`` binds the listening socket there) and forks
``osapi_volume_workers`` processes that all accept on that inherited socket.
So a new worker needs no socket hand-over: it only has to accept on the same
one.  A reload (backends.BackendWorkers with ``overlap``):

1. builds a new ``WSGIService('osapi_volume')`` through cinder's own
   constructor, with the new configuration in force (the paste file, the
   WSGI options, every option the app reads), accepting on the socket the
   service bound at start (:func:`sharing_listener`), and forks it through
   the launcher, once per worker;
2. once every new worker accepts, retires the old ones (:class:`ApiWorker`):
   they stop accepting (connections queued meanwhile stay in the shared
   backlog for the new workers: none is refused), answer the requests they
   hold with ``Connection: close``, and exit once none is left.

New workers come first, unlike cinder-volume's backends (where the old
worker drains before its successor's ``init_host`` may run): an API worker
owns nothing but its connections, and starting first means the service
never accepts with fewer workers.  A new worker that does not come up (a
paste file that does not load, an SSL certificate that cannot be read) is
stopped, and the old ones, never paused, keep serving.

Every reload replaces the workers, changed options or not: the WSGI
application also reads files the reload does not compare (api-paste.ini),
so a reload is how an operator makes it read them again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from oslo_config import cfg

from ..channel import Channel, Message
from ..config import registered_options
from ..diff import OptKey
from .backend_worker import BackendWorker, drained, not_drained

__all__ = ["ApiWorker", "IDLE_GRACE", "shared_options", "sharing_listener"]

LOG = logging.getLogger(__name__)

#: How long a retiring worker lets a keep-alive connection wait for its next
#: request before closing it.  A client in the middle of a series of
#: requests sends the next one within milliseconds and gets it answered,
#: with ``Connection: close``; closing an idle connection at once (what
#: eventlet's server does when it stops) races with a request the client
#: may be sending at that very moment, which it would see reset.
IDLE_GRACE = 2.0


def shared_options(conf: cfg.ConfigOpts, restart_only: Collection[OptKey]) -> frozenset[OptKey]:
    """The options a new set of API workers applies: every immutable one the main process
    does not keep for itself (mutable ones are applied live everywhere anyway)."""
    return frozenset(
        (reg.group, reg.opt.dest)
        for reg in registered_options(conf)
        if not reg.opt.mutable and (reg.group, reg.opt.dest) not in restart_only
    )


@contextmanager
def sharing_listener(sock: Any) -> Iterator[None]:
    """While cinder builds a ``WSGIService``, its ``wsgi.Server`` takes ``sock`` instead of binding.

    The listening socket is bound once, in the main process, when cinder
    starts, and stays open there.  A second one would bind (eventlet sets
    ``SO_REUSEPORT``), and the kernel would then hand part of the new
    connections to the first socket, which nobody accepts on once the old
    workers are gone (tried: clients time out).  oslo.service's ``Server.__init__`` gets
    its socket from ``_get_socket()``: that one call is pointed at the
    running socket, with the socket options of the new configuration
    (``tcp_keepidle``) applied as ``_get_socket()`` does.  The main process
    builds one service at a time (the reload's workers step), so nothing
    else sees the replacement.
    """
    from oslo_service import wsgi

    original = wsgi.Server._get_socket

    def running_socket(server: Any, host: str, port: int, backlog: int) -> Any:
        return server._set_socket_opts(sock)

    wsgi.Server._get_socket = running_socket
    try:
        yield
    finally:
        wsgi.Server._get_socket = original


class _Connection:
    """One accepted connection: eventlet's ``[address, socket, state]`` and since when it waits for a request."""

    def __init__(self, conn_state: list[Any]) -> None:
        self.conn_state = conn_state
        self.waiting_since = time.monotonic()
        #: A request is being read or answered (eventlet's own state says
        #: "close" for every connection once its server stopped).
        self.busy = False

    @property
    def waiting(self) -> bool:
        """Between two requests (or before the first): nothing read of the next one yet."""
        return not self.busy


def _closing() -> str:
    from eventlet import wsgi

    return str(wsgi.STATE_CLOSE)


def _tracking_pool(pool: Any, worker: ApiWorker) -> Any:
    """oslo.service's green pool for the server, noting each connection as it is accepted.

    eventlet's accept loop hands each new connection to ``pool.spawn()``
    in the loop's own greenthread; the handler starts later.  A connection
    accepted right before the worker retires is known from here on, so the
    retirement treats it like any other instead of letting eventlet's stop
    shut it down under a request on its way.
    """

    class TrackingPool(type(pool)):  # type: ignore[misc]
        def spawn(self, function: Any, *args: Any, **kwargs: Any) -> Any:
            conn_state = args[0] if args else None
            if isinstance(conn_state, list):
                if worker.retiring:
                    # Accepted while the loop is being stopped: see ApiWorker.retire().
                    conn_state[2] = _closing()
                worker.connections[id(conn_state)] = _Connection(conn_state)
                thread = super().spawn(function, *args, **kwargs)
                thread.link(lambda _thread: worker.connections.pop(id(conn_state), None))
                return thread
            return super().spawn(function, *args, **kwargs)

    return TrackingPool(pool.size)


def _retiring_protocol(base: type, worker: ApiWorker) -> type:
    """eventlet's ``HttpProtocol`` that knows when its worker is retiring.

    eventlet's ``server()``, when it stops, shuts down every connection
    that waits for its next request and closes the others after their
    current response, even one already sent with keep-alive: both can
    meet a request the client is sending at that moment.  Here, once the
    worker retires, every response says ``Connection: close``, and a
    connection whose last response promised keep-alive is answered once
    more, with ``Connection: close``, unless it stays idle for
    :data:`IDLE_GRACE`.
    """
    from eventlet import wsgi

    class RetiringProtocol(base):  # type: ignore[misc]
        def handle(self) -> None:
            # eventlet's loop (HttpProtocol.handle), except that a connection
            # its server marked closing still gets the request its client may
            # send after a keep-alive response, while the worker retires.
            record = worker.connections.get(id(self.conn_state))
            self.close_connection = 1
            while True:
                if record is not None:
                    record.busy, record.waiting_since = False, time.monotonic()
                self.handle_one_request()
                if self.conn_state[2] == wsgi.STATE_CLOSE and not worker.retiring:
                    self.close_connection = 1
                elif self.conn_state[2] != wsgi.STATE_CLOSE:
                    self.conn_state[2] = wsgi.STATE_IDLE
                if self.close_connection:
                    break

        def parse_request(self) -> bool:
            # Right after the request line arrived (no yield in between).
            record = worker.connections.get(id(self.conn_state))
            if record is not None:
                record.busy = True
            return bool(super().parse_request())

        def handle_one_response(self) -> Any:
            if worker.retiring:
                self.close_connection = 1  # eventlet then sends "Connection: close"
            return super().handle_one_response()

    return RetiringProtocol


def _waits_in_accept(loop: Any) -> bool:
    """Whether eventlet's accept loop is suspended inside ``accept()``."""
    frame = getattr(loop, "gr_frame", None)
    while frame is not None:
        if frame.f_code.co_name == "accept" and "eventlet" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


class ApiWorker(BackendWorker):
    """The reload's side of one cinder-api worker process (the control channel's other end)."""

    def __init__(self, service: Any, channel: Channel, *, strict: bool, name: str) -> None:
        super().__init__(service, channel, strict=strict, name=name)
        self.retiring = False
        #: The connections this worker holds, by id() of eventlet's conn_state.
        self.connections: dict[int, _Connection] = {}

    def start(self) -> None:
        server = self.service.server
        server._protocol = _retiring_protocol(server._protocol, self)
        server._pool = _tracking_pool(server._pool, self)
        try:
            self.service.start()  # cinder's WSGIService.start(): the accept loop on the shared socket
        except Exception as exc:
            self._start_failed(f"{type(exc).__name__}: {exc}")
        self._report_ready(True, None)

    def retire(self, timeout: float) -> Message:
        """Stop accepting; answer what the connections bring with ``Connection: close``; return once none is left."""
        from eventlet import greenio, wsgi

        stopped_at = time.monotonic()
        server = self.service.server
        # eventlet's server(), when its accept loop is killed, shuts down every
        # connection still marked idle, in the same breath: one that has a
        # request on its way (or already buffered, not read yet) loses it.
        # Marked closing instead, they are left to the grace below; from
        # here on the tracking pool marks what the loop still accepts.
        self.retiring = True
        in_flight = sum(1 for c in list(self.connections.values()) if not c.waiting)
        loop = server._server
        # The loop is killed only where it waits in accept(): killed anywhere
        # else (its log call after accept() may yield), the connection it has
        # just accepted would be dropped with its frame (seen: a reset).  From
        # that check to the kill nothing yields.
        give_up = time.monotonic() + 1.0
        while loop is not None and not loop.dead and not _waits_in_accept(loop) and time.monotonic() < give_up:
            time.sleep(0)
        for connection in list(self.connections.values()):
            if connection.conn_state[2] == wsgi.STATE_IDLE:
                connection.conn_state[2] = wsgi.STATE_CLOSE
        if loop is not None:
            loop.kill()
        # cinder's own stop() (pool resized, loop killed) comes with the exit.
        LOG.info(
            "reload: API worker %s (pid %d) stopped accepting (%d request(s) in flight, %d connection(s))",
            self.backend,
            os.getpid(),
            in_flight,
            len(self.connections),
        )
        deadline = stopped_at + timeout
        while self.connections:
            now = time.monotonic()
            past = now >= deadline
            for connection in list(self.connections.values()):
                if connection.waiting and (past or now - connection.waiting_since >= IDLE_GRACE):
                    greenio.shutdown_safe(connection.conn_state[1])
            if past:
                break
            time.sleep(0.01)
        busy = sum(1 for c in list(self.connections.values()) if not c.waiting)
        if busy:
            return not_drained(
                stopped_at,
                f"{busy} request(s) still in flight after {timeout:g}s; they finish "
                "within cinder's graceful stop (graceful_shutdown_timeout)",
            )
        return drained(stopped_at, in_flight)

    def resume(self) -> Message:
        # Never asked: an API worker is retired only once its successor accepts.
        return {"ok": False, "reason": "an API worker that stopped accepting does not start again"}
