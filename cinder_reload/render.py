"""``cinder-reload render``: systemd units, drop-ins and LSB init scripts from templates.

    cinder-reload render --output DIR [--systemd-version N] [--naming debian|rdo] [--check]

Rendering is pure: a :class:`RenderSpec` goes in, a mapping of relative
paths to :class:`RenderedFile` comes out (:func:`render_tree`).  Only
:func:`write_tree` and :func:`check_tree` touch the disk.  The templates are
jinja2 with ``StrictUndefined``: a name missing from the spec is an error,
never an empty string in a unit file.

What ``DIR`` receives (``naming=debian``; ``rdo`` names the full units and
the optional path units ``openstack-cinder-*``):

    units/cinder-volume.service                               full unit
    units/cinder-volume-reload.path, ...-reload.service       optional, off by default
    units/dropins/debian/cinder-volume.service.d/reload.conf  for Debian's own unit
    units/dropins/rdo/openstack-cinder-volume.service.d/reload.conf  for RDO's
    initscripts/cinder-volume                                 LSB init script (Debian/Devuan)
    initscripts/default/cinder-volume                         its /etc/default file
"""

from __future__ import annotations

import argparse
import difflib
import functools
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2

__all__ = [
    "DISTROS",
    "EXEC_RELOAD_FIRST_SINCE",
    "NOTIFY_RELOAD_SINCE",
    "SERVICES",
    "DistroUnits",
    "RenderSpec",
    "RenderedFile",
    "ServiceSpec",
    "add_parser",
    "check_tree",
    "render_default",
    "render_dropin",
    "render_initscript",
    "render_path_units",
    "render_tree",
    "render_unit",
    "unit_name",
    "write_tree",
]

#: The first systemd with Type=notify-reload (systemd 253 NEWS).
NOTIFY_RELOAD_SINCE = 253
#: From systemd 259 on, a notify-reload unit's ExecReload= runs *before* the
#: reload signal, without it; if the service sends RELOADING=1 meanwhile no
#: signal follows (systemd 259 NEWS).  One unit can then have the manager's
#: reload tracking and a command whose exit status is the reload's result.
EXEC_RELOAD_FIRST_SINCE = 259
#: The flavour of the committed units/: the synchronous ExecReload= works
#: on every systemd still in use and reports a failed reload in
#: `systemctl reload`'s exit status (doc/source/admin/units.rst).
DEFAULT_SYSTEMD_VERSION = 252

Naming = Literal["debian", "rdo"]
#: This installation of the package: ExecReload= can run its entry.py directly (RenderSpec.python).
PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"


@dataclass(frozen=True)
class ServiceSpec:
    """One cinder service: what differs between the four."""

    name: str  # cinder-volume: the name `cinder-reload run` and the state file use
    title: str  # Volume
    #: Runs sudo/privsep helpers, attaches devices, mounts: no sandboxing.
    storage: bool
    #: TimeoutStartSec=: drivers initialise before READY=1; also bounds reloads.
    timeout_start: int
    #: RDO's log file name (--logfile /var/log/cinder/<rdo_log>).
    rdo_log: str
    after: tuple[str, ...] = ()
    should_start: tuple[str, ...] = ()


_COMMON_AFTER = (
    "network-online.target",
    "remote-fs.target",
    "mariadb.service",
    "mysql.service",
    "postgresql.service",
    "rabbitmq-server.service",
)
_STORAGE_AFTER = ("iscsid.service", "tgt.service", "target.service")
_COMMON_SHOULD_START = ("mariadb", "mysql", "postgresql", "rabbitmq-server")
_STORAGE_SHOULD_START = ("iscsid", "open-iscsi", "tgt")

SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("cinder-api", "API", False, 120, "api.log", _COMMON_AFTER, _COMMON_SHOULD_START),
    ServiceSpec("cinder-scheduler", "Scheduler", False, 120, "scheduler.log", _COMMON_AFTER, _COMMON_SHOULD_START),
    ServiceSpec(
        "cinder-volume",
        "Volume",
        True,
        300,
        "volume.log",
        _COMMON_AFTER + _STORAGE_AFTER,
        _COMMON_SHOULD_START + _STORAGE_SHOULD_START,
    ),
    ServiceSpec(
        "cinder-backup",
        "Backup",
        True,
        300,
        "backup.log",
        _COMMON_AFTER + _STORAGE_AFTER,
        _COMMON_SHOULD_START + _STORAGE_SHOULD_START,
    ),
)


