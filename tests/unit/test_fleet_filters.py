"""The cinder_reload Ansible role's decisions (its filter plugin): tables in, answers out."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "ansible/roles/cinder_reload/filter_plugins/cinder_reload_fleet.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cinder_reload_fleet", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fleet = _load()


@pytest.mark.parametrize(
    ("text", "cluster"),
    [
        ("[DEFAULT]\ncluster = fleet\n", "fleet"),
        ("[DEFAULT]\ncluster=a\ncluster = b\n", "b"),  # a later line wins, as in oslo.config
        ("[DEFAULT]\n# cluster = no\n", ""),
        ("[rbd]\ncluster = not-this\n[DEFAULT]\nhost = x\n", ""),
        ("[DEFAULT]\nhost = x\n[rbd]\ncluster = other\n", ""),
        ("", ""),
    ],
)
def test_cluster_of(text: str, cluster: str) -> None:
    assert fleet.cluster_of(text) == cluster


HOSTS = ["h1", "h2", "h3", "h4", "h5"]


@pytest.mark.parametrize(
    ("serial", "batches"),
    [
        (1, [["h1"], ["h2"], ["h3"], ["h4"], ["h5"]]),
        ("2", [["h1", "h2"], ["h3", "h4"], ["h5"]]),
        (0, [HOSTS]),
        ("40%", [["h1", "h2"], ["h3", "h4"], ["h5"]]),
        ("10%", [["h1"], ["h2"], ["h3"], ["h4"], ["h5"]]),  # rounds down, at least 1
        ([1, 3], [["h1"], ["h2", "h3", "h4"], ["h5"]]),  # the last size repeats
        (10, [HOSTS]),
    ],
)
def test_batches_as_ansible_serial_makes_them(serial: Any, batches: list[list[str]]) -> None:
    assert fleet.batches(HOSTS, serial) == batches


def test_two_members_of_a_cluster_in_one_batch_is_a_conflict() -> None:
    clusters = {"h1": "a", "h2": "a", "h3": "b", "h4": "", "h5": "b"}
    assert fleet.cluster_conflicts([["h1"], ["h2", "h3"], ["h4", "h5"]], clusters) == []
    problems = fleet.cluster_conflicts([["h1", "h2", "h3"], ["h4", "h5"]], clusters)
    assert len(problems) == 1 and problems[0].startswith("batch 1 would reload h1, h2 together")
    # Hosts in no cluster never conflict.
    assert fleet.cluster_conflicts([["h4", "x"]], {"h4": "", "x": ""}) == []


def test_candidate_args_replace_only_the_installed_file() -> None:
    args = ["--config-file", "/etc/cinder/cinder.conf", "--config-dir", "/etc/cinder/cinder.conf.d"]
    assert fleet.candidate_args(args, "/etc/cinder/cinder.conf", "/x.new") == [
        "--config-file",
        "/x.new",
        "--config-dir",
        "/etc/cinder/cinder.conf.d",
    ]


OK_STATE = {
    "generation": 4,
    "result": "ok",
    "message": "Reload #4 ok",
    "changed": [{"group": "rbd", "option": "rbd_store_chunk_size", "old": 4, "new": 8, "applied": "reinit"}],
    "reinitialized": ["rbd"],
    "pending_restart": [
        {"group": "DEFAULT", "option": "cluster", "old": "a", "new": "b", "applied": "restart", "reason": "why"}
    ],
    "workers": [{"worker": "rbd", "result": "ok", "old_pid": 10, "new_pid": 11, "paused_s": 0.3, "start_s": 0.2}],
    "duration_s": 0.4,
}


def test_a_good_reload_reports_what_it_did() -> None:
    report = fleet.host_report(
        "h1", {"generation": 3}, OK_STATE, "100", "MainPID=100\nActiveState=active\n", 0, "", 0.5
    )
    assert report["ok"] and report["problems"] == []
    assert report["changed"] == ["[rbd] rbd_store_chunk_size: 4 -> 8"]
    assert report["reinitialized"] == ["rbd"]
    assert report["pending_restart"] == ["[DEFAULT] cluster: 'a' -> 'b' (why)"]
    assert report["workers"] == [
        {"worker": "rbd", "result": "ok", "replaced": "10 -> 11", "rpc_paused_s": 0.3, "new_worker_up_s": 0.2}
    ]
    assert report["main_pid"] == {"before": "100", "after": "100"}


@pytest.mark.parametrize(
    ("before", "after", "unit", "rc", "problem"),
    [
        ({"generation": 4}, OK_STATE, "MainPID=100\nActiveState=active", 0, "no new reload cycle"),
        (
            {"generation": 3},
            {**OK_STATE, "result": "failed", "message": "Reload failed: rbd"},
            "MainPID=100\nActiveState=active",
            1,
            "Reload failed: rbd",
        ),
        ({"generation": 3}, OK_STATE, "MainPID=200\nActiveState=active", 0, "the main process changed (100 -> 200)"),
        ({"generation": 3}, OK_STATE, "MainPID=0\nActiveState=failed", 0, "the unit is failed"),
        ({"generation": 3}, OK_STATE, "MainPID=100\nActiveState=active", 1, "systemctl reload exited 1: boom"),
        ({"generation": 3}, {}, "MainPID=100\nActiveState=active", 1, "no new reload cycle"),
    ],
)
def test_a_reload_that_did_not_happen_is_a_failure(
    before: dict[str, Any], after: dict[str, Any], unit: str, rc: int, problem: str
) -> None:
    report = fleet.host_report("h2", before, after, "100", unit, rc, "boom", None)
    assert not report["ok"]
    assert any(problem in p for p in report["problems"]), report["problems"]


def test_seconds_of_a_command_delta() -> None:
    assert fleet._seconds("0:00:01.250000") == 1.25
    assert fleet._seconds("1:02:03.5") == 3723.5
    assert fleet._seconds("") is None
