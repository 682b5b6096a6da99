"""``cinder-reload``: the operator's and the service manager's command.

    cinder-reload signal SERVICE (--pid PID | --pidfile FILE) [--wait] [--timeout S]
    cinder-reload status SERVICE [--json]
    cinder-reload check  SERVICE [--options MODULE:FUNC] -- --config-file FILE ...

Exit statuses follow LSB where a service manager reads them: 0 success,
1 failure (reason on stderr), 7 not running.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .state import StateUnreadable, load_state, runtime_dir, state_path
from .waiter import ACK_TIMEOUT, DEFAULT_TIMEOUT, SignalRequest, pid_alive, run_signal

if TYPE_CHECKING:
    from oslo_config import cfg

    from .lint import CheckHints

__all__ = ["main"]

OPTIONS_ENTRY_POINTS = "cinder_reload.options"

#: Subcommands defined in other modules: (module, function adding the parser).
#: Each function receives the subparsers object and sets ``func`` on its parser.
EXTRA_COMMANDS: list[tuple[str, str]] = [
    ("cinder_reload.cinder.cli", "add_parser"),
    ("cinder_reload.render", "add_parser"),
]


def _state_file(args: argparse.Namespace) -> Path:
    return state_path(args.service, runtime_dir(override=args.state_dir))


def signal_request(args: argparse.Namespace) -> SignalRequest:
    """The ``signal`` command line as argparse read it (entry.py reads the plain ones itself)."""
    return SignalRequest(
        args.service,
        pid=args.pid,
        pidfile=args.pidfile,
        wait=args.wait,
        timeout=args.timeout,
        ack_timeout=args.ack_timeout,
        state_dir=args.state_dir,
    )


def cmd_signal(args: argparse.Namespace) -> int:
    return run_signal(signal_request(args))


def _format_status(doc: dict[str, Any]) -> str:
    lines = [
        f"{doc.get('service')} (pid {doc.get('pid')}): reload #{doc.get('generation')} {doc.get('result')}",
        f"  {doc.get('message')}",
    ]
    if doc.get("finished_at"):
        lines.append(
            f"  finished {doc['finished_at']} after {doc.get('duration_s', 0):.3f}s"
            if doc.get("duration_s") is not None
            else f"  since {doc['finished_at']}"
        )
    if doc.get("in_progress"):
        lines.append(f"  now reloading: {doc['in_progress'].get('phase')}")
    for title, key in (("applied", "changed"), ("not applied", "not_applied"), ("pending restart", "pending_restart")):
        for change in doc.get(key) or []:
            line = f"  {title}: [{change['group']}] {change['option']}: {change['old']!r} -> {change['new']!r}"
            lines.append(line + (f" ({change['reason']})" if change.get("reason") else ""))
    if doc.get("reinitialized"):
        lines.append("  re-initialised: " + ", ".join(doc["reinitialized"]))
    for group, why in (doc.get("failed_groups") or {}).items():
        lines.append(f"  failed: [{group}] {why}")
    for problem in doc.get("problems") or []:
        lines.append(f"  problem: {problem}")
    for worker in doc.get("workers") or []:
        lines.append(_format_worker(worker))
    return "\n".join(lines)


def _format_worker(worker: dict[str, Any]) -> str:
    """One worker's line: a replaced one shows both pids and what the replacement cost."""
    head = f"  worker {worker.get('worker')} (pid {worker.get('pid')}): {worker.get('result')}: {worker.get('message')}"
    if worker.get("old_pid") is None:
        return head
    parts = [f"pid {worker['old_pid']} -> {worker.get('new_pid')}"]
    if worker.get("paused_s") is not None:
        parts.append(f"RPC paused {worker['paused_s']:.2f}s")
    if worker.get("start_s") is not None:
        parts.append(f"new worker up in {worker['start_s']:.2f}s")
    return f"{head} ({', '.join(parts)})"


def cmd_status(args: argparse.Namespace) -> int:
    path = _state_file(args)
    try:
        doc = load_state(path)
    except StateUnreadable as exc:
        print(f"{args.service}: cannot show the reload state: {exc}", file=sys.stderr)
        return 4  # LSB status: "program or service status is unknown"
    if doc is None:
        print(f"{args.service}: no reload state at {path} (not running under cinder-reload?)", file=sys.stderr)
        return 3
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else _format_status(doc))
    return 0 if doc.get("result") == "ok" else 1


