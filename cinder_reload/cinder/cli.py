"""The ``run`` subcommand, added to ``cinder-reload`` through cli.EXTRA_COMMANDS."""

from __future__ import annotations

import argparse
from typing import Any

from .options import SERVICES

__all__ = ["add_parser"]


def cmd_run(args: argparse.Namespace) -> int:
    from .run import run  # imports cinder: only for this command

    return run(args.service, args.service_args, state_dir=args.state_dir)


def add_parser(sub: Any) -> None:
    help_text = (
        "run a cinder service with a true reload on SIGHUP; cinder's own arguments follow --, "
        "e.g. run cinder-volume -- --config-file /etc/cinder/cinder.conf"
    )
    p = sub.add_parser("run", help=help_text, description=help_text)
    p.add_argument("service", metavar="SERVICE", choices=sorted(SERVICES), help=", ".join(sorted(SERVICES)))
    p.add_argument("--state-dir", help="where state files live (default: $RUNTIME_DIRECTORY or /run/cinder)")
    p.set_defaults(func=cmd_run)
