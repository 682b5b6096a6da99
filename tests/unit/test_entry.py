"""The executable's fast ``signal`` path (entry.py): the same answers as argparse, and nothing heavy.

``systemctl reload`` (ExecReload= on systemd < 253) and ``service NAME
reload`` start ``cinder-reload signal`` every time; entry.py reads those
command lines itself so the SIGHUP leaves before argparse and the rest of
the command line interface are imported.  These tests hold the two parsers
to the same answers, check that the lines our units and init scripts really
run take the fast path, and that it imports none of what it exists to avoid.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cinder_reload.cli import build_parser, signal_request
from cinder_reload.entry import parse_signal
from cinder_reload.waiter import SignalRequest

REPO = Path(__file__).resolve().parents[2]


def argparse_request(argv: list[str]) -> SignalRequest | None:
    """What cli.py's parser makes of ``argv``, None where it refuses it."""
    try:
        return signal_request(build_parser(extras=False).parse_args(argv))
    except SystemExit:
        return None


ACCEPTED = [
    "signal cinder-volume --pid 123 --wait --timeout 295",
    "signal cinder-volume --pid=123 --wait --timeout=295",
    "signal --pid 123 cinder-volume",
    "signal cinder-api --pidfile /run/cinder/api.pid --state-dir /run/cinder --wait --timeout 115",
    "signal cinder-backup --pid 7 --ack-timeout 2.5",
    "signal cinder-volume --pid 123 --timeout 1e3",
]

#: Each is refused by argparse or read differently than a naive parser would:
#: the fast path must leave every one of them to argparse.
LEFT_TO_ARGPARSE = [
    "signal cinder-volume",  # neither --pid nor --pidfile
    "signal cinder-volume --pid 1 --pidfile /x",  # both
    "signal cinder-volume --pid abc",
    "signal cinder-volume --pid",
    "signal cinder-volume --pid 1 --wai",  # argparse expands abbreviations
    "signal cinder-volume --pid 1 --pid 2",  # repeated: the last one wins there
    "signal cinder-volume --pid -5",
    "signal cinder-volume cinder-api --pid 1",
    "signal --pid 1",
    "signal cinder-volume --pid 1 --wait=yes",
    "signal cinder-volume --pid 1 --timeout",
    "signal cinder-volume --pid 1 -h",
    "signal cinder-volume --pid 1 --",
    "status cinder-volume",
    "render --help",
    "",
]


@pytest.mark.parametrize("line", ACCEPTED)
def test_plain_signal_lines_read_as_argparse_reads_them(line: str) -> None:
    argv = shlex.split(line)
    fast = parse_signal(argv)
    assert fast is not None, f"{line!r} should take the fast path"
    assert fast == argparse_request(argv)


@pytest.mark.parametrize("line", LEFT_TO_ARGPARSE)
def test_anything_else_is_left_to_argparse(line: str) -> None:
    assert parse_signal(shlex.split(line)) is None


def _shipped_signal_lines() -> list[tuple[str, list[str]]]:
    """Every ``cinder-reload signal`` line in the committed units, drop-ins and init scripts."""
    found: list[tuple[str, list[str]]] = []
    for path in sorted((REPO / "units").rglob("*")) + sorted((REPO / "initscripts").glob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        for match in re.finditer(r"^ExecReload=\S*cinder-reload (signal .*)$", text, re.M):
            found.append((str(path.relative_to(REPO)), shlex.split(match.group(1).replace("$MAINPID", "4242"))))
        # The init scripts' call, continuation line included, with the
        # shell variables as the script sets them.
        for match in re.finditer(r'"\$CINDER_RELOAD" (signal .*?)(?<!\\)\n', text.replace("\\\n\t\t", " "), re.S):
            line = re.sub(r'"\$[A-Z_]+"', "X", match.group(1))
            line = line.replace("--timeout X", "--timeout 60").replace("2>&1)", "")
            found.append((str(path.relative_to(REPO)), shlex.split(line)))
    return found


def test_every_shipped_reload_command_takes_the_fast_path() -> None:
    lines = _shipped_signal_lines()
    units = {where for where, _ in lines}
    assert any(where.startswith("units/") for where in units) and any(w.startswith("initscripts/") for w in units)
    for where, argv in lines:
        fast = parse_signal(argv)
        assert fast is not None, f"{where}: {argv} would import the whole command line interface first"
        assert fast == argparse_request(argv), where


HEAVY = {"argparse", "gettext", "locale", "typing", "threading", "ctypes", "dataclasses", "inspect"}
HEAVY_PREFIXES = ("oslo_", "jinja2", "cinder_reload.cli", "cinder_reload.config", "cinder_reload.engine")
#: What costs milliseconds and the signal does not need yet: the state file is
#: parsed, the directory watched, after it went out.
NOT_BEFORE_THE_SIGNAL = {"json", "re", "enum", "pathlib", "select", "importlib", "warnings", "signal"}


def _imported_when(tmp_path: Path, pid: int, *, at_kill: bool) -> tuple[int, list[str]]:
    """Run the real command in an interpreter without site packages (only what
    it imports itself counts) at ``pid``; with ``at_kill``, stop it right where
    the SIGHUP goes out.  Its exit status, and what it had imported by then."""
    probe = (
        "import os, sys; before = set(sys.modules); sys.path.insert(0, sys.argv[1]); seen = []\n"
        "def kill(pid, sig, real=os.kill):\n"
        "    if sig == 1 and sys.argv[4] == 'at_kill':\n"
        "        seen.append(sorted(set(sys.modules) - before)); raise ProcessLookupError\n"
        "    return real(pid, sig)\n"
        "os.kill = kill\n"
        "from cinder_reload.entry import main\n"
        "status = main(['signal', 'cinder-volume', '--pid', sys.argv[2], '--wait', '--state-dir', sys.argv[3]])\n"
        "print(__import__('json').dumps([status, seen[0] if seen else sorted(set(sys.modules) - before)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(REPO), str(pid), str(tmp_path), "at_kill" if at_kill else ""],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": ""},
        check=True,
    )
    status, imported = json.loads(done.stdout.splitlines()[-1])
    return status, imported