#: How long ``check --running`` waits for the running configuration of the
#: last reload (the engine records it ~0.1 s after READY=1).
RUNNING_RECORD_WAIT = 5.0


def _running_document(state_file: Path, service: str) -> dict[str, Any] | None:
    """What the running service recorded of its configuration, as of its last reload.

    Right after a reload the record may still be the one before it: the
    engine writes it a moment after READY=1 (engine.RUNNING_RECORD_DELAY).
    Wait for it, rather than compare the files with a configuration the
    service no longer runs.
    """
    import time

    path = state_file.with_name(f"{service}.running.json")
    deadline = time.monotonic() + RUNNING_RECORD_WAIT
    while True:
        running = load_state(path)
        state = load_state(state_file) if running is not None else None
        behind = (
            running is not None
            and state is not None
            and state.get("pid") == running.get("pid")
            and int(running.get("generation") or 0) < int(state.get("generation") or 0)
        )
        if not behind or time.monotonic() >= deadline:
            return running
        time.sleep(0.02)


def _options_provider(service: str, spec: str | None) -> Callable[[cfg.ConfigOpts], CheckHints | None]:
    from importlib import metadata

    if spec:
        module, _, func = spec.partition(":")
        provider: Callable[[cfg.ConfigOpts], CheckHints | None] = getattr(
            importlib.import_module(module), func or "register_opts"
        )
        return provider
    for entry in metadata.entry_points(group=OPTIONS_ENTRY_POINTS):
        if entry.name == service:
            loaded: Callable[[cfg.ConfigOpts], CheckHints | None] = entry.load()
            return loaded
    known = sorted(e.name for e in metadata.entry_points(group=OPTIONS_ENTRY_POINTS))
    raise SystemExit(
        f"cinder-reload: no options known for {service!r} (known: {', '.join(known) or 'none'}; "
        "use --options MODULE:FUNC)"
    )


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """No library chatter on the operator's terminal while ``check`` runs.

    Importing cinder prints eventlet's deprecation warning; oslo.config logs
    its own deprecation notices through the root logger (Python's last-resort
    handler prints them); argparse prints a usage message for a file's bad
    value of a CLI option (``debug = maybe``).  ``check`` reports each of
    those itself, once, in its own list.
    """
    # Imported here: `signal` (every reload's ExecReload=) never needs them.
    import io
    import logging
    import warnings

    root = logging.getLogger()
    null = logging.NullHandler()
    root.addHandler(null)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.removeHandler(null)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the files as a reload would, then lint them as oslo-config-validator would.

    Exit 0: valid (warnings, if any, on stderr; ``--strict`` makes them
    fatal).  Exit 1: invalid, every problem listed.  Never a traceback: an
    error in loading the service's options is reported as one line.
    """
    service_args = args.service_args
    running: dict[str, Any] | None = None
    if args.running:
        try:
            running = _running_document(_state_file(args), args.service)
        except StateUnreadable as exc:
            print(f"{args.service}: cannot compare with the running service: {exc}", file=sys.stderr)
            return 1
        if running is None or not pid_alive(int(running.get("pid") or 0)):
            print(
                f"{args.service}: not running under cinder-reload (nothing recorded in {_state_file(args).parent}); "
                "check the files without --running",
                file=sys.stderr,
            )
            return 1
        # The running service's own command line, unless one is given: the
        # options provider reads it after "--" (cinder's enabled_backends).
        service_args = service_args or list(running.get("args") or [])
        if "--" not in sys.argv:
            sys.argv = [*sys.argv, "--", *service_args]
    try:
        with _quiet_libraries():
            errors, found_warnings = _check(args.service, args.options, service_args)
    except SystemExit:
        raise
    except Exception as exc:  # the options provider (cinder's imports) failed: say so, in one line
        print(f"{args.service}: cannot check: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    files_label = " ".join(service_args) or "default files"
    if running is not None:
        _print_preview(args, running, bool(errors))
    if errors:
        print(f"{args.service}: configuration is NOT valid ({len(errors)} problem(s)):", file=sys.stderr)
        for problem in errors:
            print(f"  {problem}", file=sys.stderr)
    for warning in found_warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    if errors:
        return 1
    if found_warnings:
        print(f"{args.service}: configuration OK with {len(found_warnings)} warning(s) ({files_label})")
        return 1 if args.strict else 0
    print(f"{args.service}: configuration OK ({files_label})")
    return 0


def _print_preview(args: argparse.Namespace, running: dict[str, Any], invalid: bool) -> None:
    """What a reload of the running service would do, change by change (preview.py)."""
    from .files import FileSnapshot
    from .preview import describe, preview, running_files

    snapshot = FileSnapshot()
    texts: list[str] = []
    for path in running_files(running):
        try:
            texts.append(snapshot.text(path))
        except (OSError, UnicodeDecodeError):
            continue  # the validation names the file and why
    lines = describe(preview(running, texts))
    head = f"{args.service} (pid {running.get('pid')}): a reload now would "
    if invalid:
        print(head + "FAIL and change nothing; what the files change:")
    else:
        print(head + ("change:" if lines else "change nothing (the files are what it runs)"))
    for line in lines:
        print(f"  {line}")
    try:
        state = load_state(_state_file(args))
    except StateUnreadable:
        state = None
    for change in (state or {}).get("pending_restart") or []:
        print(f"  still pending a restart from an earlier reload: [{change['group']}] {change['option']}")


def _check(service: str, options: str | None, service_args: Sequence[str]) -> tuple[list[Any], list[Any]]:
    """``(errors, warnings)`` for the service's files; secrets masked in both."""
    # Imported here: `signal` (what systemctl reload waits on) must start fast.
    from oslo_config import cfg

    from .config import ConfigInvalid, load_candidate, mask_problems
    from .files import FileSnapshot
    from .lint import CheckHints, known_options, lint_files

    conf = cfg.ConfigOpts()
    returned = _options_provider(service, options)(conf)
    hints = returned if isinstance(returned, CheckHints) else CheckHints()
    files = FileSnapshot()
    errors: list[Any] = []
    try:
        load_candidate(conf, args=service_args, files=files)
    except ConfigInvalid as exc:
        errors = list(exc.problems)
    lint_errors, lint_warnings = lint_files(files.texts(), known_options(conf, hints), hints.required_sections)
    return errors + mask_problems(lint_errors, conf, files), mask_problems(lint_warnings, conf, files)


