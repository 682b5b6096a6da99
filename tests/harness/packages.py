"""The packages under test, built once per session by tools/build-packages.

``build_packages()`` runs ``tools/build-packages`` (dpkg-buildpackage, lintian,
rpmbuild, rpmlint) into a temporary directory, exactly as a packager or CI
runs it, for the session fixtures of tests/packaging and tests/debian; a
failed build fails them all with the tool's own output.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup")


@dataclass(frozen=True)
class BuiltPackages:
    out: Path
    returncode: int
    output: str

    @property
    def debs(self) -> dict[str, Path]:
        """Binary package name -> .deb."""
        return {p.name.split("_")[0]: p for p in sorted((self.out / "deb").glob("*.deb"))}

    @property
    def rpms(self) -> dict[str, Path]:
        """Package name -> .rpm."""
        return {p.name.rsplit("-", 2)[0]: p for p in sorted((self.out / "rpm").glob("*.rpm"))}

    def check(self) -> BuiltPackages:
        assert self.returncode == 0, f"tools/build-packages exited {self.returncode}:\n{self.output[-6000:]}"
        return self


def build_packages(out: Path) -> BuiltPackages:
    """Run tools/build-packages into ``out``."""
    proc = subprocess.run(
        [str(REPO / "tools" / "build-packages"), str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return BuiltPackages(out, proc.returncode, proc.stdout + proc.stderr)
