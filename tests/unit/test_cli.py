"""`cinder-reload` as an operator runs it (the installed console script)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from helpers import CINDER_RELOAD, TESTS

GOOD = "[DEFAULT]\n[backend1]\nlabel = one\n"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CINDER_RELOAD, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
    )


def test_signal_to_a_dead_pid_is_lsb_not_running(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    result = run("signal", "svc", "--pid", str(proc.pid), "--wait", "--state-dir", str(tmp_path))
    assert result.returncode == 7 and "not running" in result.stderr


def test_signal_refuses_a_process_that_would_die_of_sighup(tmp_path: Path) -> None:
    # A service still starting (no handler yet): SIGHUP's default action kills.
    proc = subprocess.Popen(["sleep", "60"])
    try:
        result = run("signal", "svc", "--pid", str(proc.pid), "--wait", "--state-dir", str(tmp_path))
        assert result.returncode == 1 and "does not handle SIGHUP" in result.stderr
        assert proc.poll() is None, "the process must not have been signalled"
    finally:
        proc.kill()
        proc.wait()


def test_signal_with_missing_pidfile_is_lsb_not_running(tmp_path: Path) -> None:
    result = run("signal", "svc", "--pidfile", str(tmp_path / "none.pid"), "--wait")
    assert result.returncode == 7 and "none.pid" in result.stderr


def test_status_without_state(tmp_path: Path) -> None:
    result = run("status", "svc", "--state-dir", str(tmp_path))
    assert result.returncode == 3 and "no reload state" in result.stderr


def test_status_human_and_json(tmp_path: Path) -> None:
    doc = {
        "service": "svc",
        "pid": 1,
        "generation": 4,
        "result": "failed",
        "message": "Reload failed: x",
        "finished_at": "t",
        "duration_s": 0.1,
        "changed": [],
        "pending_restart": [{"group": "DEFAULT", "option": "host", "old": "a", "new": "b", "applied": "restart"}],
        "problems": ["f.conf: syntax error"],
        "reinitialized": [],
        "workers": [{"worker": "fake1", "pid": 12, "result": "failed", "message": "did not finish"}],
    }
    (tmp_path / "svc.reload.json").write_text(json.dumps(doc))
    human = run("status", "svc", "--state-dir", str(tmp_path))
    assert human.returncode == 1
    assert "reload #4 failed" in human.stdout and "pending restart: [DEFAULT] host: 'a' -> 'b'" in human.stdout
    assert "problem: f.conf: syntax error" in human.stdout
    assert "worker fake1 (pid 12): failed: did not finish" in human.stdout
    assert json.loads(run("status", "svc", "--json", "--state-dir", str(tmp_path)).stdout) == doc


def test_check_good_and_bad(tmp_path: Path) -> None:
    conf = tmp_path / "svc.conf"
    conf.write_text(GOOD)
    ok = run("check", "refdaemon", "--options", "refdaemon:register_opts", "--", "--config-file", str(conf))
    assert ok.returncode == 0 and "configuration OK" in ok.stdout
    conf.write_text(GOOD + "port = 0\n[DEFAULT]\nop_seconds = later\n")
    bad = run("check", "refdaemon", "--options", "refdaemon:register_opts", "--", "--config-file", str(conf))
    assert bad.returncode == 1
    assert "2 problem(s)" in bad.stderr
    assert "[backend1] port" in bad.stderr and "[DEFAULT] op_seconds" in bad.stderr
    conf.write_text("[backend1\n")
    assert (
        "syntax error"
        in run("check", "refdaemon", "--options", "refdaemon:register_opts", "--", "--config-file", str(conf)).stderr
    )
    missing = run(
        "check", "refdaemon", "--options", "refdaemon:register_opts", "--", "--config-file", str(tmp_path / "nope.conf")
    )
    assert missing.returncode == 1 and "file not found" in missing.stderr


def test_check_unknown_service_says_how() -> None:
    result = run("check", "no-such-service", "--", "--config-file", "/dev/null")
    assert result.returncode != 0 and "--options MODULE:FUNC" in result.stderr


def test_a_zombie_is_not_running(tmp_path: Path) -> None:
    """A process that exited but was not reaped still answers kill(0): LSB 7, not a wait."""
    import time

    child = subprocess.Popen(["/bin/true"])  # held, never waited for: a zombie once it exits
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never became a zombie"
            time.sleep(0.01)
        result = run("signal", "svc", "--pid", str(child.pid), "--wait", "--timeout", "5", "--state-dir", str(tmp_path))
        assert result.returncode == 7, (result.stdout, result.stderr)
        assert "not running" in result.stderr
    finally:
        child.wait()


def test_the_restart_only_table_in_the_docs_names_every_option_with_a_reason() -> None:
    """The devref lists what needs a restart; options.py says why at run time: the same list."""
    import re

    from cinder_reload.cinder.options import _COMMON_RESTART_ONLY, _PER_SERVICE_RESTART_ONLY, RESTART_REASONS

    doc = (Path(__file__).resolve().parents[2] / "doc" / "source" / "devref" / "reload-cycle.rst").read_text()
    section = doc.split("What still needs a restart, and why\n---", 1)[1]
    table = re.split(r"\n[^\n]+\n-{3,}\n", section, maxsplit=1)[0]  # up to the next section
    every = set(_COMMON_RESTART_ONLY) | {key for keys in _PER_SERVICE_RESTART_ONLY.values() for key in keys}
    missing = {key for key in every if f"[{key[0]}] {key[1]}``" not in table and f"``{key[1]}``" not in table}
    assert not missing, missing
    assert every <= set(RESTART_REASONS), every - set(RESTART_REASONS)
