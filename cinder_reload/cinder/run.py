"""``cinder-reload run SERVICE [-- cinder's arguments]``: cinder's own entry point, reloadable.

It runs the installed cinder's ``main()`` for SERVICE in this process (the
PID systemd or the init script started), with the reload engine plugged into
oslo.service's launchers (launchers.py).  Order matters:

1. ``NOTIFY_SOCKET`` is taken out of the environment (kept for the engine);
2. cinder's command module is imported: it monkey-patches with eventlet (or
   selects oslo.service's threading backend) as its first statement;
3. the launcher factories are pointed at ours and cinder's ``main()`` runs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..state import runtime_dir
from .options import (
    DATABASE_OPTIONS,
    SERVICES,
    TRANSPORT_OPTIONS,
    api_main_process_options,
    config_args,
    main_process_options,
    missing_backend_sections,
    register_reload_opts,
    restart_only,
)

__all__ = ["run"]

LOG = logging.getLogger(__name__)


def _volume_prepare(integration: Any) -> None:
    """Once cinder parsed its command line: one worker per enabled backend."""
    backends = [b for b in integration.conf.enabled_backends or [] if b]
    integration.worker_groups = {b: [b] for b in backends}
    # [DEFAULT] is applied by replacing the workers, except what only the
    # main process acts on (its logging, its process management).
    integration.main_process_reasons = main_process_options()
    # The transports and the database too: the workers are replaced, on
    # eventlet and on cotyledon alike, and the first new worker's start path
    # sets them up again (backends._connections_follow;
    # tests/cinder/test_connections_roll.py runs on both).
    rolled = TRANSPORT_OPTIONS | DATABASE_OPTIONS
    integration.restart_only = (
        restart_only("cinder-volume", backends) - rolled
    ) | frozenset(integration.main_process_reasons)


def _api_prepare(integration: Any) -> None:
    """cinder-api: every option is applied by new workers, but what the main process keeps."""
    # What the main process set up for itself and every worker inherits
    # (logging, process management, the transports): new workers would not take it.
    integration.main_process_reasons = api_main_process_options(integration.conf)
    integration.restart_only = restart_only("cinder-api") | frozenset(integration.main_process_reasons)


def _log_file_named_after(service: str, conf: Any, service_args: Sequence[str]) -> None:
    """Keep cinder's log file name: ``log_dir/cinder-volume.log``, not ``cinder-reload.log``.

    oslo.log names the file after the outermost Python frame's file, which
    is now ``cinder-reload``.  Only when the files set ``log_dir`` and no
    ``log_file`` (a default ``log_file`` without ``log_dir`` would log to a
    relative path instead of stderr) is the default set to the service's name.
    """
    from oslo_config import cfg

    args = config_args(service_args, ("--config-file", "--config-dir", "--log-dir", "--log-file"))
    probe = cfg.ConfigOpts()
    probe.register_cli_opts([cfg.StrOpt("log-dir"), cfg.StrOpt("log-file")])
    try:
        probe(args, project="cinder", default_config_files=None)
    except (cfg.Error, SystemExit):
        return
    if probe.log_dir and not probe.log_file and "log_file" in conf:
        conf.set_default("log_file", f"{service}.log")


def _threading_backend() -> bool:
    """Whether cinder runs on oslo.service's threading backend (not eventlet)."""
    try:
        from cinder import monkey_patch
    except ImportError:
        # cinder < 27 (Debian 13's 26) has no cinder.monkey_patch: its
        # command modules always monkey-patch with eventlet.
        import eventlet.patcher

        return not eventlet.patcher.is_monkey_patched("thread")
    return not monkey_patch.is_patched()


def run(service: str, service_args: Sequence[str], state_dir: str | None = None) -> int:
    if service not in SERVICES:
        print(f"cinder-reload run: unknown service {service!r} (known: {', '.join(SERVICES)})", file=sys.stderr)
        return 2
    notify_address = os.environ.pop("NOTIFY_SOCKET", None)
    directory = Path(state_dir) if state_dir else runtime_dir()
    sys.argv = [service, *service_args]
    module = importlib.import_module(SERVICES[service])  # eventlet monkey-patching happens here

    from oslo_config import cfg

    from .launchers import Integration, install

    conf = cfg.CONF
    register_reload_opts(conf)
    _log_file_named_after(service, conf, service_args)
    integration = Integration(
        service=service,
        conf=conf,
        notify_address=notify_address,
        state_dir=directory,
        restart_only=restart_only(service),
        threading_backend=_threading_backend(),
    )
    if service == "cinder-volume":
        # Backends are re-initialised by replacing their worker (backends.py).
        integration.prepare = _volume_prepare
        integration.publisher = "volume"
        integration.candidate_checks = (missing_backend_sections,)
    elif service == "cinder-scheduler":
        from . import scheduler

        integration.prepare = lambda i: setattr(
            i, "restart_only", scheduler.restart_only_for_scheduler(i.conf, restart_only(service))
        )
        integration.worker_setup = scheduler.setup
        integration.publisher = "scheduler"
    elif service == "cinder-backup":
        from . import backup

        integration.prepare = backup.prepare
        integration.worker_setup = backup.setup
        integration.publisher = "backup"
    elif service == "cinder-api" and not integration.threading_backend:
        from . import api

        integration.prepare = _api_prepare
        integration.shared_options = lambda conf: api.shared_options(conf, integration.restart_only)
    install(integration)
    result = module.main()
    return int(result or 0)
