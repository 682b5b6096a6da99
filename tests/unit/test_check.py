"""`cinder-reload check` as an operator runs it: a table of typos, duplicates,
bad values and missing sections, each with the exit status and the lines it
must print, and never a traceback or a library's warning."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import CINDER_RELOAD, TESTS

GOOD = """\
[DEFAULT]
greeting = hi
debug = false
[backend1]
label = one
password = pw-one
[backend2]
label = two
"""

#: case -> (file text, exit status, lines stderr must contain)
CASES: dict[str, tuple[str, int, list[str]]] = {
    "good": (GOOD, 0, []),
    "typo in an option": (
        GOOD.replace("label = one", "lable = one"),
        0,
        [":5: [backend1] lable: unknown option, ignored (did you mean label?)"],
    ),
    "typo in DEFAULT": (
        GOOD.replace("debug = false", "debgu = true"),
        0,
        [":3: [DEFAULT] debgu: unknown option, ignored (did you mean debug?)"],
    ),
    "unknown section": (
        GOOD + "[backend3]\nlabel = three\n",
        0,
        [":9: unknown section [backend3]: no option of this service is read from it"],
    ),
    "duplicate option": (
        GOOD.replace("label = one", "label = one\nlabel = uno"),
        0,
        [":6: [backend1] label set again (first at line 5); this later value is the one used"],
    ),
    "duplicate section": (
        GOOD + "[backend1]\nport = 2\n",
        0,
        [":9: section [backend1] again (first at line 4)"],
    ),
    "deprecated name": (
        GOOD.replace("greeting = hi", "banner = hi"),
        0,
        [":2: [DEFAULT] banner is a deprecated name: use [DEFAULT] motd"],
    ),
    "deprecated for removal": (
        GOOD.replace("greeting = hi", "old_knob = x"),
        0,
        [":2: [DEFAULT] old_knob is deprecated for removal"],
    ),
    "bad value": (GOOD.replace("label = two", "label = two\nport = 99999"), 1, ["[backend2] port:"]),
    "bad value of a CLI option in the file": (
        GOOD.replace("debug = false", "verbose = maybe"),
        1,
        ["[DEFAULT] verbose: Unexpected boolean value 'maybe'"],
    ),
    "missing backend section": (
        GOOD.split("[backend2]")[0],
        1,
        ["[backend2]: named by the configuration (enabled_backends) but no file has this section"],
    ),
    "syntax error": (GOOD + "[backend2\n", 1, ["syntax error at line 9, Invalid section"]),
    "every problem at once": (
        GOOD.replace("debug = false", "verbose = maybe\nop_seconds = soon").replace("label = one", "lable = one"),
        1,
        ["2 problem(s)", "[DEFAULT] verbose", "[DEFAULT] op_seconds", "[backend1] lable: unknown option"],
    ),
}


def check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *CINDER_RELOAD,
            "check",
            "refdaemon",
            "--options",
            "refdaemon:register_check_opts",
            *extra,
            "--",
            "--config-file",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_table(tmp_path: Path, case: str) -> None:
    text, status, lines = CASES[case]
    path = tmp_path / "svc.conf"
    path.write_text(text)

    result = check(path)

    assert result.returncode == status, (result.stdout, result.stderr)
    for line in lines:
        assert line in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "Warning:" not in result.stderr
    assert "usage:" not in result.stderr, "argparse's own complaint is not the operator's message"
    assert "pw-one" not in result.stdout + result.stderr
    if status == 0:
        verdict = "configuration OK with" if lines else "configuration OK ("
        assert verdict in result.stdout
    else:
        assert "configuration is NOT valid" in result.stderr


def test_strict_makes_warnings_fatal(tmp_path: Path) -> None:
    path = tmp_path / "svc.conf"
    path.write_text(CASES["typo in an option"][0])
    assert check(path).returncode == 0
    assert check(path, "--strict").returncode == 1
    path.write_text(GOOD)
    assert check(path, "--strict").returncode == 0


def test_a_secret_is_never_echoed_by_the_lint(tmp_path: Path) -> None:
    path = tmp_path / "svc.conf"
    path.write_text(GOOD.replace("password = pw-one", "pasword = n3w-s3cret\npassword = x\n    wr4pped"))
    result = check(path)
    assert "pasword: unknown option" in result.stderr
    assert "n3w-s3cret" not in result.stdout + result.stderr and "wr4pped" not in result.stdout + result.stderr
