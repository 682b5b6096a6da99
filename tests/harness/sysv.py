"""The SysV path: the Debian 13 root with no service manager at all.

``/usr/sbin/service NAME reload`` runs ``/etc/init.d/NAME reload`` there
(Debian's ``service`` only hands over to systemctl when
``/run/systemd/system`` exists, and this root's fresh ``/run`` has none).
The root is an overlay of ``roots.trixie_root()``, so installing an init
script or a package never changes the cached root.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .commands import CommandResult
from .namespaces import BASE_PATH, RootNamespace
from .roots import trixie_root

__all__ = ["SysvRoot"]


class SysvRoot:
    """A running (manager-less) Debian 13 root; commands run chrooted in it."""

    name = "sysv"
    python = "/usr/bin/python3"
    cinder_reload = "/usr/local/bin/cinder-reload"

    def __init__(self, workdir: Path, *, binds: Iterable[Path] = ()) -> None:
        self.workdir = workdir
        self.ns = RootNamespace(
            trixie_root(), workdir, binds=[workdir, *binds], systemd_run_dir=False, log=workdir / "sysv.log"
        )
        # The namespace's anchor: a process that only keeps it alive.  Daemons
        # the init scripts start live on in the same mount namespace and are
        # killed by PID with it in close().
        self.ns.start("/bin/sleep infinity", {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root"})
        self.closed = False

    def run(self, argv: list[str], timeout: float = 120.0) -> CommandResult:
        return self.ns.run(argv, timeout=timeout)

    def install_initscript(self, name: str, text: str) -> Path:
        self.ns.write_file(f"/etc/init.d/{name}", text, mode=0o755)
        return self.ns.host_path(f"/etc/init.d/{name}")

    def service(self, name: str, verb: str, timeout: float = 120.0) -> CommandResult:
        """``service NAME VERB``, as an operator types it."""
        return self.run(["service", name, verb], timeout=timeout)

    def host_path(self, path: str) -> Path:
        return self.ns.host_path(path)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.ns.kill_all()
        finally:
            self.ns.cleanup()

    def __enter__(self) -> SysvRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
