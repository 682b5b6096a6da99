"""What cinder services cannot change without a restart, and their options for ``check``.

Pure data and option registration; importing this module does not import cinder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from ..config import registered_options
from ..diff import OptKey

__all__ = [
    "config_args",
    "default_restart_only_except",
    "RELOAD_OPTS",
    "SERVICES",
    "register_api_opts",
    "register_backup_opts",
    "register_reload_opts",
    "register_scheduler_opts",
    "register_volume_opts",
    "restart_only",
]

#: The cinder services ``cinder-reload run`` knows, and the module whose
#: ``main()`` is cinder's own entry point for each.
SERVICES: dict[str, str] = {
    "cinder-volume": "cinder.cmd.volume",
    "cinder-scheduler": "cinder.cmd.scheduler",
    "cinder-backup": "cinder.cmd.backup",
    "cinder-api": "cinder.cmd.api",
}

#: Options every service reads once at start: connections, identity, layout.
#: Changing one is reported as pending restart, never applied half-way.
_COMMON_RESTART_ONLY: tuple[OptKey, ...] = (
    ("DEFAULT", "transport_url"),
    ("DEFAULT", "host"),
    ("DEFAULT", "state_path"),
    ("DEFAULT", "rpc_response_timeout"),
    ("DEFAULT", "control_exchange"),
    ("database", "connection"),
    ("database", "slave_connection"),
    ("oslo_messaging_notifications", "transport_url"),
    ("coordination", "backend_url"),
    ("reload", "drain_timeout"),
    ("reload", "worker_timeout"),
)

_PER_SERVICE_RESTART_ONLY: dict[str, tuple[OptKey, ...]] = {
    "cinder-volume": (("DEFAULT", "enabled_backends"), ("DEFAULT", "cluster")),
    "cinder-backup": (("DEFAULT", "backup_workers"),),
    "cinder-api": (
        ("DEFAULT", "osapi_volume_listen"),
        ("DEFAULT", "osapi_volume_listen_port"),
        ("DEFAULT", "osapi_volume_workers"),
        ("DEFAULT", "api_paste_config"),
    ),
    "cinder-scheduler": (),
}


def restart_only(service: str, backends: Sequence[str] = ()) -> frozenset[OptKey]:
    """The options of ``service`` that only a restart can change.

    A backend's ``backend_host`` is part of its service identity (the host
    its volumes belong to), so it is restart-only even though the backend's
    other options are re-initialised live.
    """
    keys = set(_COMMON_RESTART_ONLY) | set(_PER_SERVICE_RESTART_ONLY.get(service, ()))
    keys.update((backend, "backend_host") for backend in backends)
    return frozenset(keys)


RELOAD_OPTS = [
    cfg.FloatOpt(
        "drain_timeout",
        default=30.0,
        min=0.1,
        help="Seconds a reload waits for in-flight operations of a component it re-initialises "
        "(a volume backend's RPC calls, running backups) before it gives up and changes nothing.",
    ),
    cfg.FloatOpt(
        "worker_timeout",
        default=75.0,
        min=1.0,
        help="Seconds the main process waits for each worker's reload before reporting that worker failed "
        "(keep it below the 90 s 'cinder-reload signal --wait' waits by default).",
    ),
]


def register_reload_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(RELOAD_OPTS, group=cfg.OptGroup("reload", title="cinder-reload"))


def _service_args() -> list[str]:
    argv = sys.argv
    return argv[argv.index("--") + 1 :] if "--" in argv else []


def _register_service_opts(conf: cfg.ConfigOpts, service: str) -> None:
    """Register what cinder's own entry point for ``service`` registers.

    Importing cinder's command module registers its options on
    ``cfg.CONF`` exactly as the running service has them; they are copied
    onto ``conf`` from there.  (It also selects oslo.service's backend, which
    is harmless in a short-lived ``check``.)
    """
    import importlib

    from ..config import registered_options

    importlib.import_module(SERVICES[service])
    for reg in registered_options(cfg.CONF):
        group = None if reg.group == "DEFAULT" else reg.group
        try:
            if reg.cli:
                conf.register_cli_opt(reg.opt, group=group)
            else:
                conf.register_opt(reg.opt, group=group)
        except cfg.DuplicateOptError:
            pass
    register_reload_opts(conf)


def _volume_backend_opts() -> list[cfg.Opt]:
    """The options cinder registers in every backend section (VolumeManager + BaseVD)."""
    from cinder import objects

    objects.register_all()  # cinder.volume.manager's annotations need them, as cinder's main() knows
    from cinder.volume import driver, manager

    lists = [manager.volume_backend_opts]
    for name in (
        "volume_opts",
        "iser_opts",
        "nvmeof_opts",
        "nvmet_opts",
        "scst_opts",
        "backup_opts",
        "image_opts",
        "fqdn_opts",
    ):
        lists.append(getattr(driver, name, []))
    return [opt for options in lists for opt in options]


def register_volume_opts(conf: cfg.ConfigOpts) -> None:
    """Options provider for ``cinder-reload check cinder-volume``.

    Besides cinder-volume's own options it registers the backend options in
    every section named by ``enabled_backends``, read from the files on the
    command line, so a bad value in ``[lvm-1]`` is caught too.
    """
    _register_service_opts(conf, "cinder-volume")
    probe = cfg.ConfigOpts()
    probe.register_opt(cfg.ListOpt("enabled_backends"))
    try:
        probe(config_args(_service_args()), project="cinder", default_config_files=None)
        backends = [b for b in probe.enabled_backends or [] if b]
    except (cfg.Error, SystemExit):
        backends = []
    for backend in backends:
        for opt in _volume_backend_opts():
            try:
                conf.register_opt(opt, group=backend)
            except cfg.DuplicateOptError:
                pass


def register_scheduler_opts(conf: cfg.ConfigOpts) -> None:
    """Options provider for ``check`` of cinder-scheduler."""
    _register_service_opts(conf, "cinder-scheduler")


def register_backup_opts(conf: cfg.ConfigOpts) -> None:
    """Options provider for ``check`` of cinder-backup."""
    _register_service_opts(conf, "cinder-backup")


def register_api_opts(conf: cfg.ConfigOpts) -> None:
    """Options provider for ``check`` of cinder-api."""
    _register_service_opts(conf, "cinder-api")


def config_args(args: Sequence[str], wanted: Sequence[str] = ("--config-file", "--config-dir")) -> list[str]:
    """Only the ``wanted`` options of a command line (by default those naming
    configuration files): enough to read an option early."""
    wanted = tuple(wanted)
    kept: list[str] = []
    items = list(args)
    for index, item in enumerate(items):
        if item in wanted and index + 1 < len(items):
            kept += [item, items[index + 1]]
        elif item.startswith(tuple(f"{w}=" for w in wanted)):
            kept.append(item)
    return kept


def default_restart_only_except(
    conf: cfg.ConfigOpts, common: frozenset[OptKey], keep: frozenset[str]
) -> frozenset[OptKey]:
    """``common`` plus every immutable [DEFAULT] option not in ``keep``.

    cinder-scheduler and cinder-backup read nearly all of [DEFAULT] once at
    start; only the options their re-initialiser rebuilds (``keep``) can take
    effect live.
    """
    keys = set(common)
    for reg in registered_options(conf):
        if reg.group == "DEFAULT" and not reg.opt.mutable and reg.opt.dest not in keep:
            keys.add(reg.key)
    return frozenset(keys)
