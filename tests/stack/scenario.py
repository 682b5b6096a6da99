"""Issue 7's scenario: 30 reloads (20 good, 10 broken) under a steady load.

Shared by the test (tests/stack/test_stack.py) and the benchmark
(benchmarks/bench_stack.py).  ``reload`` is whatever the operator runs
(``cinder-reload signal --wait`` or ``systemctl reload``) and returns
``(exit status, output)``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .cinderenv import StackConfig
from .load import LoadGenerator
from .stack import wait_for

__all__ = ["BROKEN", "ReloadRecord", "run_reloads"]

#: Ways to break the file, each one a reload must refuse while serving on.
BROKEN: list[tuple[str, Callable[[str], str]]] = [
    ("syntax error", lambda text: text + "\n[fake2\n"),
    ("bad value", lambda text: text.replace("slow_op_seconds = ", "slow_op_seconds = fast", 1)),
    ("backend removed", lambda text: text.split("\n[fake2]\n")[0] + "\n"),
]

CHANGED, UNCHANGED = "fake1", "fake2"


@dataclass
class ReloadRecord:
    index: int
    kind: str  # good | syntax error | bad value | backend removed
    returncode: int
    output: str
    seconds: float
    slow: float | None = None  # the value of [fake1] slow_op_seconds written (good ones)


@dataclass
class Scenario:
    records: list[ReloadRecord] = field(default_factory=list)
    final_slow: float = 0.0


def run_reloads(
    config: StackConfig,
    load: LoadGenerator,
    reload: Callable[[], tuple[int, str]],
    *,
    good: int = 20,
    broken: int = 10,
    in_flight_timeout: float = 30.0,
    backlog: int = 2,
) -> Scenario:
    """Good and broken reloads interleaved (G G B ...), each while an
    operation on the changed backend is in flight, so there is something to
    drain.

    Each reload also waits until the changed backend has caught up with what
    queued for it during the previous one (no more than ``backlog``
    unfinished operations beyond the unchanged backend's, which carries the
    same load and is never reloaded): a replaced backend's RPC is paused while its old worker
    drains and its new one starts, and the requests of that pause arrive at
    the new worker together.  Reloading again before they are done makes
    every drain longer than the last (seen: 1.4 s growing to 10 s over 20
    reloads at 6 ops/s on two cores, until the test client's own status
    polling saturated cinder-api).  An operator does not reload faster than
    a backend recovers; the pause each reload costs is measured in
    benchmarks/bench_stack.py.
    """
    scenario = Scenario()
    total = good + broken
    good_done = broken_done = 0
    for index in range(total):
        # Broken every third, until the quota of each kind is met.
        want_broken = broken_done < broken and (index % 3 == 2 or good_done >= good)
        wait_for(
            lambda: load.unfinished(CHANGED) <= load.unfinished(UNCHANGED) + backlog,
            in_flight_timeout,
            f"{CHANGED} to catch up with {UNCHANGED} (at most {backlog} more unfinished operations)",
            interval=0.05,
        )
        wait_for(
            lambda: load.in_flight(CHANGED, at_least=0.05),
            in_flight_timeout,
            f"an operation in flight on {CHANGED}",
            interval=0.02,
        )
        if want_broken:
            kind, breaker = BROKEN[broken_done % len(BROKEN)]
            config.write(breaker(config.render()))
            broken_done += 1
            slow = None
        else:
            kind = "good"
            # Every good reload changes the backend; every other one also flips debug.
            slow = 0.3 + 0.05 * (1 + good_done % 2)
            config.slow_op_seconds = {CHANGED: slow}
            config.debug = bool(good_done % 2)
            config.write()
            scenario.final_slow = slow
            good_done += 1
        started = time.monotonic()
        code, output = reload()
        scenario.records.append(ReloadRecord(index, kind, code, output, time.monotonic() - started, slow))
        if want_broken:
            config.write()  # the operator fixes the file
    return scenario


def read_json(path: Any) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


DRIVER_BUILT = re.compile(r"SlowFakeDriver built for backend (\S+): slow_op_seconds=([0-9.]+) \(pid (\d+)\)")


def driver_builds(log_text: str) -> list[tuple[str, float, int]]:
    """(backend, slow_op_seconds, pid) of every driver built, in order (from cinder-volume's log)."""
    return [(m.group(1), float(m.group(2)), int(m.group(3))) for m in DRIVER_BUILT.finditer(log_text)]
