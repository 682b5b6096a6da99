"""Bad files and faults against the reference daemon: a real process, a real
NOTIFY_SOCKET, the real `cinder-reload` command.

Each test asserts what an operator meets: the exit status and stderr of
`cinder-reload signal --wait`, the STATUS= systemd would show, the state file,
the log, and that the service still answers on its previous configuration and
takes a good reload afterwards.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BASE_CONFIG, RefDaemon

pytestmark = pytest.mark.process


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[RefDaemon]:
    d = RefDaemon(tmp_path, BASE_CONFIG)
    d.wait_ready()
    yield d
    d.stop()


def everything_shown(d: RefDaemon, *results: object) -> str:
    """All an operator (or anyone on the host) can read about the service."""
    parts = [str(getattr(r, "stdout", "")) + str(getattr(r, "stderr", "")) for r in results]
    parts += [(d.state_dir / "refdaemon.reload.json").read_text(), d.output(), *d.notify.raw]
    return "".join(parts)


def assert_serving(d: RefDaemon, pid: int, label1: str = "one") -> None:
    assert d.proc.poll() is None, d.output()
    assert d.pid == pid
    assert d.ask("backend1").startswith(f"backend1 label={label1} ")


def good_reload_afterwards(d: RefDaemon) -> None:
    d.edit(BASE_CONFIG.replace("label = one", "label = after"))
    result = d.reload()
    assert result.returncode == 0, result.stderr
    assert d.ask("backend1").startswith("backend1 label=after ")


SECRET_LEAKS = {
    # A password wrapped onto a continuation line that a blank line orphaned.
    "continuation line": (
        BASE_CONFIG.replace("password = s3cr3t-one", "password =\n\n    wr4pped-s3cr3t"),
        ["wr4pped-s3cr3t"],
    ),
    # A value wrapped over two lines with a comment in between.
    "wrapped value": (
        BASE_CONFIG.replace("password = s3cr3t-two", "password = mysql://u:\n# note\n  p4ss-w0rd@db"),
        ["p4ss-w0rd", "mysql://u:"],
    ),
}


@pytest.mark.parametrize("case", sorted(SECRET_LEAKS))
def test_a_secret_in_a_broken_file_is_shown_nowhere(plain: RefDaemon, case: str) -> None:
    text, secrets = SECRET_LEAKS[case]
    pid = plain.pid
    plain.edit(text)

    result = plain.reload()

    assert result.returncode == 1
    assert "syntax error" in result.stderr and "line not shown" in result.stderr
    last = plain.notify.messages[-1]
    assert last["READY"] == "1" and last["STATUS"].startswith("Reload failed: ")
    shown = everything_shown(plain, result)
    for secret in [*secrets, "s3cr3t-one", "s3cr3t-two"]:
        assert secret not in shown
    assert_serving(plain, pid)
    good_reload_afterwards(plain)


def test_a_mutable_secret_is_applied_live_and_never_logged(plain: RefDaemon) -> None:
    plain.edit(BASE_CONFIG.replace("[DEFAULT]\n", "[DEFAULT]\ntoken = t0ken-one\n"))
    first = plain.reload()
    plain.edit(BASE_CONFIG.replace("[DEFAULT]\n", "[DEFAULT]\ntoken = t0ken-two\n"))
    second = plain.reload()

    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    assert [(c["option"], c["old"], c["new"], c["applied"]) for c in plain.state()["changed"]] == [
        ("token", "****", "****", "live")
    ]
    # oslo.config's "Option ... changed from ... to ..." line, as the engine logs it.
    assert "Option DEFAULT.token changed from [****] to [****]" in plain.output()
    shown = everything_shown(plain, first, second)
    assert "t0ken-one" not in shown and "t0ken-two" not in shown


def test_the_state_file_is_not_world_readable(plain: RefDaemon) -> None:
    plain.edit(BASE_CONFIG.replace("label = one", "label = uno"))
    assert plain.reload().returncode == 0
    mode = stat.S_IMODE((plain.state_dir / "refdaemon.reload.json").stat().st_mode)
    assert mode & stat.S_IROTH == 0 and mode & stat.S_IWOTH == 0, oct(mode)


NON_FILES = {
    "FIFO": lambda p: os.mkfifo(p),
    "symlink to /dev/urandom": lambda p: p.symlink_to("/dev/urandom"),
    "symlink to /dev/zero": lambda p: p.symlink_to("/dev/zero"),
}


@pytest.mark.parametrize("case", sorted(NON_FILES))
def test_a_non_regular_config_file_is_refused_at_once(plain: RefDaemon, case: str) -> None:
    pid = plain.pid
    plain.config_file.unlink()
    NON_FILES[case](plain.config_file)
    started = time.monotonic()

    result = plain.reload(timeout=20)

    assert time.monotonic() - started < 5, "refused at once, not after a blocked read or 18 GB of /dev/urandom"
    assert result.returncode == 1
    assert "not a regular file; refusing to read it" in result.stderr
    assert plain.state()["result"] == "failed"
    assert plain.notify.messages[-1]["STATUS"].startswith("Reload failed: ")
    assert_serving(plain, pid)
    plain.config_file.unlink()
    good_reload_afterwards(plain)
