"""The signal inbox (handler records, loop acts) and drain gates, with real
signals and real threads."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cinder_reload.drain import DrainAborted, DrainGates, DrainTimeout
from cinder_reload.signals import SignalInbox


def test_handler_only_records_and_wakes() -> None:
    inbox = SignalInbox()
    try:
        inbox.handler(signal.SIGHUP)
        inbox.handler(signal.SIGHUP)
        inbox.wait(timeout=1)
        assert inbox.take() == [signal.SIGHUP, signal.SIGHUP]
        assert inbox.take() == []
    finally:
        inbox.close()


def test_real_signal_is_captured_and_previous_handler_restored() -> None:
    seen: list[int] = []

    def previous(signum: int, frame: object) -> None:
        seen.append(signum)

    old = signal.signal(signal.SIGHUP, previous)
    try:
        with SignalInbox() as inbox:
            assert signal.getsignal(signal.SIGHUP) == inbox.handler
            os.kill(os.getpid(), signal.SIGHUP)
            inbox.wait(timeout=5)
            assert inbox.take() == [signal.SIGHUP]
        assert signal.getsignal(signal.SIGHUP) is previous
        os.kill(os.getpid(), signal.SIGHUP)
        assert seen == [signal.SIGHUP]
        inbox.close()
    finally:
        signal.signal(signal.SIGHUP, old)


def test_wake_from_another_thread_unblocks_wait() -> None:
    inbox = SignalInbox()
    try:
        threading.Timer(0.05, inbox.wake).start()
        started = time.monotonic()
        inbox.wait(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        inbox.close()


def test_storm_of_wakeups_never_fills_the_pipe() -> None:
    inbox = SignalInbox()
    try:
        for _ in range(100_000):  # far more than a pipe buffer holds
            inbox.handler(signal.SIGHUP)
        inbox.wait(timeout=1)
        assert len(inbox.take()) == 100_000
    finally:
        inbox.close()


def hold_operation(gates: DrainGates, scope: str) -> threading.Event:
    """Start an operation in ``scope`` that runs until the returned event is set."""
    entered, release = threading.Event(), threading.Event()

    def operation() -> None:
        with gates.scope(scope).operation():
            entered.set()
            release.wait(5)

    threading.Thread(target=operation, daemon=True).start()
    assert entered.wait(5)
    return release


def test_closed_gate_makes_new_operations_wait_not_fail() -> None:
    gates = DrainGates()
    gate = gates.scope("b1")
    done: list[str] = []
    gates.drain(["b1"], timeout=1)
    waiter = threading.Thread(target=lambda: gate.track(lambda: done.append("ran"))())
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and done == [], "an operation must wait while the gate is closed"
    gate.open()
    waiter.join(5)
    assert done == ["ran"]
    assert len(gate.waits) == 1 and gate.waits[0] > 0


def test_drain_waits_for_in_flight_operations() -> None:
    gates = DrainGates()
    release = hold_operation(gates, "b1")
    threading.Timer(0.1, release.set).start()
    started = time.monotonic()
    closed = gates.drain(["b1"], timeout=5)
    assert time.monotonic() - started >= 0.09
    assert gates.scope("b1").in_flight == 0 and closed[0].closed
    closed[0].open()


def test_drain_timeout_reopens_every_gate() -> None:
    gates = DrainGates()
    release = hold_operation(gates, "b1")
    with pytest.raises(DrainTimeout, match=r"could not drain 'b1' within 0.2s: 1 operation\(s\) still in flight"):
        gates.drain(["b2", "b1"], timeout=0.2)
    assert not gates.scope("b1").closed and not gates.scope("b2").closed
    release.set()


def test_draining_one_scope_never_pauses_another() -> None:
    gates = DrainGates()
    gates.drain(["b1"], timeout=1)
    ran = threading.Event()
    other = threading.Thread(target=lambda: gates.scope("b2").track(ran.set)())
    other.start()
    assert ran.wait(5), "scope b2 was paused by draining b1"
    assert list(gates.scope("b2").waits) == [], "no operation of b2 waited"


def test_drain_abort_reopens_and_raises() -> None:
    gates = DrainGates()
    release = hold_operation(gates, "b1")
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    with pytest.raises(DrainAborted):
        gates.drain(["b1"], timeout=10, should_abort=stop.is_set, poll=0.02)
    assert not gates.scope("b1").closed
    release.set()


def test_slow_drain_is_reported_periodically() -> None:
    gates = DrainGates()
    release = hold_operation(gates, "b1")
    reports: list[tuple[float, dict[str, int]]] = []
    threading.Timer(0.35, release.set).start()
    gates.drain(["b1"], timeout=5, on_slow=lambda t, n: reports.append((t, n)), slow_after=0.1)[0].open()
    assert len(reports) >= 2
    assert reports[0][1] == {"b1": 1}


def test_wait_stats_count_waiters_on_arrival_per_scope() -> None:
    gates = DrainGates()
    gates.scope("b2")
    gates.drain(["b1"], timeout=1)
    waiter = threading.Thread(target=lambda: gates.scope("b1").track(lambda: None)())
    waiter.start()
    # Counted while it still waits: a state file written before the gate
    # reopens (the end of a cycle) already includes it.
    deadline = time.monotonic() + 5
    while gates.wait_stats()["b1"]["waited"] != 1:
        assert time.monotonic() < deadline, "the waiting operation was never counted"
        time.sleep(0.01)
    gates.scope("b1").open()
    waiter.join(5)
    stats = gates.wait_stats()
    assert stats["b2"] == {"waited": 0, "recent_s": []}
    assert stats["b1"]["waited"] == 1 and len(stats["b1"]["recent_s"]) == 1


def test_a_sighup_another_thread_takes_still_wakes_a_loop_in_the_main_thread() -> None:
    """The kernel may deliver SIGHUP to any thread; the main thread's select() must still wake."""
    import threading
    import time

    from cinder_reload.signals import SignalInbox

    inbox = SignalInbox((signal.SIGHUP,))
    busy = threading.Event()
    done = threading.Event()

    def other_thread() -> None:
        busy.set()
        done.wait(10)

    worker = threading.Thread(target=other_thread)
    with inbox:
        worker.start()
        busy.wait(5)
        assert worker.ident is not None
        threading.Timer(0.2, signal.pthread_kill, args=(worker.ident, signal.SIGHUP)).start()
        started = time.monotonic()
        inbox.wait(timeout=5)
        waited = time.monotonic() - started
        done.set()
        worker.join(5)
        assert waited < 2, f"the main thread slept through the signal for {waited:.1f}s"
        assert inbox.take() == [signal.SIGHUP]
