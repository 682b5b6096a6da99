"""Main process + workers: delegated groups, the fan-out, the direct-socket notifier.

The workers here are real engines running their loop in a thread of this
process, reached by real SIGHUPs to this pid; the main-process side is a real
ReloadEngine whose ``workers`` is a SignalledWorkers.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from helpers import NotifyListener
from oslo_config import cfg

from cinder_reload import GroupChange, ReloadEngine, SystemdNotifier
from cinder_reload.apply import Overrides
from cinder_reload.diff import ConfigDiff
from cinder_reload.drain import DrainGates
from cinder_reload.reinit import ReinitRegistry
from cinder_reload.workers import SignalledWorkers, WorkerPlan, WorkerResult, worker_service_name

OPTS = [cfg.StrOpt("label", default="x")]


def make_conf(path: Path) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.BoolOpt("debug", default=False, mutable=True))
    for group in ("b1", "b2"):
        conf.register_opts(OPTS, group=group)
    conf(["--config-file", str(path)], project="t", prog="t", default_config_files=[], default_config_dirs=[])
    return conf


CONFIG = "[DEFAULT]\ndebug = false\n[b1]\nlabel = one\n[b2]\nlabel = two\n"


def test_socket_backend_sends_to_the_address_it_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifyListener(str(tmp_path / "n.sock"))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    try:
        notifier = SystemdNotifier("socket", environ={"NOTIFY_SOCKET": listener.address})
        assert notifier.ready("up") is True
        listener.wait_for(lambda m: m.get("READY") == "1" and m.get("STATUS") == "up")
        assert "NOTIFY_SOCKET" not in os.environ
    finally:
        listener.close()


class OneWorker:
    """A worker engine for group ``group`` in a thread, as a forked child would run it."""

    def __init__(self, conf: cfg.ConfigOpts, state_dir: Path, group: str, fail: bool = False) -> None:
        registry = ReinitRegistry()
        self.rebuilt: list[str] = []

        def rebuild(change: GroupChange) -> None:
            if fail:
                raise RuntimeError(f"{group} refuses")
            self.rebuilt.append(getattr(conf, group).label)

        registry.register(group, rebuild)
        self.engine = ReloadEngine(
            worker_service_name("svc", group),
            conf,
            reinitializers=registry,
            gates=DrainGates(),
            notifier=SystemdNotifier(environ={}),
            state_dir=state_dir,
            ignored_groups={"b1", "b2"} - {group},
        )


def test_main_process_validates_then_collects_every_worker(tmp_path: Path) -> None:
    config = tmp_path / "t.conf"
    config.write_text(CONFIG)
    state_dir = tmp_path / "state"
    # One worker engine owns SIGHUP for this pid; the "main" engine below is
    # driven with run_cycle() directly, as the main process's loop would.
    worker_conf = make_conf(config)
    worker = OneWorker(worker_conf, state_dir, "b1")
    main_conf = make_conf(config)
    workers = SignalledWorkers("svc", lambda: {"b1": os.getpid()}, state_dir, groups={"b1", "b2"})
    main = ReloadEngine("svc", main_conf, notifier=SystemdNotifier(environ={}), state_dir=state_dir, workers=workers)
    with worker.engine.signals():
        thread = worker.engine.start()
        worker.engine.ready()
        main.ready()
        assert workers.wait_ready(timeout=5)

        config.write_text(CONFIG.replace("one", "uno").replace("debug = false", "debug = true"))
        report = main.run_cycle()
        assert report["result"] == "ok", report
        assert report["reinitialized"] == ["b1"]
        assert [w["worker"] for w in report["workers"]] == ["b1"]
        assert worker.rebuilt == ["uno"]
        assert main_conf.debug is True and worker_conf.debug is True
        # The main process did not re-initialise b1 itself, but it now reports
        # the value in effect, so the next cycle finds nothing changed.
        assert main_conf.b1.label == "uno"
        report = main.run_cycle()
        assert report["result"] == "ok" and report["changed"] == [] and report["reinitialized"] == []

        # A broken file: the main process fails, the worker is never signalled.
        generation = worker.engine.generation
        config.write_text("[DEFAULT\n")
        report = main.run_cycle()
        assert report["result"] == "failed" and "syntax error" in report["message"]
        assert report["workers"] == [] and worker.engine.generation == generation

        worker.engine.stop()
        thread.join(5)


def test_a_worker_that_fails_or_is_gone_fails_the_cycle(tmp_path: Path) -> None:
    config = tmp_path / "t.conf"
    config.write_text(CONFIG)
    state_dir = tmp_path / "state"
    worker = OneWorker(make_conf(config), state_dir, "b2", fail=True)
    main_conf = make_conf(config)
    gone = 2**22 + 12345  # above pid_max's default: never a live process
    pids = {"b2": os.getpid(), "b1": gone}
    workers = SignalledWorkers("svc", lambda: pids, state_dir, groups={"b1", "b2"})
    main = ReloadEngine("svc", main_conf, notifier=SystemdNotifier(environ={}), state_dir=state_dir, workers=workers)
    with worker.engine.signals():
        thread = worker.engine.start()
        worker.engine.ready()
        main.ready()
        config.write_text(CONFIG.replace("two", "dos"))
        report = main.run_cycle()
        worker.engine.stop()
        thread.join(5)
    assert report["result"] == "failed"
    by_name = {w["worker"]: w for w in report["workers"]}
    assert by_name["b1"]["result"] == "failed" and "not ready" in by_name["b1"]["message"]
    assert by_name["b2"]["result"] == "failed" and "b2 refuses" in by_name["b2"]["message"]
    assert "b2" in report["failed_groups"] and report["reinitialized"] == []
    assert "2 of 2 workers failed" in report["message"]


def test_worker_timeout_is_reported_not_waited_for(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    # A live process (this one) with a ready state file but no engine to answer.
    from cinder_reload.state import write_state

    doc = {"pid": os.getpid(), "generation": 0, "phase": "idle", "in_progress": None}
    write_state(state_dir / "svc.b1.reload.json", doc)
    previous = signal.signal(signal.SIGHUP, lambda *a: None)
    try:
        plan = WorkerPlan(1, ConfigDiff(), (), Overrides(cfg.ConfigOpts()), timeout=0.3, drain_timeout=1)
        results = SignalledWorkers("svc", lambda: {"b1": os.getpid()}, state_dir).reload(plan)
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert results == [
        WorkerResult(
            "b1",
            os.getpid(),
            False,
            f"worker b1 (pid {os.getpid()}) did not finish its reload within 0.3s (phase: idle)",
        )
    ]
