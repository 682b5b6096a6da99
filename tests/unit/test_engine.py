"""The engine in-process: real ConfigOpts, real files, a real notify socket."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import NotifyListener, wait_until
from oslo_config import cfg
from refdaemon import register_opts

from cinder_reload import GroupChange, Phase, ReloadEngine
from cinder_reload.phases import IllegalTransition, PhaseMachine
from cinder_reload.state import read_state, runtime_dir, state_path, write_state

GOOD = "[DEFAULT]\n[backend1]\nlabel = one\n[backend2]\nlabel = two\n"


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
        self.events.append((event_type, dict(payload)))


@pytest.fixture
def setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ReloadEngine, Path, NotifyListener, RecordingSink]]:
    listener = NotifyListener(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
    path = tmp_path / "svc.conf"
    path.write_text(GOOD)
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf(["--config-file", str(path)], default_config_files=[], default_config_dirs=[])
    sink = RecordingSink()
    engine = ReloadEngine("svc", conf, state_dir=tmp_path / "state", events=[sink], event_prefix="volume")
    yield engine, path, listener, sink
    listener.close()


def test_failed_reinit_restores_exact_previous_values(setup) -> None:
    engine, path, _, _ = setup
    built: dict[str, str] = {}

    def rebuild(change: GroupChange) -> None:
        label = getattr(engine.conf, change.group).label
        if label == "bad":
            raise RuntimeError("cannot")
        built[change.group] = label

    engine.reinitializers.register("backend1", rebuild)
    engine.reinitializers.register("backend2", rebuild)
    engine.ready()
    path.write_text(GOOD.replace("one", "uno"))
    assert engine.run_cycle()["result"] == "ok"
    assert engine.conf.backend1.label == "uno" and built == {"backend1": "uno"}

    path.write_text(GOOD.replace("one", "bad").replace("two", "deux"))
    report = engine.run_cycle()

    assert report["result"] == "failed"
    assert engine.conf.backend1.label == "uno", "rolled back to the previous override, not the file's first value"
    assert engine.conf.backend2.label == "deux"
    assert built == {"backend1": "uno", "backend2": "deux"}


def test_events_and_notify_for_each_cycle(setup) -> None:
    engine, path, listener, sink = setup
    engine.ready("Up")
    path.write_text("[DEFAULT\n")
    engine.run_cycle()
    path.write_text(GOOD)
    engine.run_cycle()
    assert [e for e, _ in sink.events] == [
        "volume.reload.start",
        "volume.reload.error",
        "volume.reload.start",
        "volume.reload.end",
    ]
    assert sink.events[1][1]["result"] == "failed" and sink.events[3][1]["generation"] == 2
    listener.wait_for(lambda m: m.get("STATUS", "").startswith("Reload #2 ok"))
    kinds = [next(k for k in ("READY", "RELOADING") if k in m) for m in listener.messages]
    assert kinds == ["READY", "RELOADING", "READY", "RELOADING", "READY"]


def test_failing_event_sink_does_not_fail_the_reload(setup, caplog: pytest.LogCaptureFixture) -> None:
    engine, path, _, _ = setup

    class Broken:
        def emit(self, event_type: str, payload: Mapping[str, Any]) -> None:
            raise ConnectionError("bus down")

    engine.events.append(Broken())
    engine.ready()
    assert engine.run_cycle()["result"] == "ok"
    assert "not delivered by Broken: bus down" in caplog.text


def test_reload_requested_before_ready_runs_after_ready(setup) -> None:
    engine, path, _, _ = setup
    engine.start()
    engine.request_reload()
    assert engine.phase is Phase.STARTING and engine.generation == 0
    engine.ready()
    wait_until(lambda: engine.generation == 1, 10, "the deferred cycle")
    engine.stop()
    engine.join(5)
    assert engine.phase is Phase.STOPPED


def test_run_cycle_refused_before_ready(setup) -> None:
    engine, _, listener, _ = setup
    with pytest.raises(RuntimeError, match="cannot reload while starting"):
        engine.run_cycle()
    assert engine.phase is Phase.STARTING and listener.messages == []


def test_loop_thread_stops_on_request(setup) -> None:
    engine, _, listener, _ = setup
    thread = engine.start()
    engine.ready()
    engine.stop()
    thread.join(5)
    assert not thread.is_alive()
    listener.wait_for(lambda m: m.get("STOPPING") == "1")


def test_phase_machine_rejects_illegal_transitions() -> None:
    machine = PhaseMachine()
    with pytest.raises(IllegalTransition):
        machine.advance(Phase.VALIDATING)  # not ready yet
    machine.advance(Phase.IDLE)
    machine.advance(Phase.VALIDATING)
    with pytest.raises(IllegalTransition):
        machine.advance(Phase.VALIDATING)


@pytest.mark.parametrize(
    ("env", "override", "expected"),
    [
        ({}, None, "/run/cinder"),
        ({"RUNTIME_DIRECTORY": "/run/cinder:/run/other"}, None, "/run/cinder"),
        ({"RUNTIME_DIRECTORY": "/run/x", "CINDER_RELOAD_STATE_DIR": "/tmp/s"}, None, "/tmp/s"),
        ({"RUNTIME_DIRECTORY": "/run/x"}, "/o", "/o"),
    ],
)
def test_runtime_dir(env: dict, override: str | None, expected: str) -> None:
    assert str(runtime_dir(env, override)) == expected


def test_state_file_written_atomically(tmp_path: Path) -> None:
    path = state_path("cinder-volume", tmp_path / "new")
    write_state(path, {"generation": 1})
    write_state(path, {"generation": 2})
    assert read_state(path) == {"generation": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["cinder-volume.reload.json"]
    with pytest.raises(ValueError):
        state_path("../etc/passwd", tmp_path)


def test_concurrent_operations_survive_many_cycles(setup) -> None:
    engine, path, _, _ = setup
    engine.reinitializers.register("backend1", lambda change: None)
    engine.ready()
    stop = threading.Event()
    counts = {"done": 0}

    def worker() -> None:
        while not stop.is_set():
            with engine.gates.scope("backend1").operation():
                counts["done"] += 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(20):
        path.write_text(GOOD.replace("one", f"v{i}"))
        assert engine.run_cycle()["result"] == "ok"
    stop.set()
    for t in threads:
        t.join(5)
    assert engine.conf.backend1.label == "v19" and counts["done"] > 0


def test_sighups_during_a_cycle_merge_into_exactly_one_follow_up(setup) -> None:
    """Coalescing is the engine's, not the kernel's: the handler runs for
    each of these (called directly, as a delivered signal would), at distinct
    moments of one long cycle; only one more cycle may follow."""
    engine, path, listener, _ = setup
    entered, release = threading.Event(), threading.Event()

    def rebuild(change: GroupChange) -> None:
        entered.set()
        assert release.wait(10)

    engine.reinitializers.register("backend1", rebuild)
    engine.start()
    engine.ready()
    path.write_text(GOOD.replace("one", "uno"))
    engine.request_reload()
    assert entered.wait(10)
    for _ in range(5):
        engine.inbox.handler(__import__("signal").SIGHUP)
        engine.inbox.wake()
    path.write_text(GOOD.replace("one", "eins"))
    release.set()
    wait_until(lambda: engine.generation == 2 and engine.phase is Phase.IDLE, 10, "the follow-up cycle")
    entered.clear()
    # Quiet now: a third cycle would have started at once.
    assert not entered.wait(0.5) and engine.generation == 2
    assert listener.count("RELOADING") == 2
    assert engine.conf.backend1.label == "eins"
    engine.stop()
    engine.join(5)


def test_the_loop_records_the_running_configuration_after_ready(setup) -> None:
    """`check --running`'s record follows each reload, written by the loop once READY=1 went out."""
    engine, path, listener, _ = setup
    record = engine.state_file.with_name("svc.running.json")
    engine.start()
    engine.ready()
    assert read_state(record)["generation"] == 0  # at start: at once, before READY=1
    path.write_text(GOOD.replace("one", "uno"))
    engine.request_reload()
    wait_until(lambda: engine.generation == 1, 10, "the cycle")
    # The cycle ended with READY=1; the record comes after it, not before.
    listener.wait_for(lambda m: m.get("READY") == "1" and "Reload #1" in m.get("STATUS", ""))
    written = wait_until(
        lambda: (read_state(record) or {}).get("generation") == 1 and read_state(record), 5, "the record"
    )
    assert written["sections"]["backend1"]["label"] == ["uno"]
    engine.stop()
    engine.join(5)


