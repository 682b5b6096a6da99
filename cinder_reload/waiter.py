"""Send SIGHUP and wait for the cycle it started: the synchronous reload.

This is what makes ``systemctl reload`` (through ``ExecReload=`` on systemd
< 253) and ``service NAME reload`` block until the reload really ran, and fail
when it failed.  ``kill -HUP $MAINPID`` returns before the service even read
the file (29 ms on the baseline, while the service then died).

Matching a cycle to *our* signal: the engine records the CLOCK_MONOTONIC time
at which each cycle started.  A cycle that started before we sent the signal
(one already running) cannot have read the file as it is now; the engine
merges our SIGHUP into the follow-up cycle, and that is the one we wait for.
"""

from __future__ import annotations

# _signal: the signal module without its enum wrappers (enum alone costs ~2 ms).
import _signal as signals
import os
import sys
import time

from .state import (
    StateUnreadable,
    parse_state,
    read_raw_state,
    read_state,
    runtime_dir_name,
    state_file_name,
)

# Every module imported here is imported by each `systemctl reload` before its
# SIGHUP goes out (`ExecReload=`, see entry.py), so the module imports builtin
# modules only: typing, pathlib, threading, enum, json (re) and select are for
# the type checker, or imported where they are used, after the signal.
# tests/unit/test_entry.py lists what is imported when the signal goes out.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import FrameType
    from typing import Any

__all__ = [
    "ACK_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Outcome",
    "SignalRequest",
    "StateDirWatch",
    "WaitResult",
    "finished_after",
    "is_the_service",
    "monotonic",
    "pid_alive",
    "read_pidfile",
    "run_signal",
    "signal_and_wait",
]


#: Seconds an idle service may take to write "reloading" to its state file
#: after our SIGHUP (it does so before anything else in the cycle).
ACK_TIMEOUT = 15.0

#: Seconds ``signal --wait`` waits for the cycle by default.
DEFAULT_TIMEOUT = 90.0


class Outcome:
    """Exit statuses, as LSB init scripts use them (LSB 3.0, 20.2).

    Plain ints, not an IntEnum: see the imports above.
    """

    OK = 0
    FAILED = 1
    NOT_RUNNING = 7


class WaitResult:
    """How a ``signal`` ended: the exit status, the line for the operator, the state document read last."""

    # A plain class: NamedTuple and dataclasses import typing, inspect and
    # more before the SIGHUP goes out (see the imports above).
    __slots__ = ("outcome", "message", "report")

    def __init__(self, outcome: int, message: str, report: dict[str, Any] | None = None) -> None:
        self.outcome = outcome
        self.message = message
        self.report = report

    def __repr__(self) -> str:
        return f"WaitResult({self.outcome!r}, {self.message!r})"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists; we may just not own it
    # A zombie still answers kill(0) but will never reload.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        # ProcessLookupError: reaped between open() and read() (seen under
        # cotyledon, whose supervisor thread reaps a worker within moments).
        return False


def read_pidfile(path: str | os.PathLike[str]) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            text = handle.read(64).strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def catches_sighup(pid: int) -> bool:
    """Whether ``pid`` has a SIGHUP handler installed (``SigCgt`` in /proc).

    SIGHUP's default action terminates the process: sent to a service that is
    still importing its code (``service NAME reload`` right after ``start``
    on SysV, where nothing queues the reload), it would kill it.  Unknown
    (no /proc) counts as yes: refusing every reload there would be worse.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (signals.SIGHUP - 1) & 1)
    except (OSError, ValueError, IndexError):
        pass
    return True


def command_line(pid: int) -> list[str] | None:
    """``pid``'s argv from /proc (as setproctitle may have rewritten it), None if unknown."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def is_the_service(pid: int, service: str, doc: Callable[[], Mapping[str, Any] | None]) -> bool:
    """Whether ``pid`` is ``service``'s process, as far as can be told.

    Yes when its command line names the service (``cinder-reload run
    cinder-volume``, ``/usr/bin/cinder-volume``, or oslo.service's process
    title ``cinder-volume: master process [...]``), or when its state file
    (``doc()``: parsed only if the command line did not tell, since json is
    not imported before the SIGHUP otherwise) names that pid, which is how a
    service is known whose process title names something else.  Unknown (no
    /proc) counts as yes, as in :func:`catches_sighup`.
    """
    argv = command_line(pid)
    if argv is None:
        return True
    words = [word for arg in argv for word in arg.replace(":", " ").split()]
    if any(os.path.basename(word).startswith(service) for word in words):
        return True
    document = doc()
    return bool(document and document.get("pid") == pid)


