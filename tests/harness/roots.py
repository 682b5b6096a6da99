"""A cached Debian 13 (trixie) root, built once with debootstrap.

``trixie_root()`` returns a directory holding a minimal Debian 13 system with
systemd 257, Python 3 and the Debian packages cinder-reload depends on.  It
is built the first time it is asked for (about a minute and ~300 MB) and kept
under ``/var/cache/cinder-reload`` so later runs start at once.

The cache is keyed by everything the root is built from (suite, variant,
mirror, package list, a format number): a change to any of them builds a new
root.  A build goes into a temporary directory next to the cache and is
published by atomically replacing the ``trixie-root`` symlink, so a killed
build never leaves a half root behind where a reader would find it.  A lock
file serialises concurrent builders (parallel test runs).

Treat the returned directory as read-only: tests that change files in the
root (install an init script, a .deb) work on an overlay of it, see
``harness.namespace.RootNamespace``.

Why Debian's Python packages rather than the host's virtualenv: the host venv
is built for Debian 12's Python 3.11 and cannot run on trixie's 3.13, while
python3-oslo.config, python3-systemd and python3-jinja2 are what the .deb of
cinder-reload itself depends on, so the root is also the system the package
is installed on.  The project's own source is bind-mounted into the overlay
at run time (never copied into the cache), so editing the code never needs a
rebuild.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["CACHE_DIR", "TRIXIE_PACKAGES", "RootBuildError", "cached_root", "root_key", "trixie_root"]

CACHE_DIR = Path(os.environ.get("CINDER_RELOAD_CACHE", "/var/cache/cinder-reload"))
SUITE = "trixie"
VARIANT = "minbase"
MIRROR = os.environ.get("CINDER_RELOAD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: Bump when the way the root is prepared after debootstrap changes.
FORMAT = 1

#: What goes into the root besides minbase, and why.
TRIXIE_PACKAGES = (
    "systemd",  # the 257 user manager, systemctl, systemd-analyze verify
    "dbus",  # what a real systemd installation has; systemctl --user falls back to the private socket
    "python3",  # runs cinder-reload and the reference daemon (Python 3.13)
    "python3-oslo.config",  # cinder-reload's dependencies, as the .deb declares them
    "python3-jinja2",
    "python3-systemd",  # the preferred sd_notify backend (libsystemd)
    "sysvinit-utils",  # /lib/lsb/init-functions for the LSB scripts
    "init-system-helpers",  # /usr/sbin/service, invoke-rc.d
    "procps",  # ps/pgrep for init scripts and debugging
)

STAMP = ".cinder-reload-root.json"


class RootBuildError(RuntimeError):
    pass


def root_key(packages: tuple[str, ...] = TRIXIE_PACKAGES) -> str:
    spec = {"suite": SUITE, "variant": VARIANT, "mirror": MIRROR, "packages": sorted(packages), "format": FORMAT}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _valid(root: Path, key: str) -> bool:
    # The stamp is written last, after a complete build: no stamp, no root.
    try:
        stamp = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return bool(stamp.get("key") == key)


def _debootstrap(target: Path, log: Path) -> dict[str, object]:
    if shutil.which("debootstrap") is None:
        raise RootBuildError("debootstrap is not installed (tools/setup installs it from tools/apt-packages.txt)")
    cmd = [
        "debootstrap",
        f"--variant={VARIANT}",
        "--include=" + ",".join(TRIXIE_PACKAGES),
        SUITE,
        str(target),
        MIRROR,
    ]
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise RootBuildError(f"{' '.join(cmd)} failed ({proc.returncode}); log {log}:\n" + "\n".join(tail))
    if not (target / "usr/lib/systemd/systemd").exists():
        raise RootBuildError(f"debootstrap succeeded but {target} has no systemd; log {log}")
    # Nothing may start services inside the root while packages are installed
    # later (dpkg -i in an overlay): Debian's policy-rc.d convention.
    policy = target / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    # Drop the packages debootstrap downloaded: a third of the size.
    for cache in (target / "var/cache/apt/archives").glob("*.deb"):
        cache.unlink()
    return {"suite": SUITE, "variant": VARIANT, "mirror": MIRROR, "packages": sorted(TRIXIE_PACKAGES), "format": FORMAT}


Builder = Callable[[Path, Path], Mapping[str, object]]


def cached_root(cache_dir: Path, name: str, key: str, build: Builder) -> Path:
    """``cache_dir/name.<key>``, built by ``build(target, log)`` unless already there.

    The build happens in ``cache_dir/.name.building.*``; the stamp is written
    when ``build`` returned, then the directory is renamed into place and the
    ``cache_dir/name`` symlink replaced in one rename.  A failed or killed
    build is never published; its leftovers are removed by the next build.
    Roots of other keys are removed once the new one is published.
    """
    link = cache_dir / name
    if _valid(link, key):
        return link.resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same root
        if _valid(link, key):
            return link.resolve()
        for stale in cache_dir.glob(f".{name}.building.*"):  # killed builds (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        final = cache_dir / f"{name}.{key}"
        if not _valid(final, key):
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.building.", dir=cache_dir))
            tmp.chmod(0o755)  # it becomes "/": mkdtemp's 0700 would lock out every user but root
            try:
                started = time.monotonic()
                info = dict(build(tmp, cache_dir / f"{name}.build.log"))
                info.update(
                    key=key,
                    built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    build_seconds=round(time.monotonic() - started, 1),
                )
                (tmp / STAMP).write_text(json.dumps(info, indent=2) + "\n")
                if final.exists():
                    shutil.rmtree(final)  # an unstamped leftover
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        # Publish: replace the symlink in one rename.
        new_link = cache_dir / f".{name}.link.{os.getpid()}"
        new_link.unlink(missing_ok=True)
        new_link.symlink_to(final.name)
        if link.exists() and not link.is_symlink():
            shutil.rmtree(link)  # an old layout: a plain directory
        os.replace(new_link, link)
        for old in cache_dir.glob(f"{name}.*"):
            if old.is_dir() and old != final and len(old.name) == len(final.name):
                shutil.rmtree(old, ignore_errors=True)  # roots of other keys
        return final


def trixie_root() -> Path:
    """The cached Debian 13 root (built on first use); treat it as read-only."""
    return cached_root(CACHE_DIR, "trixie-root", root_key(), _debootstrap)
