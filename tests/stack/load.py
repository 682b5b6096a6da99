"""A steady load through Cinder's REST API: create, extend, delete volumes.

Every ``3 / rate`` seconds a new volume's life starts, alternating between
the volume types (one per backend): create (until ``available``), extend by
1 GiB (until the new size is ``available``), delete (until it is gone).  That
is ``rate`` operations per second on average, each recorded with its
backend, outcome and latency.  An operation that has not reached its end
state within ``op_deadline`` seconds is *stuck*; one that reaches an error
state (``error``, ``error_extending``, ``error_deleting``) or whose request
is refused has *failed*.

One poller lists the project's volumes (one request) every ``poll``
seconds and resolves every waiting operation from that list, so watching
dozens of volumes costs the API a few requests per second, not one per
volume.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .api import CinderAPI

__all__ = ["LoadGenerator", "Op", "percentile"]

ERROR_STATES = {"error", "error_extending", "error_deleting", "error_managing", "error_restoring"}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Op:
    kind: str  # create | extend | delete
    backend: str
    started: float
    volume: str | None = None
    ended: float | None = None
    outcome: str = "pending"  # ok | failed | stuck
    detail: str = ""

    @property
    def latency(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "backend": self.backend,
            "volume": self.volume,
            "started": self.started,
            "latency": self.latency,
            "outcome": self.outcome,
            "detail": self.detail,
        }


@dataclass
class _Watch:
    accept: Callable[[dict[str, Any] | None], str | None]  # -> None (keep waiting), "ok" or a failure text
    done: threading.Event = field(default_factory=threading.Event)
    result: str | None = None


class LoadGenerator:
    """Drives volume lives at a steady rate until stopped; records every operation."""

    def __init__(
        self,
        api: CinderAPI,
        types: Mapping[str, str],  # backend -> volume type name
        *,
        rate: float = 6.0,
        op_deadline: float = 60.0,
        poll: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.types = dict(types)
        self.rate = rate
        self.op_deadline = op_deadline
        self.poll = poll
        self.clock = clock
        self.prefix = f"load-{uuid.uuid4().hex[:6]}"
        self.ops: list[Op] = []
        self.errors: list[str] = []  # the poller's own failures (API unreachable, ...)
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._stop = threading.Event()
        self._lives: list[threading.Thread] = []
        self._threads: list[threading.Thread] = []
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self._finished = False  # every life has ended: the poller may stop

    # -- control -------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = self.clock()
        for target, name in ((self._tick, "load-ticker"), (self._watch, "load-poller")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float | None = None) -> None:
        """Stop starting new lives, let every started one finish (or get stuck)."""
        self._stop.set()
        self.stopped_at = self.clock()
        self._threads[0].join(10)
        deadline = self.clock() + (timeout if timeout is not None else 3 * self.op_deadline + 10)
        for life in list(self._lives):
            life.join(max(0.0, deadline - self.clock()))
        self._finished = True
        self._threads[1].join(10)

    # -- the lives of volumes ------------------------------------------------------
    def _tick(self) -> None:
        backends = itertools.cycle(sorted(self.types))
        interval = 3.0 / self.rate
        assert self.started_at is not None
        for n in itertools.count():
            # Start times on a fixed grid: a slow API call never shifts the rate.
            if self._stop.wait(max(0.0, self.started_at + n * interval - self.clock())):
                return
            life = threading.Thread(target=self._life, args=(next(backends), n), name=f"load-{n}", daemon=True)
            with self._lock:
                self._lives.append(life)
            life.start()

    def _begin(self, kind: str, backend: str, volume: str | None) -> Op:
        op = Op(kind, backend, self.clock(), volume)
        with self._lock:
            self.ops.append(op)
        return op

    def _end(self, op: Op, outcome: str, detail: str = "") -> bool:
        op.ended = self.clock()
        op.outcome = outcome
        op.detail = detail
        return outcome == "ok"

    def _await(self, op: Op, accept: Callable[[dict[str, Any] | None], str | None]) -> bool:
        assert op.volume is not None
        watch = _Watch(accept)
        with self._lock:
            self._watches[op.volume] = watch
        remaining = op.started + self.op_deadline - self.clock()
        done = watch.done.wait(max(0.0, remaining))
        with self._lock:
            self._watches.pop(op.volume, None)
        if not done:
            return self._end(op, "stuck", f"not done within {self.op_deadline:g}s")
        if watch.result == "ok":
            return self._end(op, "ok")
        return self._end(op, "failed", watch.result or "?")

    def _life(self, backend: str, n: int) -> None:
        op = self._begin("create", backend, None)
        try:
            op.volume = self.api.create_volume(f"{self.prefix}-{n}", 1, self.types[backend])
        except Exception as exc:  # noqa: BLE001 - recorded as the operation's failure
            self._end(op, "failed", f"request: {exc}")
            return
        if not self._await(op, _status_is("available")):
            return
        op = self._begin("extend", backend, op.volume)
        try:
            self.api.extend_volume(op.volume, 2)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            self._end(op, "failed", f"request: {exc}")
            return
        if not self._await(op, _status_is("available", size=2)):
            return
        op = self._begin("delete", backend, op.volume)
        try:
            self.api.delete_volume(op.volume)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            self._end(op, "failed", f"request: {exc}")
            return
        self._await(op, _gone)

    def _watch(self) -> None:
        while True:
            with self._lock:
                idle = not self._watches
                finished = self._finished
            if finished and idle:
                return
            if not idle:
                # Only the watches that exist before the listing starts are
                # judged by it: a volume whose create returned while a slow
                # listing was under way is not in it, and is not gone.
                with self._lock:
                    watches = list(self._watches.items())
                try:
                    volumes = self.api.volumes()
                except Exception as exc:  # noqa: BLE001 - the lives time out as stuck; say why
                    self.errors.append(f"{self.clock():.3f} listing volumes: {exc}")
                    volumes = None
                if volumes is not None:
                    for volume_id, watch in watches:
                        verdict = watch.accept(volumes.get(volume_id))
                        if verdict is not None and not watch.done.is_set():
                            watch.result = verdict
                            watch.done.set()
            time.sleep(self.poll)  # the poll interval, not a guess at how long anything takes

    # -- results -------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        with self._lock:
            ops = list(self.ops)
        elapsed = (self.stopped_at or self.clock()) - (self.started_at or self.clock())
        by: dict[str, Any] = {}
        for backend in sorted(self.types):
            mine = [o for o in ops if o.backend == backend]
            lat = [o.latency for o in mine if o.latency is not None and o.outcome == "ok"]
            by[backend] = {
                "ops": len(mine),
                "ok": sum(o.outcome == "ok" for o in mine),
                "p50_s": round(percentile(lat, 50), 3),
                "p99_s": round(percentile(lat, 99), 3),
                "max_s": round(max(lat, default=0.0), 3),
            }
        return {
            "ops": len(ops),
            "elapsed_s": round(elapsed, 3),
            "ops_per_s": round(len(ops) / elapsed, 2) if elapsed else 0.0,
            "outcomes": {k: sum(o.outcome == k for o in ops) for k in ("ok", "failed", "stuck", "pending")},
            "by_backend": by,
            "kinds": {k: sum(o.kind == k for o in ops) for k in ("create", "extend", "delete")},
        }

    def in_flight(self, backend: str, at_least: float = 0.0) -> bool:
        """Is an operation on ``backend`` under way, started at least ``at_least`` s ago?"""
        now = self.clock()
        with self._lock:
            return any(o.backend == backend and o.ended is None and now - o.started >= at_least for o in self.ops)

    def unfinished(self, backend: str) -> int:
        """How many operations on ``backend`` have not ended yet."""
        with self._lock:
            return sum(1 for o in self.ops if o.backend == backend and o.ended is None)

    def operations(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def bad(self) -> list[Op]:
        with self._lock:
            return [o for o in self.ops if o.outcome != "ok"]


def _status_is(status: str, size: int | None = None) -> Callable[[dict[str, Any] | None], str | None]:
    def accept(vol: dict[str, Any] | None) -> str | None:
        if vol is None:
            return "volume disappeared"
        if vol["status"] in ERROR_STATES:
            return f"status {vol['status']}"
        if vol["status"] == status and (size is None or int(vol["size"]) == size):
            return "ok"
        return None

    return accept


def _gone(vol: dict[str, Any] | None) -> str | None:
    if vol is None:
        return "ok"
    if vol["status"] in ERROR_STATES:
        return f"status {vol['status']}"
    return None