def _fingerprint(path: str) -> tuple[int, int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def monotonic() -> float:
    """CLOCK_MONOTONIC in seconds: the clock the engine stamps ``started_monotonic`` with."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def finished_after(doc: Mapping[str, Any] | None, pid: int, generation: int, sent: float) -> bool:
    """Whether ``doc`` reports a finished cycle of ``pid`` past ``generation``
    that started at or after ``sent``, i.e. one that read the files after our
    SIGHUP (see the module docstring)."""
    if not doc or doc.get("pid") != pid or doc.get("in_progress"):
        return False
    started = doc.get("started_monotonic")
    return int(doc.get("generation") or 0) > generation and started is not None and started >= sent


def signal_and_wait(
    pid: int,
    state_file: str,
    *,
    wait: bool = True,
    timeout: float = 90.0,
    poll: float = 0.05,
    progress: Callable[[dict[str, Any] | None, float], None] | None = None,
    service: str | None = None,
    ack_timeout: float = ACK_TIMEOUT,
) -> WaitResult:
    """SIGHUP ``pid``; with ``wait``, block until the cycle it started finishes.

    ``service``: refuse a ``pid`` that is not that service's process
    (:func:`is_the_service`) instead of sending it a signal it may not expect.

    Everything before the signal goes out runs on builtin modules (see the
    imports): the state file is read as bytes then and parsed after.
    """
    if not pid_alive(pid):
        return WaitResult(Outcome.NOT_RUNNING, f"process {pid} is not running")
    if not catches_sighup(pid):
        return WaitResult(
            Outcome.FAILED,
            f"process {pid} does not handle SIGHUP (yet): still starting, or not running under "
            "cinder-reload; not sending it, since SIGHUP would terminate it. Try again once it is ready.",
        )
    try:
        raw = read_raw_state(state_file)
    except StateUnreadable as exc:
        # The engine cannot replace a directory, and we could not read its
        # answer: the reload's result would never be known.
        return WaitResult(Outcome.FAILED, f"not reloading: {exc}; its result could never be read")
    parsed: list[dict[str, Any] | None] = []

    def before() -> dict[str, Any] | None:
        if not parsed:
            try:
                parsed.append(None if raw is None else parse_state(raw, state_file))
            except StateUnreadable:
                parsed.append(None)  # garbage: the engine's next (atomic) write replaces it
        return parsed[0]

    if service is not None and not is_the_service(pid, service, before):
        argv = " ".join(command_line(pid) or [])[:120]
        return WaitResult(
            Outcome.FAILED,
            f"process {pid} ({argv}) is not {service}: its command line does not name it and its state file "
            f"{state_file} does not name this pid; not sending SIGHUP",
        )
    if not wait:
        try:
            os.kill(pid, signals.SIGHUP)
        except ProcessLookupError:
            return WaitResult(Outcome.NOT_RUNNING, f"process {pid} is not running")
        return WaitResult(Outcome.OK, f"sent SIGHUP to {pid}")
    # The SIGTERM handler goes in before the SIGHUP goes out: from then on
    # the manager may cancel us at any moment.
    with _SigtermStopsWaiting() as terminated:
        # Taken before the signal: the service's first write may come first.
        unchanged = _fingerprint(state_file)
        sent = monotonic()
        try:
            os.kill(pid, signals.SIGHUP)
        except ProcessLookupError:
            return WaitResult(Outcome.NOT_RUNNING, f"process {pid} is not running")
        # From here on the reload runs meanwhile: what was read before is
        # parsed now and the directory watch set up; a write before the
        # watch exists is found by _wait's first read, which comes after.
        doc = before()
        generation = int(doc.get("generation") or 0) if doc and doc.get("pid") == pid else 0
        directory = os.path.dirname(state_file)
        with StateDirWatch(directory, terminated.wakeup_fd) as watch:
            # An idle service writes its state file within milliseconds of
            # the SIGHUP; one that cannot (state directory read-only, full or
            # removed) must not leave us waiting for the whole timeout.  A
            # missing state directory counts as idle too: the runtime
            # directory removed under a running service (Debian's units
            # remove /run/cinder on stop), which the service recreates if it
            # may, else never writes.
            idle = bool(doc and doc.get("pid") == pid and not doc.get("in_progress"))
            idle = idle or not os.path.isdir(directory)
            ack = (sent + ack_timeout, unchanged) if idle else None
            return _wait(pid, state_file, generation, sent, timeout, poll, progress, terminated, watch, ack)


class StateDirWatch:
    """Wakes a waiter when a state file lands in its directory (dnotify), else after a poll interval.

    The engine writes its state file by renaming a finished temporary file
    into place (state.write_state), so a rename in the directory is exactly
    "a new document is there": the waiter reads it at once instead of up to
    one poll later.  The watch is the directory's ``fcntl(F_NOTIFY)``
    (dnotify: every Linux kernel, no dependency), which raises SIGIO on each
    rename there; the handler does nothing, and CPython's wakeup fd (that of
    :class:`_SigtermStopsWaiting`, which also ends the wait on SIGTERM) makes
    the waiting ``select()`` return.

    Not inotify, which this used before: closing an inotify instance waits
    for an SRCU grace period (the kernel's ``fsnotify_destroy_group``), 7.6 ms
    median and up to 20 ms on the benchmark host, and the process's exit
    waits for that close, so systemd's SIGCHLD and with it ``systemctl
    reload``'s return came that much later.  A dnotify watch goes with its
    descriptor at no cost.

    It needs a signal handler, so the main thread, and the wakeup fd; without
    them (a caller's thread) or without dnotify the watch degrades to plain
    polling.
    """

    def __init__(self, directory: str | os.PathLike[str], wakeup_fd: int | None) -> None:
        self.directory = directory
        self.wakeup_fd = wakeup_fd
        self.fd: int | None = None
        self._previous: Any = None

    @property
    def armed(self) -> bool:
        """Whether a rename in the directory wakes :meth:`wait` (else it only polls)."""
        return self.fd is not None

    def __enter__(self) -> StateDirWatch:
        if self.wakeup_fd is None:
            return self
        try:
            import fcntl  # after the SIGHUP (see the imports above)

            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except (OSError, ImportError):
            return self
        try:
            # The handler before the watch: SIGIO's default action terminates.
            self._previous = signals.signal(signals.SIGIO, _woken)
        except ValueError:  # not the main thread
            os.close(fd)
            return self
        try:
            fcntl.fcntl(fd, fcntl.F_NOTIFY, fcntl.DN_RENAME | fcntl.DN_MULTISHOT)
        except (OSError, AttributeError):  # no dnotify (kernel, file system): poll
            os.close(fd)
            _restore_handler(signals.SIGIO, self._previous)
            return self
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the watch goes with it: no SIGIO after this
            self.fd = None
            _restore_handler(signals.SIGIO, self._previous)

    def wait(self, timeout: float) -> None:
        """Until a document landed in the directory, a signal arrived, or ``timeout``."""
        if self.wakeup_fd is None:
            time.sleep(timeout)
            return
        import select  # after the SIGHUP (see the imports above)

        try:
            ready, _, _ = select.select([self.wakeup_fd], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                os.read(self.wakeup_fd, 65536)  # which signals they were does not matter (the handlers recorded them)
            except BlockingIOError:
                pass


def _woken(signum: int, frame: FrameType | None) -> None:
    """SIGIO from the state directory's watch: the wakeup fd already woke the waiter."""


def _restore_handler(signum: int, previous: Any) -> None:
    """Put back the handler ``signal()`` returned; None (one not set from Python) as the default."""
    signals.signal(signum, signals.SIG_DFL if previous is None else previous)


class _Terminated(list[int]):
    """SIGTERMs received while waiting; ``wakeup_fd`` makes a waiting select() return at once."""

    wakeup_fd: int | None = None


class _SigtermStopsWaiting:
    """While waiting, SIGTERM ends the wait with exit status 0.

    systemd sends SIGTERM to ``ExecReload=`` when it cancels the reload job
    (``systemctl stop`` during a reload) or when the reload outlived
    ``TimeoutStartSec=`` (then it has already marked the reload failed).  A
    control process killed by SIGTERM counts as a failure of the unit
    (systemd's is_clean_exit(EXIT_CLEAN_COMMAND)): a stop during a reload
    left the service ``failed`` with ``Result=signal`` on systemd 252 although
    the daemon itself exited cleanly.  Seen with the issue-4 harness.

    Outside the main thread (a caller's thread) CPython refuses signal
    handlers; the wait then ends by its own means only.
    """

    def __init__(self) -> None:
        self.terminated = _Terminated()  # the handler only records (no locks: it runs between bytecodes)
        self._fds: tuple[int, int] | None = None
        self._previous: Any = None
        self._previous_fd = -1

    def _record(self, signum: int, frame: FrameType | None) -> None:
        self.terminated.append(signum)

    def __enter__(self) -> _Terminated:
        reader, writer = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            self._previous = signals.signal(signals.SIGTERM, self._record)
        except ValueError:  # not the main thread
            os.close(reader)
            os.close(writer)
            return self.terminated
        self._fds = (reader, writer)
        self._previous_fd = signals.set_wakeup_fd(writer)
        self.terminated.wakeup_fd = reader
        return self.terminated

    def __exit__(self, *exc: object) -> None:
        if self._fds is None:
            return
        signals.set_wakeup_fd(self._previous_fd)
        _restore_handler(signals.SIGTERM, self._previous)
        for fd in self._fds:
            os.close(fd)
        self._fds = None


def _wait(
    pid: int,
    state_file: str,
    generation: int,
    sent: float,
    timeout: float,
    poll: float,
    progress: Callable[[dict[str, Any] | None, float], None] | None,
    terminated: _Terminated,
    watch: StateDirWatch,
    ack: tuple[float, tuple[int, int, int] | None] | None = None,
) -> WaitResult:
    deadline = sent + timeout
    # With a watch, the poll is only the safety net for a process that dies
    # without writing; without one it is the whole mechanism.
    interval = max(poll, 0.5) if watch.armed else poll
    while True:
        if terminated:
            return WaitResult(
                Outcome.OK,
                f"stopped waiting for the reload of pid {pid}: SIGTERM (the service manager cancelled "
                "the reload job); the service finishes the cycle on its own",
            )
        doc = read_state(state_file)
        if finished_after(doc, pid, generation, sent):
            assert doc is not None
            outcome = Outcome.OK if doc.get("result") == "ok" else Outcome.FAILED
            return WaitResult(outcome, str(doc.get("message") or doc.get("result")), doc)
        if not pid_alive(pid):
            return WaitResult(Outcome.FAILED, f"process {pid} exited during the reload")
        now = monotonic()
        if ack is not None:
            ack_deadline, unchanged = ack
            if _fingerprint(state_file) != unchanged:
                ack = None  # the service wrote: it is reloading
            elif now >= ack_deadline:
                return WaitResult(
                    Outcome.FAILED,
                    f"pid {pid} did not record the reload in {state_file} within {ack_deadline - sent:g}s: "
                    f"it cannot write there ({os.path.dirname(state_file)} missing, read-only or full?) or it is not "
                    "responding; its result cannot be known from here (see the service's log or STATUS=)",
                    doc,
                )
        if now >= deadline:
            phase = (doc or {}).get("phase", "unknown")
            return WaitResult(
                Outcome.FAILED,
                f"timed out after {timeout:g}s waiting for the reload of pid {pid} to finish "
                f"(phase: {phase}); the process is still running",
                doc,
            )
        if progress is not None:
            progress(doc, now - sent)
            interval = poll  # the progress line ticks at the poll rate
        watch.wait(min(interval, deadline - now))


class SignalRequest:
    """What ``cinder-reload signal`` was asked to do (cli.py's parser and entry.py's both make one)."""

    __slots__ = ("service", "pid", "pidfile", "wait", "timeout", "ack_timeout", "state_dir")

    def __init__(
        self,
        service: str,
        *,
        pid: int | None = None,
        pidfile: str | None = None,
        wait: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        ack_timeout: float = ACK_TIMEOUT,
        state_dir: str | None = None,
    ) -> None:
        self.service = service
        self.pid = pid
        self.pidfile = pidfile
        self.wait = wait
        self.timeout = timeout
        self.ack_timeout = ack_timeout
        self.state_dir = state_dir

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SignalRequest):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"SignalRequest({fields})"


def run_signal(request: SignalRequest) -> int:
    """``cinder-reload signal``: send, wait if asked, tell the operator; the exit status."""
    if request.pidfile is not None:
        pid = read_pidfile(request.pidfile)
        if pid is None:
            print(f"{request.service}: not running (no valid pid in {request.pidfile})", file=sys.stderr)
            return Outcome.NOT_RUNNING
    else:
        assert request.pid is not None
        pid = request.pid
    progress = _progress_printer()
    result = signal_and_wait(
        pid,
        state_file_name(request.service, runtime_dir_name(override=request.state_dir)),
        wait=request.wait,
        timeout=request.timeout,
        progress=progress,
        service=request.service,
        ack_timeout=request.ack_timeout,
    )
    if progress is not None:
        sys.stderr.write("\r" + " " * 40 + "\r")
    stream = sys.stdout if result.outcome == Outcome.OK else sys.stderr
    if result.outcome == Outcome.NOT_RUNNING:
        print(f"{request.service}: not running ({result.message})", file=stream)
    elif request.wait or result.outcome != Outcome.OK:
        print(f"{request.service}: {result.message}", file=stream)
    return int(result.outcome)


def _progress_printer() -> Callable[[dict[str, Any] | None, float], None] | None:
    """A ticking phase line on a terminal; nothing for a service manager."""
    if not sys.stderr.isatty():
        return None
    shown: dict[str, str] = {}

    def show(doc: dict[str, Any] | None, elapsed: float) -> None:
        phase = (doc or {}).get("phase") or "waiting"
        line = f"\rreloading: {phase} ({elapsed:.1f}s)"
        if shown.get("line") != line:
            sys.stderr.write(line.ljust(40))
            sys.stderr.flush()
            shown["line"] = line

    return show
