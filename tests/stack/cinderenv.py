"""Where real cinder comes from, and the configuration of one stack.

The cinder virtualenv is the cached one under ``/var/cache/cinder-reload/``
that tests/cinder/cinder_venv.py (issue 5) keys on its requirements and
builds on first use (cinder from PyPI, this project editable, so the venv
has ``cinder-reload``), or the one named by ``$CINDER_RELOAD_CINDER_VENV``.  What
only the stack needs on top, PyMySQL for ``mysql+pymysql://``, is installed
with that venv's pip into a small ``--target`` directory beside it, keyed by
its requirement and put on the services' ``PYTHONPATH`` with ``tests/`` (for
the slow driver).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CACHE",
    "CinderVenv",
    "StackConfig",
    "find_cinder_venv",
    "stack_deps",
]

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
CACHE = Path(os.environ.get("CINDER_RELOAD_CACHE", "/var/cache/cinder-reload"))
VENV_ENV = "CINDER_RELOAD_CINDER_VENV"
STACK_REQUIREMENTS = ("PyMySQL==1.1.1",)


@dataclass(frozen=True)
class CinderVenv:
    path: Path

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    @property
    def python(self) -> str:
        return self.bin("python")

    def has(self, module: str) -> bool:
        return subprocess.run([self.python, "-c", f"import {module}"], capture_output=True, check=False).returncode == 0

    @property
    def api_paste(self) -> Path:
        return self.path / "etc/cinder/api-paste.ini"

    @property
    def interpreter_prefix(self) -> Path:
        """Where the venv's base Python is installed (``home`` in pyvenv.cfg,
        minus ``bin``): to be bind-mounted where the venv runs in another root."""
        for line in (self.path / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return Path(value.strip()).parent
        raise RuntimeError(f"{self.path}/pyvenv.cfg names no home")


def _is_cinder_venv(path: Path) -> bool:
    return (path / "bin/cinder-volume").exists() and (path / "bin/python").exists()


def _issue5_builder() -> Callable[[], Path]:
    """tests/cinder/cinder_venv.py's ``cinder_venv()``: the keyed, cached venv
    (cinder from PyPI + this project editable), built on first use."""
    spec = importlib.util.spec_from_file_location("_cinder_venv", TESTS / "cinder" / "cinder_venv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cinder_venv  # type: ignore[no-any-return]


def find_cinder_venv() -> CinderVenv | None:
    """The cinder venv to use: ``$CINDER_RELOAD_CINDER_VENV``, else the one
    tests/cinder/cinder_venv.py keys on the current requirements (built there
    when missing, never here), else None."""
    named = os.environ.get(VENV_ENV)
    if named:
        return CinderVenv(Path(named)) if _is_cinder_venv(Path(named)) else None
    path = _issue5_builder()()
    return CinderVenv(path) if _is_cinder_venv(path) else None


def stack_deps(venv: CinderVenv) -> Path:
    """A directory with what the stack needs beyond cinder (PyMySQL); built once."""
    key = hashlib.sha256("\n".join(STACK_REQUIREMENTS).encode()).hexdigest()[:12]
    target = CACHE / f"stack-deps.{key}"
    done = target / ".complete"
    if done.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "stack-deps.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it right now
        if done.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        out = subprocess.run(
            [venv.python, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), *STACK_REQUIREMENTS],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"installing {STACK_REQUIREMENTS} failed:\n{out.stdout}{out.stderr}")
        done.write_text("\n".join(STACK_REQUIREMENTS) + "\n")
    return target


def service_env(venv: CinderVenv, deps: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment cinder's processes run with: the slow driver and PyMySQL importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "PYTEST_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(deps)])
    env["PATH"] = f"{venv.path / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@dataclass
class StackConfig:
    """cinder.conf of one stack: api (noauth), scheduler, volume with N backends."""

    workdir: Path
    database_url: str
    transport_url: str
    api_port: int
    api_paste: Path
    backends: Sequence[str] = ("fake1", "fake2")
    slow_op_seconds: Mapping[str, float] = field(default_factory=dict)
    default_slow: float = 0.3
    debug: bool = False
    host: str = "crstack"
    #: More [DEFAULT] lines (cinder-backup's driver, the scheduler's filters).
    default_lines: Sequence[str] = ()
    #: More lines of each backend's section, by backend.
    backend_lines: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: Whole sections after the backends' (``[privsep_osbrick]``).
    extra_sections: str = ""

    @property
    def path(self) -> Path:
        return self.workdir / "cinder.conf"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    def render(
        self,
        *,
        debug: bool | None = None,
        slow: Mapping[str, float] | None = None,
        extra: str = "",
        default_lines: Sequence[str] | None = None,
    ) -> str:
        debug = self.debug if debug is None else debug
        default_lines = self.default_lines if default_lines is None else default_lines
        slow = {**self.slow_op_seconds, **(slow or {})}
        lines = [
            "[DEFAULT]",
            f"debug = {str(debug).lower()}",
            f"transport_url = {self.transport_url}",
            "auth_strategy = noauth",
            f"api_paste_config = {self.workdir / 'api-paste.ini'}",
            f"state_path = {self.workdir / 'state'}",
            f"log_dir = {self.log_dir}",
            f"host = {self.host}",
            f"enabled_backends = {','.join(self.backends)}",
            "osapi_volume_listen = 127.0.0.1",
            f"osapi_volume_listen_port = {self.api_port}",
            "osapi_volume_workers = 1",
            # Unlimited quotas: the load keeps dozens of volumes alive at once.
            "quota_volumes = -1",
            "quota_gigabytes = -1",
            "quota_snapshots = -1",
            "quota_backups = -1",
            "quota_backup_gigabytes = -1",
            "quota_groups = -1",
            "rpc_response_timeout = 120",
            *default_lines,
            "",
            "[database]",
            f"connection = {self.database_url}",
            # Bounded so the stack's ~6 processes stay well under MariaDB's
            # default max_connections (151) even beside another user of it:
            # "Too many connections" failed operations here when they did not.
            "max_pool_size = 5",
            "max_overflow = 10",
            "",
            "[oslo_concurrency]",
            f"lock_path = {self.workdir / 'lock'}",
            "",
        ]
        for name in self.backends:
            lines += [
                f"[{name}]",
                "volume_driver = stack.slowdriver.SlowFakeDriver",
                f"volume_backend_name = {name}",
                f"slow_op_seconds = {slow.get(name, self.default_slow):g}",
                *self.backend_lines.get(name, ()),
                "",
            ]
        return "\n".join(lines) + self.extra_sections + extra

    def write(self, text: str | None = None, **kwargs: object) -> str:
        """Write the file atomically (a reload never reads half of it)."""
        content = self.render(**kwargs) if text is None else text  # type: ignore[arg-type]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(content)
        os.replace(tmp, self.path)
        return content

    def prepare(self) -> None:
        for sub in ("state", "lock", "log"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.api_paste, self.workdir / "api-paste.ini")
        self.write()
