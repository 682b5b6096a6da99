"""In-flight tracking and drain gates.

Service code wraps each operation in a scope's gate::

    gates = DrainGates()
    with gates.scope("lvm-1").operation():
        do_the_work()

    @gates.scope("lvm-1").track
    def create_volume(...): ...

During a reload the engine closes the gates of the scopes it is about to
re-initialise: operations that arrive then *wait* (they are not rejected:
an RPC that fails because an operator edited a file would be a lost
operation), the ones in flight finish, and the re-initialiser runs on a quiet
scope.  Scopes are independent, so draining one backend never pauses another.

Built on ``threading.Condition``, which eventlet's monkey-patching turns green,
so the same code drains greenthreads (cinder's default) and OS threads.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

__all__ = ["DrainAborted", "DrainGate", "DrainGates", "DrainTimeout"]

P = ParamSpec("P")
R = TypeVar("R")


class DrainTimeout(Exception):
    """In-flight operations did not finish within the drain timeout."""

    def __init__(self, scope: str, in_flight: int, timeout: float) -> None:
        self.scope = scope
        self.in_flight = in_flight
        self.timeout = timeout
        super().__init__(f"could not drain {scope!r} within {timeout:g}s: {in_flight} operation(s) still in flight")


class DrainAborted(Exception):
    """The drain was abandoned because the service is stopping."""


class DrainGate:
    """Counts in-flight operations of one scope; can be closed to drain it."""

    def __init__(self, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        # A plain Lock, not the default RLock: nothing re-enters, and the hot
        # path (one acquire on entry, one on exit) is measurably cheaper.
        self._cond = threading.Condition(threading.Lock())
        self._in_flight = 0
        self._closed = False
        #: How long each operation that met a closed gate waited (the most
        #: recent ones), so a reload's cost to its users is measured, not guessed.
        self.waits: collections.deque[float] = collections.deque(maxlen=4096)
        #: How many operations ever met this gate closed; counted on arrival, so
        #: a report written while they still wait already includes them.
        self.waited = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def closed(self) -> bool:
        return self._closed

    def operation(self) -> _Operation:
        """Run one operation: wait while the gate is closed, count it in flight."""
        return _Operation(self)

    def track(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorator form of :meth:`operation`."""

        @functools.wraps(func)
        def tracked(*args: P.args, **kwargs: P.kwargs) -> R:
            self._enter()
            try:
                return func(*args, **kwargs)
            finally:
                self._exit()

        return tracked

    def _enter(self) -> None:
        with self._cond:
            if self._closed:
                self.waited += 1
                started = self._clock()
                while self._closed:
                    self._cond.wait()
                self.waits.append(self._clock() - started)
            self._in_flight += 1

    def _exit(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def close(self) -> None:
        """Stop admitting operations; new ones wait until :meth:`open`."""
        with self._cond:
            self._closed = True

    def open(self) -> None:
        """Admit operations again and wake every one that waited."""
        with self._cond:
            self._closed = False
            self._cond.notify_all()

    def wait_drained(
        self,
        deadline: float,
        *,
        should_abort: Callable[[], bool] = lambda: False,
        poll: float = 0.2,
    ) -> None:
        """Wait until nothing is in flight, up to ``deadline`` (clock time).

        Raises :class:`DrainTimeout` at the deadline and :class:`DrainAborted`
        when ``should_abort()`` turns true (SIGTERM mid-drain).  ``poll`` bounds
        how late an abort is noticed: a signal handler may not notify a
        Condition, so the abort flag is checked between bounded waits.
        """
        with self._cond:
            while self._in_flight:
                if should_abort():
                    raise DrainAborted(self.name)
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise DrainTimeout(self.name, self._in_flight, 0.0)
                self._cond.wait(min(remaining, poll))


class _Operation:
    """``with gate.operation():`` - a plain class, not a generator-based
    context manager: it runs around every RPC, and this halves its cost."""

    __slots__ = ("_gate",)

    def __init__(self, gate: DrainGate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        self._gate._enter()

    def __exit__(self, *exc_info: object) -> None:
        self._gate._exit()


class DrainGates:
    """The gates of one service, one per scope, created on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._gates: dict[str, DrainGate] = {}
        self._lock = threading.Lock()

    def scope(self, name: str) -> DrainGate:
        with self._lock:
            gate = self._gates.get(name)
            if gate is None:
                gate = self._gates[name] = DrainGate(name, self._clock)
            return gate

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._gates)

    def wait_stats(self, recent: int = 256) -> dict[str, dict[str, object]]:
        """Per scope: how many operations waited on a closed gate (``waited``,
        since start) and the last ``recent`` wait durations in seconds, for the
        state file: a reload's cost to its users, readable from outside."""
        with self._lock:
            gates = list(self._gates.values())
        return {
            gate.name: {"waited": gate.waited, "recent_s": [round(w, 6) for w in list(gate.waits)[-recent:]]}
            for gate in sorted(gates, key=lambda g: g.name)
        }

    def drain(
        self,
        names: list[str],
        timeout: float,
        *,
        should_abort: Callable[[], bool] = lambda: False,
        on_slow: Callable[[float, dict[str, int]], None] | None = None,
        slow_after: float = 3.0,
        poll: float = 0.2,
    ) -> list[DrainGate]:
        """Close ``names`` and wait for all of them to drain, sharing one deadline.

        Closing every gate first and only then waiting means the scopes drain
        in parallel.  On timeout or abort every gate closed here is reopened
        before the exception propagates: a failed drain must never leave a
        scope paused.  ``on_slow(elapsed, in_flight)`` is called every
        ``slow_after`` seconds while waiting (the engine extends systemd's
        timeout from it).  Returns the closed gates; the caller reopens them.
        """
        gates = [self.scope(name) for name in names]
        started = self._clock()
        deadline = started + timeout
        for gate in gates:
            gate.close()
        try:
            next_slow = started + slow_after
            for gate in gates:
                while True:
                    step_deadline = min(deadline, next_slow) if on_slow else deadline
                    try:
                        gate.wait_drained(step_deadline, should_abort=should_abort, poll=poll)
                        break
                    except DrainTimeout as exc:
                        if self._clock() >= deadline:
                            raise DrainTimeout(gate.name, exc.in_flight, timeout) from None
                        assert on_slow is not None
                        on_slow(self._clock() - started, {g.name: g.in_flight for g in gates})
                        next_slow += slow_after
        except BaseException:
            for gate in gates:
                gate.open()
            raise
        return gates