CORE_COMMANDS = frozenset({"signal", "status", "check"})


def build_parser(extras: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cinder-reload", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def service_parser(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("service", metavar="SERVICE", help="service name, e.g. cinder-volume")
        p.add_argument("--state-dir", help="where state files live (default: $RUNTIME_DIRECTORY or /run/cinder)")
        return p

    p = service_parser("signal", "send SIGHUP to a service and, with --wait, wait for its reload to finish")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--pid", type=int)
    target.add_argument("--pidfile")
    p.add_argument("--wait", action="store_true", help="block until the reload finished; exit 1 if it failed")
    p.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds to wait (default {DEFAULT_TIMEOUT:g})"
    )
    p.add_argument(
        "--ack-timeout",
        type=float,
        default=ACK_TIMEOUT,
        help=f"seconds an idle service may take to record that the reload began (default {ACK_TIMEOUT:g}); "
        "past them it cannot write its state file and the wait ends at once",
    )
    p.set_defaults(func=cmd_signal)

    p = service_parser("status", "show the last reload of a service")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = service_parser(
        "check",
        "validate a configuration before reloading (like nginx -t); "
        "the service's own arguments follow --, e.g. -- --config-file /etc/cinder/cinder.conf",
    )
    p.add_argument("--options", metavar="MODULE:FUNC", help="function registering the service's options")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too (unknown or duplicate options...)")
    p.add_argument(
        "--running",
        action="store_true",
        help="also show what a reload of the running service would do, change by change "
        "(its own command line is used unless one follows --)",
    )
    p.set_defaults(func=cmd_check)

    for module, function in EXTRA_COMMANDS if extras else ():
        getattr(importlib.import_module(module, __package__), function)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" belongs to the service (its oslo.config
    # command line), never to us: split it off before argparse sees it.
    service_args: list[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, service_args = argv[:split], argv[split + 1 :]
    # The other subcommands (render, run) import jinja2, oslo.config and more;
    # `signal` is what `systemctl reload` waits on, so it skips them.
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(extras=command not in CORE_COMMANDS).parse_args(argv)
    args.service_args = service_args
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