@dataclass(frozen=True)
class DistroUnits:
    """A distribution's own cinder units, which a drop-in extends."""

    key: Naming
    title: str
    prefix: str  # "" or "openstack-"
    origin: str  # where its ExecStart= comes from, for the comment
    #: Arguments its ExecStart= gives cinder; {name} and {rdo_log} are filled in.
    args: tuple[str, ...]
    #: Its own RuntimeDirectory=, if any (then the drop-in only preserves it).
    runtime_directories: str = ""

    @property
    def has_runtime_directory(self) -> bool:
        return bool(self.runtime_directories)

    def unit(self, service: ServiceSpec) -> str:
        return f"{self.prefix}{service.name}.service"

    def cinder_args(self, service: ServiceSpec) -> str:
        return " ".join(a.format(name=service.name, rdo_log=service.rdo_log) for a in self.args)


DISTROS: Mapping[Naming, DistroUnits] = {
    "debian": DistroUnits(
        "debian",
        "Debian",
        "",
        "openstack-pkg-tools' /etc/init.d/NAME systemd-start",
        ("--config-file=/etc/cinder/cinder.conf", "--log-file=/var/log/cinder/{name}.log"),
        runtime_directories="cinder lock/cinder",
    ),
    "rdo": DistroUnits(
        "rdo",
        "RDO",
        "openstack-",
        "openstack-cinder.spec",
        (
            "--config-file /usr/share/cinder/cinder-dist.conf",
            "--config-file /etc/cinder/cinder.conf",
            "--logfile /var/log/cinder/{rdo_log}",
        ),
    ),
}

#: The configuration files a full unit passes, per naming: RDO keeps its
#: distribution defaults file in front of the operator's (openstack-cinder.spec).
CONFIG_FILES: Mapping[Naming, tuple[str, ...]] = {
    "debian": ("/etc/cinder/cinder.conf",),
    "rdo": ("/usr/share/cinder/cinder-dist.conf", "/etc/cinder/cinder.conf"),
}


@dataclass(frozen=True)
class RenderSpec:
    """Everything the templates read.  ``user=None`` leaves User=/Group= out
    (a systemd user manager cannot switch users)."""

    systemd_version: int = DEFAULT_SYSTEMD_VERSION
    naming: Naming = "debian"
    cinder_reload: str = "/usr/bin/cinder-reload"
    #: ExecReload= runs ``PYTHON -S <this package>/entry.py`` instead of the
    #: ``cinder-reload`` script (see :attr:`signal_command`); None: the script.
    python: str | None = None
    user: str | None = "cinder"
    group: str | None = "cinder"
    runtime_directory: str = "cinder"
    config_files: tuple[str, ...] = CONFIG_FILES["debian"]
    hardening: bool = True
    timeout_stop: int = 90
    #: ExecReload='s --timeout is TimeoutStartSec= minus this many seconds.
    reload_margin: int = 5
    documentation: tuple[str, ...] = ("https://docs.openstack.org/cinder/latest/",)
    services: tuple[ServiceSpec, ...] = field(default=SERVICES)

    @classmethod
    def for_naming(cls, naming: Naming, **kwargs: Any) -> RenderSpec:
        return cls(naming=naming, config_files=CONFIG_FILES[naming], **kwargs)

    @property
    def signal_command(self) -> str:
        """What ExecReload= runs ``signal ...`` with.

        Every ``systemctl reload`` (systemd < 253, and >= 259) waits for this
        process, interpreter start included.  The script runs the
        interpreter's ``site`` step first, which in a virtualenv executes its
        packages' ``.pth`` files (cinder's PyPI virtualenv: Paste's namespace
        packages, setuptools' distutils hack; ~8 ms of a 15 ms start here).
        ``signal`` needs none of it (entry.py imports builtin modules only
        before its SIGHUP), so with ``python`` the unit runs the module file
        of this installation directly, without ``site``.  For a virtualenv
        rendered from its own ``cinder-reload``: the path moves with it.
        """
        if self.python is None:
            return self.cinder_reload
        return f"{self.python} -S {PACKAGE_DIR / 'entry.py'}"

    @property
    def notify_reload(self) -> bool:
        return self.systemd_version >= NOTIFY_RELOAD_SINCE

    @property
    def exec_reload_first(self) -> bool:
        """systemd >= 259: Type=notify-reload plus the synchronous ExecReload=."""
        return self.systemd_version >= EXEC_RELOAD_FIRST_SINCE

    @property
    def flavour(self) -> str:
        """The flavour's name, as the unit's header comment and doc/source/admin/units.rst say it."""
        if self.exec_reload_first:
            return f">= {EXEC_RELOAD_FIRST_SINCE}"
        if self.notify_reload:
            return f"{NOTIFY_RELOAD_SINCE}-{EXEC_RELOAD_FIRST_SINCE - 1}"
        return f"< {NOTIFY_RELOAD_SINCE}"

    def cinder_args(self, service: ServiceSpec) -> str:
        return " ".join(f"--config-file {path}" for path in self.config_files)


