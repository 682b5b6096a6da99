"""The cached cinder virtualenv the end-to-end tests run real cinder from.

Built once per set of requirements (tests/cinder/requirements.txt, what
pyproject.toml fixes in an editable install of the project, the repo's path)
under ``/var/cache/cinder-reload``; the first build takes minutes,
later runs find it in well under a second.

Atomic for every reader: the venv is built in ``venvs/<key>`` under an
exclusive lock and only then published as the symlink
``cinder-venv-<key>`` (a rename), which is what readers look for (this
module, and tests/stack/cinderenv.py, which scans the cache).  A venv cannot
be built elsewhere and renamed: its scripts name their interpreter by path.

    python tests/cinder/cinder_venv.py         # build (or find) it, print its path
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

__all__ = ["CACHE", "cinder_venv", "venv_key"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "requirements.txt"
CACHE = Path(os.environ.get("CINDER_RELOAD_CACHE", "/var/cache/cinder-reload"))
COMPLETE = ".cinder-reload-complete"


def _install_metadata() -> bytes:
    """What an editable install of the project fixes at install time.

    Code changes need no rebuild (editable); dependencies, console scripts,
    entry points (``cinder_reload.options``) and the package list do.
    """
    with open(REPO / "pyproject.toml", "rb") as handle:
        data = tomllib.load(handle)
    project = data.get("project", {})
    relevant = {
        "dependencies": project.get("dependencies"),
        "scripts": project.get("scripts"),
        "entry-points": project.get("entry-points"),
        "packages": data.get("tool", {}).get("setuptools", {}).get("packages"),
    }
    return json.dumps(relevant, sort_keys=True).encode()


EDITABLE_MODE = "compat"


def venv_key() -> str:
    digest = hashlib.sha256()
    parts = (REQUIREMENTS.read_bytes(), _install_metadata(), str(REPO).encode(), sys.version.encode(), EDITABLE_MODE)
    for part in (p.encode() if isinstance(p, str) else p for p in parts):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _prune(current: str, older_than: float = 6 * 3600) -> None:
    """Remove venvs of superseded keys untouched for ``older_than`` seconds (300+ MB each)."""
    now = time.time()
    for link in CACHE.glob("cinder-venv-*"):
        if not link.is_symlink():
            continue
        key = link.name.removeprefix("cinder-venv-")
        if key == current:
            continue
        try:
            if now - link.lstat().st_mtime < older_than:
                continue
            with open(CACHE / f".cinder-venv-{key}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # never one being built
                link.unlink()
                shutil.rmtree(CACHE / "venvs" / key, ignore_errors=True)
        except OSError:
            continue


def _complete(path: Path) -> bool:
    return (path / COMPLETE).exists() and (path / "bin" / "cinder-reload").exists()


def cinder_venv(log: Path | None = None) -> Path:
    """The path of a complete cinder venv for the current requirements; built if missing."""
    named = os.environ.get("CINDER_RELOAD_CINDER_VENV")
    if named:
        return Path(named)
    key = venv_key()
    link = CACHE / f"cinder-venv-{key}"
    if _complete(link):
        return link
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".cinder-venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build finishes first
        if _complete(link):
            return link
        target = CACHE / "venvs" / key
        shutil.rmtree(target, ignore_errors=True)  # a build that died half-way
        target.parent.mkdir(parents=True, exist_ok=True)
        log = log or CACHE / f"cinder-venv-{key}.log"
        with open(log, "w") as out:

            def step(*argv: str) -> None:
                out.write(f"$ {' '.join(argv)}\n")
                out.flush()
                if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode:
                    raise RuntimeError(f"building the cinder venv failed at {argv[:4]}...; see {log}")

            step(sys.executable, "-m", "venv", str(target))
            pip = str(target / "bin" / "pip")
            step(pip, "install", "-q", "--upgrade", "pip")
            step(pip, "install", "-q", "-r", str(REQUIREMENTS))
            # compat: a path entry in a .pth, as a packaged install's import
            # costs, not setuptools' import-hook finder (pathlib, importlib.util
            # ... on every start of `cinder-reload signal`, i.e. every reload).
            step(pip, "install", "-q", "--config-settings", f"editable_mode={EDITABLE_MODE}", "-e", str(REPO))
            step(str(target / "bin" / "python"), "-c", "import cinder.tests.fake_driver, cinder_reload.cinder.run")
        (target / COMPLETE).write_text(key + "\n")
        tmp_link = CACHE / f".cinder-venv-{key}.{os.getpid()}"
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(target)
        os.replace(tmp_link, link)
    _prune(key)
    return link


if __name__ == "__main__":
    print(cinder_venv())
