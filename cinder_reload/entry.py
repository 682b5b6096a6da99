"""The ``cinder-reload`` executable: ``signal`` as service managers run it, before anything heavy.

``ExecReload=`` (systemd < 253) and the init scripts' ``reload`` start this
command for every reload, and what it imports before its SIGHUP goes out is
added to every ``systemctl reload``: the whole command line interface
(argparse, and through it gettext and locale) and the modules it needs for
its other commands cost ~20 ms there.  So the ``signal`` command lines are
read here with nothing but ``str`` methods; anything else (the other
commands, ``--help``, an abbreviated or repeated option, a malformed line)
goes to :func:`cinder_reload.cli.main`, whose argparse parser defines the
command and reports the errors.  tests/unit/test_entry.py holds both parsers
to the same answers.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Started as a file, ``PYTHON -S .../cinder_reload/entry.py signal ...``:
    # the package is importable from the directory that holds it.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    __package__ = "cinder_reload"

from .waiter import ACK_TIMEOUT, DEFAULT_TIMEOUT, SignalRequest, run_signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main", "parse_signal"]

#: The options of ``signal`` (cli.build_parser), each with how its value is read; None: a flag.
_OPTIONS: dict[str, Callable[[str], object] | None] = {
    "--pid": int,
    "--pidfile": str,
    "--wait": None,
    "--timeout": float,
    "--ack-timeout": float,
    "--state-dir": str,
}


def parse_signal(argv: Sequence[str]) -> SignalRequest | None:
    """``argv`` as a ``signal`` request if it is one in plain form, else None (argparse decides)."""
    if not argv or argv[0] != "signal":
        return None
    positional: list[str] = []
    values: dict[str, object] = {}
    tokens = iter(argv[1:])
    for token in tokens:
        if not token.startswith("-"):
            positional.append(token)
            continue
        name, equals, value = token.partition("=")
        if name not in _OPTIONS or name in values:
            return None  # unknown, abbreviated, "--", "-h" or repeated: argparse's business
        convert = _OPTIONS[name]
        if convert is None:
            if equals:
                return None
            values[name] = True
            continue
        if not equals:
            value = next(tokens, "")
            if not value or value.startswith("-"):
                return None
        try:
            values[name] = convert(value)
        except ValueError:
            return None
    if len(positional) != 1 or (("--pid" in values) == ("--pidfile" in values)):
        return None
    return SignalRequest(
        positional[0],
        pid=values.get("--pid"),  # type: ignore[arg-type]
        pidfile=values.get("--pidfile"),  # type: ignore[arg-type]
        wait=bool(values.get("--wait")),
        timeout=values.get("--timeout", DEFAULT_TIMEOUT),  # type: ignore[arg-type]
        ack_timeout=values.get("--ack-timeout", ACK_TIMEOUT),  # type: ignore[arg-type]
        state_dir=values.get("--state-dir"),  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    request = parse_signal(args)
    if request is None:
        if sys.flags.no_site:
            import site

            site.main()  # the site-packages (oslo.config, jinja2) the other commands need
        from .cli import main as full_command_line

        return full_command_line(args)
    status = run_signal(request)
    if argv is None:
        # The executable itself (ExecReload=): its output is written, no
        # thread or file is left, so the interpreter's own teardown (module
        # cleanup, a last garbage collection: ~3 ms) would only be added to
        # every `systemctl reload`.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