def test_signal_imports_nothing_heavy_before_the_sighup(tmp_path: Path) -> None:
    """At a process that exited: the command stops where the SIGHUP would go out."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    status, imported = _imported_when(tmp_path, dead.pid, at_kill=False)
    assert status == 7
    heavy = sorted(m for m in imported if m in HEAVY or m.startswith(HEAVY_PREFIXES))
    assert heavy == [], f"imported before the SIGHUP: {heavy}"


def test_the_sighup_goes_out_on_builtin_modules(tmp_path: Path) -> None:
    """At a live service that catches SIGHUP and has a state file: every check
    before the signal ran (pid, SIGHUP handler, state file read, command line),
    and the signal goes out before json, re, enum, pathlib or select are imported."""
    service = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGHUP, lambda *a: None); "
            "print('ready', flush=True); time.sleep(60)",
            "cinder-volume",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert service.stdout is not None and service.stdout.readline() == "ready\n"
        (tmp_path / "cinder-volume.reload.json").write_text(json.dumps({"pid": service.pid, "generation": 3}))
        status, imported = _imported_when(tmp_path, service.pid, at_kill=True)
    finally:
        service.kill()
        service.wait()
    assert status == 7  # the probe's kill reported the process gone, where the real one sent SIGHUP
    too_early = sorted(m for m in imported if m in HEAVY | NOT_BEFORE_THE_SIGNAL or m.startswith(HEAVY_PREFIXES))
    assert too_early == [], f"imported before the SIGHUP went out: {too_early}"


def test_a_unit_rendered_with_python_runs_entry_py_without_site(tmp_path: Path) -> None:
    """`render --python`: ExecReload= runs `PYTHON -S .../cinder_reload/entry.py signal ...`.

    Run exactly as the unit says (at a process that exited): the signal path
    works without the interpreter's site step, and the other commands, which
    need the site packages (oslo.config, jinja2), still work from that file.
    """
    from cinder_reload.render import RenderSpec, render_unit

    spec = RenderSpec(python=sys.executable)
    (volume,) = [s for s in spec.services if s.name == "cinder-volume"]
    (line,) = [x for x in render_unit(spec, volume).splitlines() if x.startswith("ExecReload=")]
    argv = shlex.split(line.removeprefix("ExecReload="))
    assert argv[:3] == [sys.executable, "-S", str(REPO / "cinder_reload" / "entry.py")], argv
    dead = subprocess.Popen(["true"])
    dead.wait()
    argv = [str(dead.pid) if a == "$MAINPID" else a for a in argv]
    assert parse_signal(argv[3:]) is not None  # the fast path, not argparse

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # No PYTHONPATH: the file finds its own package.
        env = {"PATH": os.environ["PATH"]}
        return subprocess.run(list(args), capture_output=True, text=True, env=env, check=False)

    ran = run(*argv, "--state-dir", str(tmp_path))
    assert (ran.returncode, ran.stderr.strip()) == (
        7,
        f"cinder-volume: not running (process {dead.pid} is not running)",
    )
    status = run(*argv[:3], "status", "cinder-volume", "--state-dir", str(tmp_path))
    assert status.returncode == 3 and "no reload state at" in status.stderr, status
    check = run(*argv[:3], "render", "--output", str(tmp_path / "out"), "--python", sys.executable)
    assert check.returncode == 0, check.stderr  # jinja2 from the site packages
    assert f"ExecReload={sys.executable} -S " in (tmp_path / "out/units/cinder-volume.service").read_text()
