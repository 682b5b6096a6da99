"""The product's units and init scripts, rendered for the reference daemon.

Everything comes from ``cinder_reload.render`` (issue 3), the code that
renders the committed ``units/`` and ``initscripts/``, with a ``ServiceSpec``
for the reference daemon.  What a test copy changes, and why:

* ``User=``/``Group=`` are left out by the renderer itself (``user=None``): a
  systemd user manager cannot switch users (real-components.md);
* ``ExecStart=`` runs ``tests/refdaemon.py`` instead of ``cinder-reload run
  refdaemon`` (which knows only cinder services): the one line replaced;
* the cinder-reload path is the one of the environment (the repository's
  venv on the host, ``/usr/local/bin/cinder-reload`` in the Debian root),
  passed to the renderer as ``RenderSpec.cinder_reload``.

The init script is rendered unchanged; its ``/etc/default/refdaemon`` (the
override file the script reads) points it at the reference daemon, as an
operator's would.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from cinder_reload.render import RenderSpec, ServiceSpec, render_initscript, render_path_units, render_unit

from .namespaces import REPO

__all__ = [
    "DaemonPaths",
    "refdaemon_default",
    "refdaemon_initscript",
    "refdaemon_path_units",
    "refdaemon_unit",
    "runtime_directory",
]

NAME = "refdaemon"


@dataclass(frozen=True)
class DaemonPaths:
    """Where the reference daemon's files are, as the manager's processes see them."""

    python: str
    cinder_reload: str
    config: str
    socket: str
    log: str
    state_dir: str = ""

    def daemon_args(self) -> list[str]:
        argv = [str(REPO / "tests/refdaemon.py"), "--config-file", self.config, "--socket", self.socket]
        argv += ["--log-file", self.log]
        if self.state_dir:
            argv += ["--state-dir", self.state_dir]
        return argv


def _spec(
    systemd_version: int, paths: DaemonPaths, timeout_start: float, timeout_stop: float, **extra: object
) -> RenderSpec:
    start = max(1, round(timeout_start))
    service = ServiceSpec(
        name=NAME,
        title="Reference daemon (tests)",
        storage=True,  # no sandboxing: the daemon's files are in a test directory under /tmp
        timeout_start=start,
        rdo_log=f"{NAME}.log",
    )
    return RenderSpec(
        systemd_version=systemd_version,
        cinder_reload=paths.cinder_reload,
        user=None,
        group=None,
        timeout_stop=max(1, round(timeout_stop)),
        # ExecReload='s own --timeout stays below TimeoutStartSec= (render's rule), also for short test timeouts.
        reload_margin=5 if start > 10 else 1,
        services=(service,),
        **extra,  # type: ignore[arg-type]
    )


def refdaemon_unit(
    systemd_version: int, paths: DaemonPaths, *, timeout_start: float = 30, timeout_stop: float = 10
) -> str:
    """The rendered unit for ``systemd_version``, running the reference daemon."""
    spec = _spec(systemd_version, paths, timeout_start, timeout_stop)
    text = render_unit(spec, spec.services[0])
    exec_start = "ExecStart=" + shlex.join([paths.python, *paths.daemon_args()])
    text, count = re.subn(r"(?m)^ExecStart=.*$", lambda _: exec_start, text)
    if count != 1:
        raise AssertionError(f"expected one ExecStart= in the rendered unit, found {count}:\n{text}")
    if re.search(r"(?m)^(User|Group)=", text):
        raise AssertionError(f"rendered with user=None but the unit still switches users:\n{text}")
    return text


def refdaemon_path_units(paths: DaemonPaths) -> dict[str, str]:
    """The optional reload-on-change ``.path`` unit and its ``.service``, for a user manager.

    Rendered for the daemon's own configuration file.  One change, for the
    user manager: ``systemctl`` gets ``--user`` (the rendered unit talks to
    the system manager, which is the one that runs it in production).
    """
    spec = _spec(252, paths, 30, 10, config_files=(paths.config,))
    units = render_path_units(spec, spec.services[0])
    derived = {}
    for name, text in units.items():
        text, count = re.subn(r"/bin/systemctl ", "/bin/systemctl --user ", text)
        if name.endswith(".service") and count != 2:
            raise AssertionError(f"expected two systemctl calls in {name}, found {count}:\n{text}")
        derived[name] = text
    return derived


def runtime_directory(unit_text: str) -> str:
    """The unit's (first) ``RuntimeDirectory=``: where its state files live."""
    match = re.search(r"(?m)^RuntimeDirectory=(\S+)", unit_text)
    if match is None:
        raise AssertionError(f"no RuntimeDirectory= in the unit:\n{unit_text}")
    return match.group(1)


def refdaemon_initscript(paths: DaemonPaths, *, timeout_start: float = 30, timeout_stop: float = 10) -> str:
    """The rendered LSB init script (unchanged; configured by ``refdaemon_default``)."""
    spec = _spec(0, paths, timeout_start, timeout_stop)
    return render_initscript(spec, spec.services[0])


def refdaemon_default(paths: DaemonPaths, workdir: str, *, reload_timeout: float = 30, stop_timeout: float = 10) -> str:
    """``/etc/default/refdaemon``: the init script's overrides, pointing it at the reference daemon."""
    settings = {
        "CINDER_RELOAD": paths.cinder_reload,
        "STATE_DIR": paths.state_dir,
        "CINDER_USER": "root",
        "CINDER_GROUP": "root",
        "WORKDIR": workdir,
        "DAEMON": paths.python,
        "DAEMON_ARGS": shlex.join(paths.daemon_args()),
        "START_TIMEOUT": "30",
        "RELOAD_TIMEOUT": f"{reload_timeout:g}",
        "STOP_TIMEOUT": f"{stop_timeout:g}",
        "DAEMON_OUTPUT": f"{paths.log}.out",
    }
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in settings.items())
