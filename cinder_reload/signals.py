"""Signals recorded by the handler, acted on by the loop.

The Python-level handler does two things only: append the signal number to a
``collections.deque`` (a C-level append, atomic under the GIL, and not
replaced by eventlet's monkey-patching the way ``queue`` is) and, if the loop is
not already woken, write one byte to a non-blocking self-pipe.  No locks, no
logging, no exceptions: a handler can run between any two bytecodes of the
main thread, including inside ``logging`` while it holds its lock.

The loop blocks in ``select()`` on the pipe, which is green under eventlet and
a plain blocking call with threads, so the same code serves both.
"""

from __future__ import annotations

import collections
import os
import posix  # the unpatched os.read/os.write: see _raw_write below
import select
import signal
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import Any

__all__ = ["SignalInbox"]

_Handler = Any  # what signal.signal() returns/accepts: a callable, SIG_DFL, SIG_IGN or None

# eventlet's monkey-patching replaces os.write/os.read with green versions that
# wait on the hub (the green write waits for writability first, even when the
# pipe has room), which raises "do not call blocking functions from the
# mainloop" inside a signal handler.  The posix module keeps the raw calls.
_raw_write = posix.write
_raw_read = posix.read


class SignalInbox:
    """Captures signals into a queue the main loop drains.

    Use as a context manager (or :meth:`install` / :meth:`uninstall`); the
    handlers that were in place before are restored on exit, as uvicorn's
    ``capture_signals()`` does for the application it hosts.
    """

    def __init__(self, signums: Iterable[int] = (signal.SIGHUP,)) -> None:
        self.signums = tuple(signums)
        self._received: collections.deque[int] = collections.deque()
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        # True while a wakeup byte is (or is about to be) in the pipe, so a
        # storm of signals writes at most a byte or two and never fills it.
        self._woken = False
        self._previous: dict[int, _Handler] = {}
        self._previous_wakeup_fd: int | None = None

    # -- the handler: record only ------------------------------------------
    def handler(self, signum: int, frame: FrameType | None = None) -> None:
        self._received.append(signum)
        self.wake()

    def wake(self) -> None:
        """Make :meth:`wait` return; safe from a signal handler or any thread."""
        if self._woken:
            return
        self._woken = True
        try:
            _raw_write(self._write_fd, b"\0")
        except OSError:  # pipe full or closed: a wakeup is pending anyway
            pass

    # -- installation --------------------------------------------------------
    def install(self) -> None:
        """Install the handler (main thread only, a CPython rule).

        Also makes the pipe CPython's wakeup fd, unless something else owns
        it (cotyledon does): the kernel may deliver a process signal to any
        thread, and the Python handler only runs once the main thread executes
        bytecode again.  A main thread blocked in ``select()`` on this pipe
        (a loop run with ``run()``) would otherwise sleep through a SIGHUP
        that another thread took (seen: a reload waited for in vain for 30 s
        while 8 client threads were busy).  The C-level handler writes the
        signal's number here from whichever thread it runs in; the byte wakes
        the loop, and the Python handler records the signal.
        """
        for signum in self.signums:
            if signum not in self._previous:
                self._previous[signum] = signal.signal(signum, self.handler)
        if self._previous_wakeup_fd is None:
            previous = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
            if previous != -1:  # someone else's: give it back, theirs wins
                signal.set_wakeup_fd(previous)
            else:
                self._previous_wakeup_fd = previous

    def uninstall(self) -> None:
        """Restore the handlers (and the wakeup fd) that were in place before :meth:`install`."""
        while self._previous:
            signum, previous = self._previous.popitem()
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        if self._previous_wakeup_fd is not None:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None

    def __enter__(self) -> SignalInbox:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.uninstall()

    # -- the loop side -------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Block until a signal or :meth:`wake` arrives, or ``timeout`` passes."""
        readable, _, _ = select.select([self._read_fd], [], [], 0 if self._received else timeout)
        if readable:
            # The pipe never holds more than a couple of bytes (see wake()).
            try:
                _raw_read(self._read_fd, 4096)
            except BlockingIOError:
                pass
        # Cleared only after the pipe is drained: a handler that runs between
        # the read and this line sees _woken=True and writes nothing, but its
        # signal is already in _received, which the caller reads next.
        self._woken = False

    def take(self) -> list[int]:
        """Remove and return the signals received so far, oldest first."""
        taken: list[int] = []
        while True:
            try:
                taken.append(self._received.popleft())
            except IndexError:
                return taken

    def pending(self, signum: int) -> bool:
        """Whether ``signum`` arrived and has not been taken yet."""
        return signum in self._received

    def close(self) -> None:
        self.uninstall()
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