@dataclass(frozen=True)
class RenderedFile:
    text: str
    mode: int = 0o644


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # unit files and shell, not HTML
    )


def _render(template: str, **context: Any) -> str:
    text = _environment().get_template(template).render(**context)
    # One blank line at most between blocks, one newline at the end.
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line == "" and (not lines or lines[-1] == ""):
            continue
        lines.append(line)
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def unit_name(spec: RenderSpec, service: ServiceSpec) -> str:
    return DISTROS[spec.naming].unit(service)


def render_unit(spec: RenderSpec, service: ServiceSpec) -> str:
    """The full systemd unit for ``service``."""
    return _render("service.j2", spec=spec, service=service, unit=unit_name(spec, service))


def render_dropin(spec: RenderSpec, service: ServiceSpec, distro: DistroUnits) -> str:
    """``reload.conf`` for ``distro``'s own unit of ``service``."""
    return _render("dropin-reload.conf.j2", spec=spec, service=service, distro=distro, unit=distro.unit(service))


def render_path_units(spec: RenderSpec, service: ServiceSpec) -> dict[str, str]:
    """The optional ``NAME-reload.path`` and the ``.service`` it starts."""
    unit = unit_name(spec, service)
    name = unit.removesuffix(".service") + "-reload"
    context = {"spec": spec, "service": service, "unit": unit, "name": name}
    return {
        f"{name}.path": _render("reload-on-change.path.j2", **context),
        f"{name}.service": _render("reload-on-change.service.j2", **context),
    }


def render_initscript(spec: RenderSpec, service: ServiceSpec) -> str:
    """The LSB init script; always Debian-named (no SysV init on RDO)."""
    return _render("initscript.j2", spec=spec, service=service)


def render_default(spec: RenderSpec, service: ServiceSpec) -> str:
    """``/etc/default/NAME`` for the init script: every setting, commented out."""
    return _render("default.j2", spec=spec, service=service)


def render_tree(spec: RenderSpec) -> dict[str, RenderedFile]:
    """Every file ``render`` writes, by path relative to the output directory."""
    files: dict[str, RenderedFile] = {}
    for service in spec.services:
        files[f"units/{unit_name(spec, service)}"] = RenderedFile(render_unit(spec, service))
        for name, text in render_path_units(spec, service).items():
            files[f"units/{name}"] = RenderedFile(text)
        for distro in DISTROS.values():
            path = f"units/dropins/{distro.key}/{distro.unit(service)}.d/reload.conf"
            files[path] = RenderedFile(render_dropin(spec, service, distro))
        files[f"initscripts/{service.name}"] = RenderedFile(render_initscript(spec, service), 0o755)
        files[f"initscripts/default/{service.name}"] = RenderedFile(render_default(spec, service))
    return files


# -- the edges: files -----------------------------------------------------------
MANAGED_DIRS = ("units", "initscripts")


