"""What cinder services cannot change without a restart, and their options for ``check``.

Pure data and option registration; importing this module does not import cinder.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from oslo_config import cfg

from ..config import ConfigProblem, registered_options
from ..diff import OptKey
from ..lint import CheckHints

#: cinder's own default for ``volume_driver`` (cinder.volume.manager).
DEFAULT_VOLUME_DRIVER = "cinder.volume.drivers.lvm.LVMVolumeDriver"

__all__ = [
    "API_MAIN_PROCESS_GROUPS",
    "API_MAIN_PROCESS_OPTIONS",
    "api_main_process_options",
    "config_args",
    "missing_backend_sections",
    "default_restart_only_except",
    "main_process_options",
    "RELOAD_OPTS",
    "DATABASE_OPTIONS",
    "list_opts",
    "SERVICES",
    "TRANSPORT_OPTIONS",
    "register_api_opts",
    "register_backup_opts",
    "register_reload_opts",
    "register_scheduler_opts",
    "register_volume_opts",
    "restart_only",
    "restart_reasons",
    "RESTART_REASONS",
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
    ),
    "cinder-scheduler": (),
}


_RPC = "the RPC transport is set up once, in the main process, and every worker inherits it"

#: The transports' options: cinder-volume (on eventlet) applies them by
#: setting its transports up again and replacing every backend's worker
#: (backends.BackendWorkers), so they are restart-only for the other services only.
TRANSPORT_OPTIONS: frozenset[OptKey] = frozenset(
    {
        ("DEFAULT", "transport_url"),
        ("DEFAULT", "rpc_response_timeout"),
        ("DEFAULT", "control_exchange"),
        ("oslo_messaging_notifications", "transport_url"),
    }
)

#: The database's: the same for cinder-volume, which starts a new engine
#: (oslo.db's engine facade replaced) before it replaces every worker.
DATABASE_OPTIONS: frozenset[OptKey] = frozenset({("database", "connection"), ("database", "slave_connection")})
_IDENTITY = "the service's identity: its volumes and its service record belong to this name"

#: Why each restart-only option needs a restart, in the operator's words
#: (shown with every pending-restart entry: STATUS= lists it, `status` and the
#: state file say why).
RESTART_REASONS: dict[OptKey, str] = {
    ("DEFAULT", "transport_url"): _RPC,
    ("DEFAULT", "control_exchange"): _RPC,
    ("DEFAULT", "rpc_response_timeout"): _RPC,
    ("DEFAULT", "host"): _IDENTITY,
    ("DEFAULT", "cluster"): _IDENTITY + " (Active/Active: the cluster's queue)",
    # Carried out by cinder-volume's workers step (a backend added or
    # removed) on both of oslo.service's backends: shown only where no
    # workers step owns it (Workers.owned_options()).
    ("DEFAULT", "enabled_backends"): "the backends are fixed until a restart where no workers step adds or "
    "removes them",
    ("DEFAULT", "state_path"): "paths derived from it are fixed when the process starts",
    ("database", "connection"): "oslo.db's engine factory is configured once per process; workers inherit it",
    ("database", "slave_connection"): "oslo.db's engine factory is configured once per process; workers inherit it",
    ("oslo_messaging_notifications", "transport_url"): "the notification transport is set up once, at start",
    ("coordination", "backend_url"): "the coordination backend (tooz) is connected once, at start",
    ("reload", "drain_timeout"): "read by the reload engine when the service starts",
    ("reload", "worker_timeout"): "read by the reload engine when the service starts",
    ("DEFAULT", "backup_workers"): "the number of backup processes is fixed when the service starts",
    ("DEFAULT", "osapi_volume_listen"): "the API's listening socket is bound once, at start",
    ("DEFAULT", "osapi_volume_listen_port"): "the API's listening socket is bound once, at start",
    ("DEFAULT", "osapi_volume_workers"): "the number of API processes is fixed when the service starts",
}


#: oslo.config.opts entry points (the libraries' own lists, as oslo-config-generator
#: reads them) whose [DEFAULT] options only cinder-volume's main process acts on.
_MAIN_PROCESS_LIBRARIES = {"oslo.log": "logging", "oslo.service.service": "process management"}


def main_process_options() -> dict[OptKey, str]:
    """cinder-volume's [DEFAULT] options that replacing its workers cannot apply, with the reason.

    A change of [DEFAULT] is applied by replacing every backend's worker
    (backends.SHARED_GROUPS); oslo.log's logging and oslo.service's process
    management are set up in the main process and inherited by each worker,
    so a new worker would not take them.  Their mutable options (``debug``,
    ``log_config_append``) stay live: oslo.log applies those itself.
    """
    from importlib.metadata import entry_points

    found: dict[OptKey, str] = {}
    for entry in entry_points(group="oslo.config.opts"):
        what = _MAIN_PROCESS_LIBRARIES.get(entry.name)
        if what is None:
            continue
        reason = f"{what} ({entry.name}) is set up once, in the main process, and every worker inherits it"
        for group, opts in entry.load()():
            if group not in (None, "DEFAULT"):
                continue
            found.update((("DEFAULT", opt.dest), reason) for opt in opts if not opt.mutable)
    return found


#: What cinder-api's ``main()`` sets up in the main process, before it forks
#: its workers, and that new workers inherit instead of building again.
API_MAIN_PROCESS_GROUPS: dict[str, str] = {
    "oslo_messaging_": "the RPC and notification transports are set up once, in the main process "
    "(cinder-api's main() calls rpc.init()), and every worker inherits them",
    "oslo_reports": "the Guru Meditation reports are set up once, in the main process",
}
API_MAIN_PROCESS_OPTIONS: dict[OptKey, str] = {
    ("DEFAULT", "monkey_patch"): "cinder's own monkey-patching runs once, in the main process",
    ("DEFAULT", "monkey_patch_modules"): "cinder's own monkey-patching runs once, in the main process",
}


def api_main_process_options(conf: cfg.ConfigOpts) -> dict[OptKey, str]:
    """cinder-api's options that new workers cannot apply, with the reason: the main process's.

    cinder-api applies a change by building new workers from the main
    process (api.py); what that process set up for itself at start, and
    every worker inherits, stays as it was: logging and process management
    (:func:`main_process_options`), the transports, the reports, cinder's
    monkey-patching.  Mutable options stay live (their hooks apply them).
    """
    found = main_process_options()
    for reg in registered_options(conf):
        if reg.opt.mutable:
            continue
        for prefix, reason in API_MAIN_PROCESS_GROUPS.items():
            if reg.group.startswith(prefix):
                found[reg.key] = reason
        if reg.key in API_MAIN_PROCESS_OPTIONS:
            found[reg.key] = API_MAIN_PROCESS_OPTIONS[reg.key]
    return found


def restart_reasons(backends: Sequence[str] = ()) -> dict[OptKey, str]:
    """:data:`RESTART_REASONS`, with each backend's ``backend_host``."""
    reasons = dict(RESTART_REASONS)
    reasons.update({(backend, "backend_host"): _IDENTITY for backend in backends})
    return reasons


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


