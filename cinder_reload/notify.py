"""sd_notify(3) messages to the service manager.

Building a message is pure (:func:`build_message`); sending is the only I/O and
lives in :class:`SystemdNotifier`.  The sender prefers libsystemd's own
``sd_notify`` (systemd-python) and falls back to the pure-Python ``sdnotify``
package, so a host without libsystemd headers still reports honestly.

``backend="socket"`` sends a plain datagram to the address taken from the
``environ`` the notifier was given, for services that hide ``NOTIFY_SOCKET``
from the rest of the process (see cinder_reload/cinder/).

Contract, after python-systemd's ``daemon.notify``: :meth:`SystemdNotifier.send`
returns True when the datagram went out and False when there is no manager to
tell (no ``NOTIFY_SOCKET``).  A real failure is not swallowed: the first one is
logged at WARNING with the reason, later ones at DEBUG so a broken socket does
not flood the log, and the error is kept in :attr:`SystemdNotifier.last_error`.

``NOTIFY_SOCKET`` is never removed from the environment: oslo.service's
``notify_once()`` does that, which is exactly why no later reload can be
reported there (see doc/reload-cycle.rst).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Literal

__all__ = ["Backend", "SystemdNotifier", "build_message", "monotonic_usec"]

LOG = logging.getLogger(__name__)

Backend = Literal["auto", "libsystemd", "sdnotify", "socket"]


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares against.

    ``Type=notify-reload`` (systemd >= 253) only accepts a ``RELOADING=1`` whose
    ``MONOTONIC_USEC=`` is not older than the reload it started; without it the
    reload job waits until ``TimeoutStartSec=`` (systemd.service(5)).
    """
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def _one_line(text: str) -> str:
    # STATUS= is a single field of a newline-separated datagram: an embedded
    # newline would start a new (bogus) assignment.  sdnotify encodes latin-1,
    # so anything outside it is replaced rather than failing the send.
    flat = " ".join(text.split())
    return flat.encode("latin-1", "replace").decode("latin-1")


def build_message(
    *,
    ready: bool = False,
    reloading: bool = False,
    stopping: bool = False,
    status: str | None = None,
    errno: int | None = None,
    extend_timeout_usec: int | None = None,
    monotonic: int | None = None,
) -> str:
    """Return one sd_notify datagram, fields in the order systemd documents.

    ``RELOADING=1`` always carries ``MONOTONIC_USEC=``; pass ``monotonic`` to
    pin the timestamp (tests), otherwise the current CLOCK_MONOTONIC is used.
    """
    if ready and reloading:
        raise ValueError("READY=1 and RELOADING=1 in one message is ambiguous")
    lines: list[str] = []
    if reloading:
        lines.append("RELOADING=1")
        lines.append(f"MONOTONIC_USEC={monotonic if monotonic is not None else monotonic_usec()}")
    if ready:
        lines.append("READY=1")
    if stopping:
        lines.append("STOPPING=1")
    if status is not None:
        lines.append(f"STATUS={_one_line(status)}")
    if errno is not None:
        lines.append(f"ERRNO={int(errno)}")
    if extend_timeout_usec is not None:
        lines.append(f"EXTEND_TIMEOUT_USEC={int(extend_timeout_usec)}")
    if not lines:
        raise ValueError("an sd_notify message needs at least one field")
    return "\n".join(lines)


Sender = Callable[[str, str], None]


def _send_libsystemd(message: str, address: str) -> None:
    # Imported lazily: systemd-python is an optional extra.
    from systemd import daemon  # type: ignore[import-not-found,unused-ignore]

    # libsystemd reads NOTIFY_SOCKET itself; `address` is only checked by the
    # caller.  unset_environment=False: later reloads must still be reported.
    if not daemon.notify(message, unset_environment=False):
        raise OSError("sd_notify() found no NOTIFY_SOCKET")


def _send_sdnotify(message: str, address: str) -> None:
    import sdnotify

    # A fresh notifier per message: sdnotify connects in __init__, and a
    # manager that re-creates its socket would otherwise leave us talking to a
    # dead inode.  debug=True turns sdnotify's silent bare excepts into errors.
    notifier = sdnotify.SystemdNotifier(debug=True)
    notifier.notify(message)
    notifier.socket.close()


def _send_socket(message: str, address: str) -> None:
    # The one sender that uses the address it is given rather than the
    # process environment: a service that must hide NOTIFY_SOCKET from a
    # library (oslo.service's notify_once() sends READY=1 too early and then
    # deletes the variable) keeps the address to itself and sends here.
    target = "\0" + address[1:] if address.startswith("@") else address
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode("latin-1", "replace"), target)


def _pick_backend(backend: Backend) -> tuple[str, Sender]:
    if backend == "socket":
        return "socket", _send_socket
    if backend in ("auto", "libsystemd"):
        try:
            from systemd import daemon  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
        except ImportError:
            if backend == "libsystemd":
                raise
        else:
            return "libsystemd", _send_libsystemd
    return "sdnotify", _send_sdnotify


class SystemdNotifier:
    """Sends sd_notify messages; a no-op when not run by a service manager."""

    def __init__(self, backend: Backend = "auto", environ: Mapping[str, str] | None = None) -> None:
        self.backend, self._sender = _pick_backend(backend)
        self._environ = environ if environ is not None else os.environ
        self._warned = False
        self._sent_once = False
        self._gone = False
        self.last_error: OSError | None = None

    @property
    def address(self) -> str | None:
        """The manager's socket, ``@name`` for an abstract one, or None."""
        return self._environ.get("NOTIFY_SOCKET") or None

    def send(self, message: str) -> bool:
        """Send ``message``; True if sent, False if there is no manager."""
        address = self.address
        if address is None or self._gone:
            return False
        try:
            self._sender(message, address)
        except OSError as exc:
            self.last_error = exc
            if self._sent_once and exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
                # The receiver went away after we reached it: start-stop-daemon
                # --notify-await (LSB init scripts) removes its socket once it
                # has READY=1.  Expected, not a failure: say so once, stop.
                self._gone = True
                LOG.info(
                    "sd_notify socket %s is gone (its listener only waited for READY=1); "
                    "not sending further notifications",
                    address,
                )
                return False
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            LOG.log(level, "sd_notify to %s via %s failed: %s", address, self.backend, exc)
            return False
        self._sent_once = True
        return True

    def ready(self, status: str) -> bool:
        return self.send(build_message(ready=True, status=status))

    def reloading(self, status: str) -> bool:
        return self.send(build_message(reloading=True, status=status))

    def stopping(self, status: str) -> bool:
        return self.send(build_message(stopping=True, status=status))

    def status(self, status: str) -> bool:
        return self.send(build_message(status=status))

    def extend_timeout(self, seconds: float) -> bool:
        return self.send(build_message(extend_timeout_usec=int(seconds * 1_000_000)))
