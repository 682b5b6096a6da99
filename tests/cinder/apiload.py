"""A steady HTTP load on a real cinder-api, and which worker process answered a request.

Clients of two kinds run side by side in threads: keep-alive clients (one
connection, reused until the server answers ``Connection: close``) and
clients that open a new connection for every request.  Every answer and
every failure (refused, reset, a 5xx) is recorded, as a user would meet it.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HEADERS", "Answer", "ApiLoad", "Reloaded", "get", "reload_under_load", "server_pid"]

#: noauth: the token names user and project.
HEADERS = {"X-Auth-Token": "admin:admin", "Accept": "application/json"}


@dataclass(frozen=True)
class Answer:
    at: float
    status: int
    items: int | None
    closed: bool  # the server said "Connection: close"
    keep_alive: bool  # sent on a reused connection


def get(port: int, path: str, conn: http.client.HTTPConnection | None = None) -> tuple[int, Any, bool]:
    """One request; (status, JSON body or None, server said Connection: close)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=HEADERS)
        reply = conn.getresponse()
        body = reply.read()
        closing = (reply.getheader("Connection") or "").lower() == "close"
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        return reply.status, data, closing
    finally:
        if own:
            conn.close()


def server_pid(conn: http.client.HTTPConnection, port: int, pids: set[int]) -> int | None:
    """The process among ``pids`` that holds the server end of ``conn`` (/proc/net/tcp, then fds)."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) == client_port:
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
                except OSError:
                    continue
        except OSError:
            continue
    return None


@dataclass
class ApiLoad:
    """Several clients sending ``GET path`` until stopped."""

    port: int
    path: str
    keep_alive_clients: int = 3
    new_connection_clients: int = 4
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> ApiLoad:
        for _ in range(self.keep_alive_clients):
            self._threads.append(threading.Thread(target=self._keep_alive, daemon=True))
        for _ in range(self.new_connection_clients):
            self._threads.append(threading.Thread(target=self._new_connections, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _record(self, status: int, data: Any, closing: bool, reused: bool) -> None:
        items = len(data["volume_types"]) if isinstance(data, dict) and "volume_types" in data else None
        with self._lock:
            self.answers.append(Answer(time.monotonic(), status, items, closing, reused))
            if status >= 500:
                self.failures.append(f"HTTP {status}: {data}")

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {what}")

    def _keep_alive(self) -> None:
        conn: http.client.HTTPConnection | None = None
        reused = False
        while not self._stop.is_set():
            if conn is None:
                conn, reused = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30), False
            try:
                status, data, closing = get(self.port, self.path, conn)
            except (OSError, http.client.HTTPException) as exc:
                self._fail(f"keep-alive client (reused={reused}): {type(exc).__name__}: {exc}")
                conn.close()
                conn = None
                continue
            self._record(status, data, closing, reused)
            reused = True
            if closing:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def _new_connections(self) -> None:
        while not self._stop.is_set():
            try:
                status, data, closing = get(self.port, self.path)
            except (OSError, http.client.HTTPException) as exc:
                self._fail(f"new-connection client: {type(exc).__name__}: {exc}")
                continue
            self._record(status, data, closing, False)

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def wait_for(self, answers: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < answers:
            assert time.monotonic() < deadline, f"only {self.count()} answers; failures: {self.failures[:5]}"
            time.sleep(0.02)


@dataclass
class Reloaded:
    """A reload run under load: the load, what the reload returned, and when it ran."""

    load: ApiLoad
    result: Any
    started: float
    ended: float


def reload_under_load(port: int, path: str, reload: Callable[[], Any], before: int = 20, after: int = 20) -> Reloaded:
    """``reload()`` while clients send ``GET path``: ``before`` answers first, ``after`` more once it returned."""
    with ApiLoad(port, path) as load:
        load.wait_for(before)
        started = time.monotonic()
        result = reload()
        ended = time.monotonic()
        load.wait_for(load.count() + after)
    return Reloaded(load, result, started, ended)