#: The group every cinder service reads the options of the reload from.
RELOAD_GROUP = cfg.OptGroup(
    "reload",
    title="cinder-reload",
    help="How `systemctl reload` (SIGHUP) drains and replaces the parts of a cinder service whose "
    "configuration changed (cinder-reload).",
)


def register_reload_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(RELOAD_OPTS, group=RELOAD_GROUP)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    """The ``oslo.config.opts`` entry point (namespace ``cinder_reload``).

    Where OpenStack's tools look for a project's options:
    ``oslo-config-generator --namespace cinder_reload`` writes the
    ``[reload]`` section of a sample file, ``oslo-config-validator`` knows
    its options, and the documentation's configuration reference is
    generated from them (``oslo_config.sphinxext``).
    """
    return [(RELOAD_GROUP, list(RELOAD_OPTS))]


def _service_args() -> list[str]:
    argv = sys.argv
    return argv[argv.index("--") + 1 :] if "--" in argv else []


#: oslo.config.opts namespaces whose options cinder reads (its own
#: config-generator list, cinder/config/cinder-config-generator.conf, less
#: ``cinder`` itself, whose list imports every optional driver dependency).
LIBRARY_NAMESPACES = (
    "castellan.config",
    "keystonemiddleware.auth_token",
    "os_brick",
    "osprofiler",
    "oslo.concurrency",
    "oslo.config",
    "oslo.db",
    "oslo.log",
    "oslo.messaging",
    "oslo.middleware",
    "oslo.policy",
    "oslo.privsep",
    "oslo.reports",
    "oslo.service.periodic_task",
    "oslo.service.service",
    "oslo.service.sslutils",
    "oslo.service.wsgi",
    "oslo.versionedobjects",
)


