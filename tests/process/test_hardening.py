"""Bad files and faults against the reference daemon: a real process, a real
NOTIFY_SOCKET, the real `cinder-reload` command.

Each test asserts what an operator meets: the exit status and stderr of
`cinder-reload signal --wait`, the STATUS= systemd would show, the state file,
the log, and that the service still answers on its previous configuration and
takes a good reload afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from helpers import BASE_CONFIG, CINDER_RELOAD, RefDaemon, signal_wait, start_sighup_catcher, wait_until

pytestmark = pytest.mark.process


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CINDER_RELOAD, *args], capture_output=True, text=True, timeout=60)


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
    last = plain.notify.settled()
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
    assert plain.notify.settled()["STATUS"].startswith("Reload failed: ")
    assert_serving(plain, pid)
    plain.config_file.unlink()
    good_reload_afterwards(plain)


NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]


def test_signal_refuses_an_unrelated_process_that_catches_sighup(tmp_path: Path) -> None:
    marker = tmp_path / "got-sighup"
    target = start_sighup_catcher(marker, 60)
    try:
        started = time.monotonic()
        result = signal_wait(CINDER_RELOAD, "refdaemon", target.pid, tmp_path / "state", 30)
        assert time.monotonic() - started < 10
        assert result.returncode == 1
        assert f"process {target.pid}" in result.stderr and "is not refdaemon" in result.stderr
        time.sleep(0.2)
        assert not marker.exists(), "the signal must not have been sent"
    finally:
        target.kill()
        target.wait()


def test_a_directory_at_the_state_file_path(plain: RefDaemon) -> None:
    state = plain.state_dir / "refdaemon.reload.json"
    state.unlink()
    state.mkdir()

    status = run_cli("status", "refdaemon", "--state-dir", str(plain.state_dir))
    result = plain.reload()

    assert status.returncode == 4 and "is a directory, not a state file" in status.stderr
    assert result.returncode == 1 and "is a directory" in result.stderr
    for out in (status, result):
        assert "Traceback" not in out.stderr
    assert plain.notify.count("RELOADING") == 0, "not signalled: its result could never be read"
    state.rmdir()


def test_a_state_file_that_is_not_json(plain: RefDaemon) -> None:
    state = plain.state_dir / "refdaemon.reload.json"
    state.write_text("{ this is not json")

    status = run_cli("status", "refdaemon", "--state-dir", str(plain.state_dir))

    assert status.returncode == 4 and "not a state file (not JSON" in status.stderr
    assert "Traceback" not in status.stderr
    good_reload_afterwards(plain)  # the engine replaces it


def test_a_read_only_state_directory_fails_fast_with_the_reason(tmp_path: Path) -> None:
    with RefDaemon(tmp_path, BASE_CONFIG, prefix=NO_DAC) as d:
        pid = d.pid
        d.state_dir.chmod(0o555)
        d.edit(BASE_CONFIG.replace("label = one", "label = uno"))
        started = time.monotonic()

        result = d.reload(30, "--ack-timeout", "2")

        assert time.monotonic() - started < 10, "seconds, not the timeout"
        assert result.returncode == 1
        assert "did not record the reload" in result.stderr and "read-only or full?" in result.stderr
        # systemd's STATUS= says what happened, and why nothing could be written.
        status = d.notify.messages[d.notify.wait_for(lambda m: "state file not written" in m.get("STATUS", ""))]
        assert "Read-only file system" in status["STATUS"] or "Permission denied" in status["STATUS"]
        assert_serving(d, pid, "uno")  # the reload itself ran: the config was valid
        d.state_dir.chmod(0o755)
        d.edit(BASE_CONFIG.replace("label = one", "label = again"))
        result = d.reload()
        assert result.returncode == 0, result.stderr


def test_a_removed_runtime_directory_is_recreated(plain: RefDaemon) -> None:
    shutil.rmtree(plain.state_dir)
    good_reload_afterwards(plain)
    assert plain.state()["result"] == "ok"


def test_a_driver_error_quoting_a_new_secret_is_masked_everywhere(plain: RefDaemon) -> None:
    pid = plain.pid
    plain.edit(
        BASE_CONFIG.replace("password = s3cr3t-one", "password = n3w-s3cr3t-one\nfail_reinit = true").replace(
            "label = one", "label = uno"
        )
    )

    result = plain.reload()

    assert result.returncode == 1
    assert "driver refused to initialise" in result.stderr and "with password ****" in result.stderr
    shown = everything_shown(plain, result)
    assert "re-initialising [backend1] failed" in plain.output(), "the log has the reason (and traceback)"
    assert "n3w-s3cr3t-one" not in shown and "s3cr3t-one" not in shown
    assert_serving(plain, pid)


def check_running(d: RefDaemon) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *CINDER_RELOAD,
            "check",
            "refdaemon",
            "--options",
            "refdaemon:register_check_opts",
            "--running",
            "--state-dir",
            str(d.state_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"},
    )


def test_check_running_shows_what_a_reload_would_do_before_it_is_sent(plain: RefDaemon) -> None:
    unchanged = check_running(plain)
    assert unchanged.returncode == 0, unchanged.stderr
    assert f"refdaemon (pid {plain.pid}): a reload now would change nothing" in unchanged.stdout

    plain.edit(
        BASE_CONFIG.replace("label = one", "label = uno")
        .replace("greeting = hello", "greeting = bonjour\ndebug = true")
        .replace("password = s3cr3t-two", "password = n3w-s3cr3t-two\nlable = typo")
    )
    preview = check_running(plain)

    assert preview.returncode == 0, preview.stderr
    lines = preview.stdout.splitlines()
    assert lines[0] == f"refdaemon (pid {plain.pid}): a reload now would change:"
    for expected in (
        "  [DEFAULT] debug: (not set) -> 'true': applied live",
        "  [DEFAULT] greeting: 'hello' -> 'bonjour': needs a restart (reported pending, not applied)",
        "  [backend1] label: 'one' -> 'uno': [backend1] re-initialised",
        "  [backend2] password: **** -> ****: [backend2] re-initialised",
        "  [backend2] lable: (not set) -> 'typo': no option reads it: ignored",
    ):
        assert expected in lines, preview.stdout
    assert "lable: unknown option, ignored (did you mean label?)" in preview.stderr
    assert "s3cr3t" not in preview.stdout + preview.stderr
    running = (plain.state_dir / "refdaemon.running.json").read_text()
    assert "s3cr3t" not in running and "label" in running
    assert plain.notify.count("RELOADING") == 0, "a preview sends nothing"
    assert plain.ask("backend1").startswith("backend1 label=one ")

    # It tells the truth: the reload then does what it said.
    result = plain.reload()
    assert result.returncode == 0, result.stderr
    assert sorted((c["group"], c["option"], c["applied"]) for c in plain.state()["changed"]) == [
        ("DEFAULT", "debug", "live"),
        ("backend1", "label", "reinit"),
        ("backend2", "password", "reinit"),
    ]
    after = check_running(plain)
    assert "would change nothing" in after.stdout
    assert "still pending a restart from an earlier reload: [DEFAULT] greeting" in after.stdout

    plain.edit(BASE_CONFIG.replace("label = two", "label = two\nport = 99999"))
    failing = check_running(plain)
    assert failing.returncode == 1
    assert "a reload now would FAIL and change nothing" in failing.stdout
    assert "[backend2] port: 1 -> 99999" not in failing.stdout  # not set before: shown as added
    assert "[backend2] port: (not set) -> '99999'" in failing.stdout
    assert "[backend2] port:" in failing.stderr


def test_a_file_changed_after_validation_is_not_what_gets_applied(tmp_path: Path) -> None:
    """What runs is what was validated: the file is read once, and the running
    configuration is parsed from those bytes, however late the file changes
    (here: while the cycle drains, between validating and applying).  A later
    edit is the next reload's business, and that reload sees all of it."""
    slow = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 1.5")
    with RefDaemon(tmp_path, slow) as d:
        validated = slow.replace("label = one", "label = validated")
        later = validated.replace("label = validated", "label = later").replace("label = two", "label = deux")
        replies: list[str] = []
        held = d.hold("backend1", replies)
        d.edit(validated)
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: (d.state().get("in_progress") or {}).get("phase") == "draining", 10, "the drain")
        d.edit(later)
        held.join(10)
        wait_until(lambda: d.state()["generation"] == 1 and not d.state().get("in_progress"), 10, "cycle end")

        assert d.state()["result"] == "ok"
        assert [(c["group"], c["option"], c["new"]) for c in d.state()["changed"]] == [
            ("backend1", "label", "validated")
        ]
        assert d.ask("backend1").startswith("backend1 label=validated generation=1")
        assert d.ask("backend2").startswith("backend2 label=two generation=0")
        # The next reload finds both of the later edits (had the first cycle
        # installed the later file, backend2's change would never be seen).
        result = d.reload()
        assert result.returncode == 0, result.stderr
        assert sorted((c["group"], c["new"]) for c in d.state()["changed"]) == [
            ("backend1", "later"),
            ("backend2", "deux"),
        ]
        assert d.ask("backend2").startswith("backend2 label=deux generation=1")