def _on_disk(root: Path) -> set[str]:
    found: set[str] = set()
    for top in MANAGED_DIRS:
        base = root / top
        if base.is_dir():
            found.update(str(p.relative_to(root)) for p in base.rglob("*") if p.is_file() or p.is_symlink())
    return found


def check_tree(files: Mapping[str, RenderedFile], root: Path) -> list[str]:
    """Differences between ``files`` and ``root``, as lines for a person; empty when equal."""
    problems: list[str] = []
    for rel in sorted(set(files) | _on_disk(root)):
        path = root / rel
        want = files.get(rel)
        if want is None:
            problems.append(f"{rel}: on disk but not rendered (remove it)")
            continue
        if not path.is_file():
            problems.append(f"{rel}: missing")
            continue
        have = path.read_text(encoding="utf-8")
        if have != want.text:
            diff = difflib.unified_diff(
                have.splitlines(), want.text.splitlines(), f"{rel} (on disk)", f"{rel} (rendered)", lineterm=""
            )
            problems.append(f"{rel}: differs\n" + "\n".join(diff))
        mode = path.stat().st_mode & 0o777
        if mode & 0o111 != want.mode & 0o111:
            problems.append(f"{rel}: mode {mode:o}, want {want.mode:o}")
    return problems


def write_tree(files: Mapping[str, RenderedFile], root: Path) -> list[str]:
    """Write ``files`` under ``root``; remove stale files in the managed dirs.  Returns what changed."""
    changed: list[str] = []
    for rel in sorted(_on_disk(root) - set(files)):
        (root / rel).unlink()
        changed.append(f"removed {rel}")
    for rel, rendered in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text(encoding="utf-8") != rendered.text:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(rendered.text, encoding="utf-8")
            os.replace(tmp, path)
            changed.append(f"wrote {rel}")
        path.chmod(rendered.mode)
    for top in MANAGED_DIRS:  # directories emptied by removals
        for directory in sorted((root / top).rglob("*"), reverse=True):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
    return changed


# -- the command ----------------------------------------------------------------
def cmd_render(args: argparse.Namespace) -> int:
    spec = RenderSpec.for_naming(
        args.naming, systemd_version=args.systemd_version, cinder_reload=args.cinder_reload, python=args.python
    )
    files = render_tree(spec)
    output = Path(args.output)
    if args.check:
        problems = check_tree(files, output)
        if problems:
            print(f"cinder-reload render: {output} differs from what render produces:", file=sys.stderr)
            for problem in problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        print(f"{output}: {len(files)} files up to date")
        return 0
    for line in write_tree(files, output):
        print(line)
    return 0


def add_parser(sub: Any) -> None:
    help_text = "write systemd units, drop-ins and LSB init scripts for the cinder services"
    p = sub.add_parser("render", help=help_text, description=help_text)
    p.add_argument("--output", required=True, metavar="DIR", help="writes DIR/units/ and DIR/initscripts/")
    p.add_argument(
        "--systemd-version",
        type=int,
        default=DEFAULT_SYSTEMD_VERSION,
        metavar="N",
        help=f">= {EXEC_RELOAD_FIRST_SINCE}: Type=notify-reload and a synchronous ExecReload=; "
        f"{NOTIFY_RELOAD_SINCE}-{EXEC_RELOAD_FIRST_SINCE - 1}: Type=notify-reload alone; "
        f"below: Type=notify and a synchronous ExecReload= "
        f"(default {DEFAULT_SYSTEMD_VERSION}: works on every systemd)",
    )
    p.add_argument(
        "--naming", choices=sorted(DISTROS), default="debian", help="unit names: cinder-* or openstack-cinder-*"
    )
    p.add_argument("--cinder-reload", default="/usr/bin/cinder-reload", metavar="PATH", help="the installed command")
    p.add_argument(
        "--python",
        metavar="PYTHON",
        help="ExecReload= runs `PYTHON -S` on this installation's cinder_reload/entry.py instead of the "
        "command: no site step (a virtualenv's .pth files) in every reload's wait; for units rendered "
        "for a virtualenv, with its interpreter",
    )
    p.add_argument(
        "--check", action="store_true", help="compare with DIR instead of writing; exit 1 listing differences"
    )
    p.set_defaults(func=cmd_render)