def _library_opts() -> list[tuple[str, cfg.Opt]]:
    """``(group, opt)`` for every option of :data:`LIBRARY_NAMESPACES` that loads.

    What oslo-config-validator knows from the same entry points; a namespace
    whose package is not installed is skipped (cinder would not read it either).
    """
    from importlib import metadata

    found: list[tuple[str, cfg.Opt]] = []
    for entry in metadata.entry_points(group="oslo.config.opts"):
        if entry.name not in LIBRARY_NAMESPACES:
            continue
        try:
            listed = entry.load()()
        except Exception:  # an optional library that is absent or broken: not ours to report
            continue
        for group, opts in listed:
            name = getattr(group, "name", group) or "DEFAULT"
            found.extend((str(name), opt) for opt in opts)
    return found


def _register_service_opts(conf: cfg.ConfigOpts, service: str) -> CheckHints:
    """Register what cinder's own entry point for ``service`` registers.

    Importing cinder's command module registers its options on
    ``cfg.CONF`` exactly as the running service has them; they are copied
    onto ``conf`` from there.  (It also selects oslo.service's backend, which
    is harmless in a short-lived ``check``.)  Returns the options cinder
    reads later (libraries', lazily registered ones) for ``check``'s
    unknown-option report.
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
    before = {(reg.group, reg.opt.dest) for reg in registered_options(cfg.CONF)}
    for module in _LAZY_MODULES:
        try:
            importlib.import_module(module)
        except Exception:  # an optional dependency missing here: its options stay unknown (warnings only)
            continue
    lazy = [(reg.group, reg.opt) for reg in registered_options(cfg.CONF) if (reg.group, reg.opt.dest) not in before]
    extra = _library_opts() + lazy
    return CheckHints(extra=tuple(extra + _auth_plugin_opts(conf, extra)))


#: Modules that register options only when cinder first uses them (a call
#: to nova, glance, the key manager): ``check`` imports them for their names.
_LAZY_MODULES = (
    "cinder.compute.nova",
    "cinder.service_auth",
    "cinder.image.glance",
    "cinder.keymgr",
    "cinder.keymgr.migration",
    "cinder.volume.volume_utils",
    "cinder.backup.api",
)


def _auth_plugin_opts(conf: cfg.ConfigOpts, extra: Sequence[tuple[str, cfg.Opt]]) -> list[tuple[str, cfg.Opt]]:
    """keystoneauth's plugin, session and adapter options in every group with ``auth_type``.

    A plugin's options (``username``, ``project_name``...) are registered
    only once the plugin ``auth_type`` names is loaded; every plugin's are
    allowed, as oslo-config-validator's sample data cannot know which.
    """
    try:
        from keystoneauth1 import loading
    except ImportError:
        return []
    opts: list[cfg.Opt] = list(loading.get_session_conf_options()) + list(loading.get_adapter_conf_options())
    for name in sorted(loading.get_available_plugin_names()):
        try:
            opts.extend(loading.get_auth_plugin_conf_options(name))
        except Exception:  # a plugin that does not load here
            continue
    groups = {reg.group for reg in registered_options(conf) if reg.opt.dest == "auth_type"}
    groups |= {group for group, opt in extra if opt.dest == "auth_type"}
    return [(group, opt) for group in sorted(groups) for opt in opts]


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


def _driver_opts(drivers: Sequence[str]) -> list[tuple[str, cfg.Opt]]:
    """The options the drivers named register when imported (into ``[backend_defaults]``).

    A driver that does not import here is left out: its options are then
    only unknown to ``check``, which says so as warnings, never errors.
    """
    import importlib

    from ..config import registered_options

    for path in drivers:
        module = path.rpartition(".")[0]
        try:
            importlib.import_module(module)
        except Exception:  # a driver whose dependencies are missing here
            continue
    return [(reg.group, reg.opt) for reg in registered_options(cfg.CONF) if reg.group == "backend_defaults"]


def register_volume_opts(conf: cfg.ConfigOpts) -> CheckHints:
    """Options provider for ``cinder-reload check cinder-volume``.

    Besides cinder-volume's own options it registers the backend options in
    every section named by ``enabled_backends``, read from the files on the
    command line, so a bad value in ``[lvm-1]`` is caught too.  Each backend
    section's keys are checked against the options of its driver (the
    ``volume_driver`` it names, imported) and ``[backend_defaults]``; a
    backend named with no section is an error.
    """
    hints = _register_service_opts(conf, "cinder-volume")
    probe = cfg.ConfigOpts()
    probe.register_opt(cfg.ListOpt("enabled_backends"))
    try:
        probe(config_args(_service_args()), project="cinder", default_config_files=None)
        backends = [b for b in probe.enabled_backends or [] if b]
    except (cfg.Error, SystemExit):
        backends = []
    drivers: list[str] = []
    from cinder.cmd.volume import host_opt  # what cinder's main() registers in each backend section

    for backend in backends:
        for opt in [*_volume_backend_opts(), host_opt]:
            try:
                conf.register_opt(opt, group=backend)
            except cfg.DuplicateOptError:
                pass
        probe.register_opt(cfg.StrOpt("volume_driver", default=DEFAULT_VOLUME_DRIVER), group=backend)
        try:
            drivers.append(getattr(probe, backend).volume_driver or DEFAULT_VOLUME_DRIVER)
        except (cfg.Error, ValueError):
            continue
    driver_opts = _driver_opts(drivers)
    # The drivers' own options in every backend section too, as each driver
    # registers them there when it starts (Configuration.append_config_values):
    # a bad value (`rbd_store_chunk_size = sixteen`) is then an error here, as
    # it is for the reload, not only a reload's failure on the host after the
    # check said OK (issue 13: a rolling reload checks every host first).
    for backend in backends:
        for _group, opt in driver_opts:
            try:
                conf.register_opt(opt, group=backend)
            except cfg.DuplicateOptError:
                pass  # a same-named option of another driver: the first one's type is checked
    return CheckHints(
        extra=hints.extra + tuple(driver_opts),
        templates={backend: "backend_defaults" for backend in backends},
        required_sections=tuple(backends),
    )


def register_scheduler_opts(conf: cfg.ConfigOpts) -> CheckHints:
    """Options provider for ``check`` of cinder-scheduler."""
    return _register_service_opts(conf, "cinder-scheduler")


def register_backup_opts(conf: cfg.ConfigOpts) -> CheckHints:
    """Options provider for ``check`` of cinder-backup."""
    return _register_service_opts(conf, "cinder-backup")


def register_api_opts(conf: cfg.ConfigOpts) -> CheckHints:
    """Options provider for ``check`` of cinder-api."""
    return _register_service_opts(conf, "cinder-api")


def missing_backend_sections(candidate: cfg.ConfigOpts) -> list[ConfigProblem]:
    """A backend ``enabled_backends`` names with no section in any file.

    oslo.config accepts it (every option of that backend reads its default)
    and ``enabled_backends`` itself only changes at a restart, so without
    this a reload takes the file, files the change under pending restart and
    says nothing, and the next restart brings up a backend with no
    configuration.  ``check`` reports the same (lint.py).
    """
    try:
        backends = [b for b in candidate.enabled_backends or [] if b]
    except (cfg.Error, ValueError):
        return []
    present = {s if s == "DEFAULT" else s.lower() for s in candidate.list_all_sections()}
    return [
        ConfigProblem(f"[{b}]", "named by enabled_backends but no file has this section")
        for b in backends
        if b.lower() not in present
    ]


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
