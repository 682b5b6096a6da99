"""A clean Debian 13 system to install the .debs into.

The harness's cached trixie root (``harness.roots.trixie_root()``) seen
through an overlay in a private mount namespace: every change (installed
packages, a started daemon, removed files) goes to the overlay's upper
directory and is thrown away at the end, the cached root is never written.
Unlike the harness's own ``RootNamespace``, nothing of the repository is put
into it (no ``.pth``, no launcher, no bind mount of the tree): whatever
``cinder-reload`` runs there came from the package.  No service manager
runs there and ``/run/systemd/system`` does not exist, so ``service NAME
VERB`` and ``invoke-rc.d`` run the LSB init scripts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.commands import CommandResult
from harness.namespaces import BASE_PATH, RootNamespace
from harness.roots import trixie_root

__all__ = ["DebianRoot"]

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


class _PackageOnlyNamespace(RootNamespace):
    def _prepare_upper(self, upper: Path) -> None:
        pass  # the package provides cinder-reload, not the repository


class DebianRoot:
    """A running overlay of the cached Debian 13 root; ``binds`` appear at the same path."""

    def __init__(self, workdir: Path, *, binds: Sequence[Path] = ()) -> None:
        self.workdir = workdir
        self.ns = _PackageOnlyNamespace(
            trixie_root(),
            workdir,
            binds=[workdir, *binds],
            readonly_binds=(),
            systemd_run_dir=False,
            log=workdir / "root.log",
        )
        # The namespace's anchor; daemons started by init scripts live on in
        # the same mount namespace and are killed by PID in close().
        self.ns.start("/bin/sleep infinity", {"PATH": BASE_PATH, "LANG": "C.UTF-8", "HOME": "/root"})
        self.closed = False

    def run(self, argv: Sequence[str], timeout: float = 300.0) -> CommandResult:
        return self.ns.run(argv, env=APT_ENV, timeout=timeout)

    def sh(self, script: str, timeout: float = 300.0) -> CommandResult:
        return self.run(["sh", "-ec", script], timeout=timeout)

    def apt_install(self, debs: Sequence[Path]) -> CommandResult:
        """``apt-get install ./x.deb ...``: the packages and their dependencies from trixie."""
        argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *map(str, debs)]
        result = self.run(argv)
        if not result.ok and ("Failed to fetch" in result.output or "Unable to locate" in result.output):
            # The cached root's package lists are older than the mirror: refresh and retry once.
            self.run(["apt-get", "update", "-q"]).check()
            result = self.run(argv)
        return result

    def path(self, path: str) -> Path:
        """The host's way to reach ``path`` inside the root."""
        return self.ns.host_path(path)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        self.ns.write_file(path, text, mode)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.ns.kill_all()
        finally:
            self.ns.cleanup()

    def __enter__(self) -> DebianRoot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