def test_check_running_waits_for_the_record_of_the_last_reload(tmp_path: Path, monkeypatch) -> None:
    """Right after a reload the record may still be the previous one: compare with the reloaded one."""
    from cinder_reload import cli

    state = tmp_path / "svc.reload.json"
    record = tmp_path / "svc.running.json"
    write_state(state, {"pid": 42, "generation": 2, "result": "ok"})
    write_state(record, {"pid": 42, "generation": 1, "sections": {"backend1": {"label": ["one"]}}})
    later = threading.Timer(0.3, write_state, (record, {"pid": 42, "generation": 2, "sections": {}}))
    later.start()
    try:
        assert cli._running_document(state, "svc")["generation"] == 2
    finally:
        later.cancel()

    # A record that never comes (a service that cannot write it): the last one, after the wait.
    write_state(state, {"pid": 42, "generation": 3, "result": "ok"})
    monkeypatch.setattr(cli, "RUNNING_RECORD_WAIT", 0.2)
    assert cli._running_document(state, "svc")["generation"] == 2
    # Another process's state file (the service restarted): nothing to wait for.
    write_state(state, {"pid": 43, "generation": 9, "result": "ok"})
    monkeypatch.setattr(cli, "RUNNING_RECORD_WAIT", 60.0)
    assert cli._running_document(state, "svc")["generation"] == 2