def test_a_full_state_directory_fails_fast_with_the_reason(tmp_path: Path) -> None:
    """The daemon's state directory is a 64 KiB tmpfs in its own mount
    namespace (nothing on the host changes); the test reaches it through
    /proc/PID/root, fills it, and reloads."""
    state = tmp_path / "state"
    state.mkdir()
    private_tmpfs = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"', str(state)]
    with RefDaemon(tmp_path, BASE_CONFIG, prefix=private_tmpfs) as d:
        seen = Path(f"/proc/{d.pid}/root{state}")
        assert (seen / "refdaemon.reload.json").exists() and not (state / "refdaemon.reload.json").exists()
        with open(seen / "filler", "wb", buffering=0) as filler, pytest.raises(OSError, match="No space left"):
            while True:
                filler.write(b"\0" * 4096)
        d.edit(BASE_CONFIG.replace("label = one", "label = uno"))
        started = time.monotonic()

        result = signal_wait(CINDER_RELOAD, "refdaemon", d.pid, seen, 30, "--ack-timeout", "2")

        assert time.monotonic() - started < 10, "seconds, not the timeout"
        assert result.returncode == 1 and "did not record the reload" in result.stderr, result.stderr
        status = d.notify.messages[d.notify.wait_for(lambda m: "state file not written" in m.get("STATUS", ""))]
        assert "No space left on device" in status["STATUS"], status
        assert_serving(d, d.pid, "uno")
        (seen / "filler").unlink()
        d.edit(BASE_CONFIG.replace("label = one", "label = again"))
        result = signal_wait(CINDER_RELOAD, "refdaemon", d.pid, seen, 30)
        assert result.returncode == 0, result.stderr


def test_a_removed_runtime_directory_it_cannot_recreate_fails_fast(tmp_path: Path) -> None:
    with RefDaemon(tmp_path, BASE_CONFIG, prefix=NO_DAC) as d:
        pid = d.pid
        shutil.rmtree(d.state_dir)
        tmp_path.chmod(0o555)  # the daemon (no CAP_DAC_OVERRIDE) cannot create it again
        try:
            d.edit(BASE_CONFIG.replace("label = one", "label = uno"))
            started = time.monotonic()

            result = d.reload(30, "--ack-timeout", "2")

            assert time.monotonic() - started < 10, "seconds, not the timeout"
            assert result.returncode == 1 and "did not record the reload" in result.stderr, result.stderr
            assert "missing, read-only or full?" in result.stderr
            status = d.notify.messages[d.notify.wait_for(lambda m: "state file not written" in m.get("STATUS", ""))]
            assert "Permission denied" in status["STATUS"], status
            assert_serving(d, pid, "uno")
        finally:
            tmp_path.chmod(0o755)
        good_reload_afterwards(d)  # it may create the directory again now
