"""The reference daemon as a real process, a real NOTIFY_SOCKET, real signals.

Each test asserts what an operator sees: the sd_notify stream a manager would
get, the exit status and message of `cinder-reload signal --wait`, the state
file, and whether the service still answers on its old or new config.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BASE_CONFIG, RefDaemon, wait_until

from cinder_reload.waiter import Outcome, signal_and_wait

pytestmark = pytest.mark.process


@pytest.fixture(params=["threads", "eventlet"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RefDaemon]:
    d = RefDaemon(tmp_path, BASE_CONFIG, eventlet=request.param == "eventlet")
    d.wait_ready()
    yield d
    d.stop()


def assert_still_serving_old(d: RefDaemon, pid: int) -> None:
    assert d.proc.poll() is None, f"daemon died:\n{d.output()}"
    assert d.pid == pid
    assert d.ask("backend1").startswith("backend1 label=one generation=0")
    assert d.ask("backend2").startswith("backend2 label=two generation=0")


def test_notify_sequence_and_change_takes_effect(daemon: RefDaemon) -> None:
    assert daemon.ask("backend1") == "backend1 label=one generation=0 greeting=hello"
    daemon.edit(BASE_CONFIG.replace("label = one", "label = uno"))

    result = daemon.reload()

    assert result.returncode == 0, result.stderr
    assert "Reload #1 ok" in result.stdout and "re-initialised backend1" in result.stdout
    assert daemon.ask("backend1") == "backend1 label=uno generation=1 greeting=hello"
    assert daemon.ask("backend2") == "backend2 label=two generation=0 greeting=hello", "unchanged backend rebuilt"
    msgs = daemon.notify.messages
    ready = daemon.notify.wait_for(lambda m: m.get("READY") == "1")
    reloading = daemon.notify.wait_for(lambda m: m.get("RELOADING") == "1", start=ready + 1)
    assert int(msgs[reloading]["MONOTONIC_USEC"]) > 0
    # The timestamp is CLOCK_MONOTONIC, the clock systemd compares it with.
    assert abs(int(msgs[reloading]["MONOTONIC_USEC"]) / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 60
    after = daemon.notify.wait_for(lambda m: m.get("READY") == "1", start=reloading + 1)
    assert msgs[after]["STATUS"].startswith("Reload #1 ok")
    state = daemon.state()
    assert state["generation"] == 1 and state["result"] == "ok"
    assert state["reinitialized"] == ["backend1"]
    assert [(c["group"], c["option"], c["old"], c["new"]) for c in state["changed"]] == [
        ("backend1", "label", "one", "uno")
    ]


def test_broken_config_keeps_serving_and_reload_fails_with_reason(daemon: RefDaemon) -> None:
    pid = daemon.pid
    daemon.edit(BASE_CONFIG.replace("label = one", "label = uno") + "[backend2\n")

    result = daemon.reload()

    assert result.returncode == 1
    assert "Reload failed" in result.stderr and "syntax error" in result.stderr
    assert "Invalid section" in result.stderr and "refdaemon.conf" in result.stderr
    assert_still_serving_old(daemon, pid)
    last = daemon.notify.settled()
    assert last["READY"] == "1" and last["STATUS"].startswith("Reload failed: ")
    assert daemon.state()["result"] == "failed"
    assert "ERROR" in daemon.output() and "still serving on the previous configuration" in daemon.output()


BAD_INPUTS = {
    "syntax error": (lambda cfg, p: p.write_text(cfg + "\nthis is not an assignment\n"), "syntax error"),
    "missing file": (lambda cfg, p: p.unlink(), "file not found"),
    "directory instead of file": (lambda cfg, p: (p.unlink(), p.mkdir()), "is a directory"),
    "empty file": (lambda cfg, p: p.write_text(""), "file is empty"),
    "comments only": (lambda cfg, p: p.write_text("# truncated\n\n"), "file is empty"),
    "bad value, mutable option": (
        lambda cfg, p: p.write_text(cfg.replace("op_seconds = 0", "op_seconds = soon")),
        "[DEFAULT] op_seconds",
    ),
    "bad value, immutable option": (
        lambda cfg, p: p.write_text(cfg.replace("[backend1]\n", "[backend1]\nport = 99999\n")),
        "[backend1] port",
    ),
    "removed section": (
        lambda cfg, p: p.write_text(cfg.split("[backend2]")[0]),
        "[backend2]: section is in use by this service but missing",
    ),
    "not UTF-8": (lambda cfg, p: p.write_bytes(cfg.encode() + b"\n# caf\xe9\n"), "not valid UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_and_service_keeps_serving(plain: RefDaemon, case: str) -> None:
    break_it, expected = BAD_INPUTS[case]
    pid = plain.pid
    # A good change made alongside the breakage must not be applied either.
    good = BASE_CONFIG.replace("label = two", "label = deux")
    break_it(good, plain.config_file)

    result = plain.reload()

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert_still_serving_old(plain, pid)
    state = plain.state()
    assert state["result"] == "failed" and state["changed"] == [] and state["reinitialized"] == []
    assert expected in state["message"]


def test_unreadable_file_is_refused(tmp_path: Path) -> None:
    # root reads any file: the daemon runs without the capabilities that let
    # it, as a service with CapabilityBoundingSet= or User= would.
    no_dac = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    with RefDaemon(tmp_path, BASE_CONFIG, prefix=no_dac) as d:
        d.config_file.chmod(0o000)

        result = d.reload()

        assert result.returncode == 1
        assert "permission denied" in result.stderr
        assert_still_serving_old(d, d.pid)


def test_reinit_failure_rolls_back_that_group_only(plain: RefDaemon) -> None:
    plain.edit(
        BASE_CONFIG.replace("label = one", "label = uno\nfail_reinit = true").replace("label = two", "label = deux")
    )

    result = plain.reload()

    assert result.returncode == 1
    assert "re-initialising [backend1] failed" in result.stderr
    assert "driver refused to initialise" in result.stderr
    assert plain.ask("backend1").startswith("backend1 label=one generation=0"), "failed group must keep old objects"
    assert plain.ask("backend2").startswith("backend2 label=deux generation=1"), "other group keeps its change"
    state = plain.state()
    assert state["reinitialized"] == ["backend2"]
    assert set(state["failed_groups"]) == {"backend1"}
    assert {(c["group"], c["option"]) for c in state["not_applied"]} == {
        ("backend1", "label"),
        ("backend1", "fail_reinit"),
    }

    # Fixing the file makes the next reload apply backend1's pending change:
    # the rolled-back values were really restored, so the diff sees it again.
    plain.edit(BASE_CONFIG.replace("label = one", "label = uno").replace("label = two", "label = deux"))
    result = plain.reload()
    assert result.returncode == 0, result.stderr
    assert plain.ask("backend1").startswith("backend1 label=uno generation=1")


def test_restart_only_option_is_reported_pending_and_not_applied(plain: RefDaemon) -> None:
    plain.edit(BASE_CONFIG.replace("greeting = hello", "greeting = bonjour"))

    result = plain.reload()

    assert result.returncode == 0, result.stderr
    assert "pending restart: DEFAULT.greeting" in result.stdout
    assert plain.ask("backend1").endswith("greeting=hello"), "a restart-only option must keep its running value"
    state = plain.state()
    assert [(c["option"], c["old"], c["new"]) for c in state["pending_restart"]] == [("greeting", "hello", "bonjour")]
    assert "pending restart: DEFAULT.greeting" in plain.notify.settled()["STATUS"]


def test_mutable_option_applied_live_with_oslo_hooks(plain: RefDaemon) -> None:
    plain.edit(BASE_CONFIG.replace("[DEFAULT]\n", "[DEFAULT]\ndebug = true\n"))

    result = plain.reload()

    assert result.returncode == 0, result.stderr
    state = plain.state()
    assert [(c["option"], c["applied"]) for c in state["changed"]] == [("debug", "live")]
    assert state["reinitialized"] == []
    # The mutate hook switched the root logger to DEBUG: the engine's DEBUG
    # event line appears only now.
    wait_until(lambda: "DEBUG cinder_reload.events" in plain.output(), 5, "a DEBUG line after debug = true")


def test_secrets_never_shown(plain: RefDaemon) -> None:
    plain.edit(BASE_CONFIG.replace("s3cr3t-one", "n3w-s3cr3t-one"))

    result = plain.reload()

    assert result.returncode == 0, result.stderr
    state_text = (plain.state_dir / "refdaemon.reload.json").read_text()
    assert [(c["option"], c["old"], c["new"]) for c in plain.state()["changed"]] == [("password", "****", "****")]
    # A mistyped secret line (no '=') must not be quoted in the parse error.
    plain.edit(BASE_CONFIG.replace("password = s3cr3t-two", "password n3w-s3cr3t-two"))
    broken = plain.reload()
    assert broken.returncode == 1 and "line not shown" in broken.stderr
    everything = "".join(
        [
            result.stdout,
            result.stderr,
            broken.stdout,
            broken.stderr,
            state_text,
            (plain.state_dir / "refdaemon.reload.json").read_text(),
            plain.output(),
            *plain.notify.raw,
        ]
    )
    for secret in ("s3cr3t-one", "n3w-s3cr3t-one", "s3cr3t-two", "n3w-s3cr3t-two"):
        assert secret not in everything


def test_sighup_storm_merges_into_at_most_two_cycles(daemon: RefDaemon) -> None:
    daemon.edit(BASE_CONFIG.replace("reinit_seconds = 0", "reinit_seconds = 0.2").replace("label = one", "label = x"))
    for _ in range(200):
        os.kill(daemon.pid, signal.SIGHUP)
    wait_until(lambda: daemon.notify.count("RELOADING") >= 1, 10, "the first cycle")
    # Wait for quiet: the last READY after the last RELOADING, then no more.
    wait_until(lambda: daemon.state().get("in_progress") is None and daemon.state()["generation"] >= 1, 10, "idle")
    time.sleep(0.5)  # give a (wrong) third cycle the chance to show up
    assert daemon.proc.poll() is None
    assert 1 <= daemon.notify.count("RELOADING") <= 2
    assert daemon.state()["generation"] == daemon.notify.count("RELOADING")
    assert daemon.ask("backend1").startswith("backend1 label=x")


def test_sighup_during_cycle_runs_exactly_one_follow_up(plain: RefDaemon) -> None:
    plain.edit(BASE_CONFIG.replace("reinit_seconds = 0", "reinit_seconds = 1").replace("label = one", "label = a"))
    os.kill(plain.pid, signal.SIGHUP)
    wait_until(lambda: (plain.state().get("in_progress") or {}).get("phase") == "reinitializing", 10, "cycle 1 busy")
    plain.edit(BASE_CONFIG.replace("reinit_seconds = 0", "reinit_seconds = 1").replace("label = one", "label = b"))
    for _ in range(5):
        os.kill(plain.pid, signal.SIGHUP)

    result = plain.reload()  # its own SIGHUP also merges into the same follow-up

    assert result.returncode == 0, result.stderr
    assert plain.state()["generation"] == 2
    assert plain.ask("backend1").startswith("backend1 label=b generation=2")


def test_sighup_before_ready_is_not_lost(tmp_path: Path) -> None:
    d = RefDaemon(tmp_path, BASE_CONFIG, startup_seconds=1.5)
    try:
        wait_until(lambda: d.pidfile.exists() and d.proc.poll() is None, 10, "the pidfile")
        d.edit(BASE_CONFIG.replace("label = one", "label = early"))
        os.kill(d.pid, signal.SIGHUP)
        assert d.notify.count("READY") == 0, "the signal was meant to arrive before READY=1"
        d.wait_ready()
        wait_until(lambda: d.state()["generation"] == 1, 10, "the deferred reload")
        assert d.ask("backend1").startswith("backend1 label=early")
    finally:
        d.stop()


def test_drain_waits_for_in_flight_and_new_requests_wait_not_fail(tmp_path: Path) -> None:
    config = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 1.0")
    with RefDaemon(tmp_path, config) as d:
        replies: list[str] = []
        first = d.hold("backend1", replies)
        d.edit(config.replace("label = one", "label = uno"))
        os.kill(d.pid, signal.SIGHUP)
        wait_until(lambda: (d.state().get("in_progress") or {}).get("phase") == "draining", 5, "draining")
        second = threading.Thread(target=lambda: replies.append(d.ask("backend1")), daemon=True)
        second.start()  # arrives while the gate is closed: it waits, it does not fail
        other = d.hold("backend2", replies)  # another scope: admitted at once, never paused
        for t in (first, second, other):
            t.join(15)
        assert d.state()["result"] == "ok" and d.state()["generation"] == 1
        # Only the changed backend's gate closed: the request that arrived
        # during the drain waited there; backend2's never did.
        waits = d.state()["waits"]
        assert waits["backend1"]["waited"] >= 1, waits
        assert waits.get("backend2", {}).get("waited", 0) == 0 and "backend2" in waits, waits
        assert "backend1 label=one generation=0 greeting=hello" in replies, "in-flight finished on old object"
        assert "backend1 label=uno generation=1 greeting=hello" in replies, "waiting request served by new object"
        assert "backend2 label=two generation=0 greeting=hello" in replies


def test_drain_timeout_aborts_cycle_and_reports(tmp_path: Path) -> None:
    config = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 3").replace(
        "drain_timeout = 10", "drain_timeout = 0.5"
    )
    with RefDaemon(tmp_path, config) as d:
        replies: list[str] = []
        held = d.hold("backend1", replies)
        d.edit(config.replace("label = one", "label = uno"))

        result = d.reload()

        assert result.returncode == 1
        assert (
            "could not drain 'backend1' within 0.5s: 1 operation(s) still in flight; nothing was changed"
            in result.stderr
        )
        held.join(10)
        assert replies == ["backend1 label=one generation=0 greeting=hello"]
        assert d.ask("backend1").startswith("backend1 label=one generation=0"), "gate reopened, old config kept"


def test_slow_drain_extends_systemd_timeout(tmp_path: Path) -> None:
    config = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 1.5\ndrain_report_seconds = 0.3")
    with RefDaemon(tmp_path, config) as d:
        replies: list[str] = []
        held = d.hold("backend1", replies)
        d.edit(config.replace("label = one", "label = uno"))
        result = d.reload()
        held.join(10)
        assert result.returncode == 0, result.stderr
        extend = d.notify.wait_for(lambda m: "EXTEND_TIMEOUT_USEC" in m, 1)
        usec = int(d.notify.messages[extend]["EXTEND_TIMEOUT_USEC"])
        # systemd fails the reload when an extension runs out before the next
        # one arrives (systemd.service(5)): it must cover at least two report
        # intervals (0.3 s here) and never more than the drain can still take
        # (10 s) plus the engine's margin.
        assert 2 * 0.3 * 1_000_000 <= usec <= (10 + 5) * 1_000_000, usec
        assert any("draining for" in m.get("STATUS", "") for m in d.notify.messages)


def test_sigterm_mid_cycle_stops_cleanly(tmp_path: Path) -> None:
    config = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 5")
    d = RefDaemon(tmp_path, config)
    d.wait_ready()
    replies: list[str] = []
    d.hold("backend1", replies)
    d.edit(config.replace("label = one", "label = uno"))
    os.kill(d.pid, signal.SIGHUP)
    wait_until(lambda: (d.state().get("in_progress") or {}).get("phase") == "draining", 5, "draining")
    started = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(5) == 0
    assert time.monotonic() - started < 2, "SIGTERM must not wait for the drain"
    stop = d.notify.wait_for(lambda m: m.get("STOPPING") == "1")
    assert stop == len(d.notify.messages) - 1
    state = d.state()
    assert state["result"] == "failed" and "aborted because the service is stopping" in state["message"]
    d.stop()


def test_signal_wait_wakes_on_the_finished_document_not_on_its_poll(tmp_path: Path) -> None:
    """`signal --wait` learns the result from the directory watch, and leaves SIGIO as it found it.

    The safety poll (600 s) is longer than the whole wait (30 s) and the
    cycle outlasts the waiter's set-up (a held request on the changed backend
    drains for 1 s): without the watch on the state directory the result
    would be read at the wait's end, not when the cycle wrote it.
    """
    config = BASE_CONFIG.replace("op_seconds = 0", "op_seconds = 1.0")
    with RefDaemon(tmp_path, config) as d:
        replies: list[str] = []
        held = d.hold("backend1", replies)
        d.edit(config.replace("label = one", "label = uno"))
        sigio = signal.getsignal(signal.SIGIO)

        began = time.monotonic()
        result = signal_and_wait(d.pid, str(d.state_dir / "refdaemon.reload.json"), timeout=30, poll=600)
        waited = time.monotonic() - began

        assert result.outcome == Outcome.OK, result.message
        assert waited < 15, f"the result waited {waited:.1f}s for the end of the wait, not for the cycle (~1 s)"
        assert result.message.startswith("Reload #1 ok"), result.message
        assert signal.getsignal(signal.SIGIO) == sigio
        held.join(10)
        assert replies == ["backend1 label=one generation=0 greeting=hello"]
        assert d.ask("backend1") == "backend1 label=uno generation=1 greeting=hello"
