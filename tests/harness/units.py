"""Unit files and init scripts for the reference daemon, as the tests install them.

The product's own units and LSB scripts come from ``cinder-reload render``
(issue 3).  When that exists (``cinder_reload.render``), ``refdaemon_unit``
and ``refdaemon_initscript`` use it; until then they build the same two
flavours by hand, so the harness and the tests already run:

* systemd >= 253: ``Type=notify-reload`` (the manager sends SIGHUP and waits
  for ``RELOADING=1`` + ``MONOTONIC_USEC`` and then ``READY=1``);
* systemd < 253: ``Type=notify`` and a synchronous ``ExecReload=cinder-reload
  signal ... --wait``.

The copies installed in a user manager have no ``User=``/``Group=`` (a user
manager cannot switch users: real-components.md).
"""

from __future__ import annotations

import importlib
import shlex
from dataclasses import dataclass

from .namespaces import REPO

__all__ = ["DaemonPaths", "render_available", "refdaemon_initscript", "refdaemon_unit"]

NOTIFY_RELOAD_SINCE = 253


@dataclass(frozen=True)
class DaemonPaths:
    """Where the reference daemon's files are, as the manager's processes see them."""

    python: str
    cinder_reload: str
    config: str
    socket: str
    log: str
    pidfile: str = ""
    state_dir: str = ""

    def exec_start(self, *, pidfile: bool = False) -> list[str]:
        argv = [
            self.python,
            str(REPO / "tests/refdaemon.py"),
            "--config-file",
            self.config,
            "--socket",
            self.socket,
            "--log-file",
            self.log,
        ]
        if pidfile and self.pidfile:
            argv += ["--pidfile", self.pidfile]
        if self.state_dir:
            argv += ["--state-dir", self.state_dir]
        return argv


def render_available() -> bool:
    try:
        importlib.import_module("cinder_reload.render")
    except ImportError:
        return False
    return True


def refdaemon_unit(
    systemd_version: int,
    paths: DaemonPaths,
    *,
    timeout_start: float = 30,
    timeout_stop: float = 10,
    reload_timeout: float | None = None,
) -> str:
    """A user-manager unit running the reference daemon (fallback flavour)."""
    exec_start = shlex.join(paths.exec_start())
    lines = [
        "[Unit]",
        "Description=cinder-reload reference daemon (test)",
        "",
        "[Service]",
    ]
    if systemd_version >= NOTIFY_RELOAD_SINCE:
        lines += ["Type=notify-reload", "NotifyAccess=main"]
    else:
        wait = reload_timeout if reload_timeout is not None else timeout_start
        lines += [
            "Type=notify",
            "NotifyAccess=main",
            f"ExecReload={paths.cinder_reload} signal refdaemon --pid $MAINPID --wait --timeout {wait:g}",
        ]
    lines += [
        f"ExecStart={exec_start}",
        "RuntimeDirectory=refdaemon",
        "RuntimeDirectoryPreserve=yes",
        "Restart=on-failure",
        f"TimeoutStartSec={timeout_start:g}",
        f"TimeoutStopSec={timeout_stop:g}",
        "",
    ]
    return "\n".join(lines)


def refdaemon_initscript(paths: DaemonPaths, *, reload_timeout: float = 30, stop_timeout: float = 10) -> str:
    """An LSB init script for the reference daemon (fallback until issue 3's lands)."""
    args = shlex.join(paths.exec_start(pidfile=True)[1:])
    return f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          refdaemon
# Required-Start:    $remote_fs $syslog
# Required-Stop:     $remote_fs $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: cinder-reload reference daemon (test)
### END INIT INFO
NAME=refdaemon
DAEMON={paths.python}
PIDFILE={paths.pidfile}
STATE_DIR={paths.state_dir}
OUTPUT={paths.log}.out
. /lib/lsb/init-functions

case "$1" in
start)
    log_daemon_msg "Starting $NAME" "$NAME"
    start-stop-daemon --start --quiet --background --output "$OUTPUT" --pidfile "$PIDFILE" --exec "$DAEMON" -- {args}
    log_end_msg $?
    ;;
stop)
    log_daemon_msg "Stopping $NAME" "$NAME"
    start-stop-daemon --stop --quiet --retry=TERM/{stop_timeout:g}/KILL/5 --pidfile "$PIDFILE" --remove-pidfile
    rc=$?
    [ $rc = 1 ] && rc=0   # not running: stopped already
    log_end_msg $rc
    exit $rc
    ;;
reload|force-reload)
    # Synchronous: returns when the daemon's reload cycle finished, 1 if it
    # failed (reason on stderr), 7 if not running.
    {paths.cinder_reload} signal "$NAME" --pidfile "$PIDFILE" --state-dir "$STATE_DIR" \\
        --wait --timeout {reload_timeout:g}
    exit $?
    ;;
status)
    status_of_proc -p "$PIDFILE" "$DAEMON" "$NAME"
    ;;
*)
    echo "Usage: /etc/init.d/$NAME {{start|stop|status|reload|force-reload}}" >&2
    exit 3
    ;;
esac
exit 0
"""
