"""The control channel between a main process and one worker: JSON lines.

One ``AF_UNIX`` stream socketpair per worker, made by the main process just
before it forks the worker: private to the two processes (nothing in the
runtime directory to be removed, filled or made read-only under them), and
the end of the stream is the worker's exit, seen at once.

Messages are JSON objects, one per line.  The main process sends requests
(``{"op": ..., "id": n}``); the worker answers each with ``{"id": n, ...}``
and also sends events of its own (``{"event": "ready", ...}``).  Under
eventlet the socket is green, so a blocked read yields to the hub.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

__all__ = ["Channel", "ChannelClosed"]

Message = dict[str, Any]

#: A message larger than this is a bug, not a configuration.
MAX_LINE = 1024 * 1024


class ChannelClosed(Exception):
    """The other end is gone (for a worker: it exited)."""


class Channel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self._send_lock = threading.Lock()
        self.closed = False

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self._sock.fileno()

    def send(self, message: Message) -> None:
        data = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self.closed = True
                raise ChannelClosed(str(exc)) from None

    def receive(self) -> Message:
        """The next message; blocks.  Raises ChannelClosed at the end of the stream."""
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:
                chunk = b""
                reason = str(exc)
            else:
                reason = "end of stream"
            if not chunk:
                self.closed = True
                raise ChannelClosed(reason)
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE:
                self.closed = True
                raise ChannelClosed("message too long")
        line, self._buffer = self._buffer.split(b"\n", 1)
        message = json.loads(line)
        if not isinstance(message, dict):
            raise ChannelClosed(f"not a message: {line[:80]!r}")
        return message

    def close(self) -> None:
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass
