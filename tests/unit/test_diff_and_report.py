"""Pure functions: diff classification, masking, STATUS= and the report."""

from __future__ import annotations

import json

import pytest

from cinder_reload.cycle import CycleResult
from cinder_reload.diff import MASK, ChangeKind, OptionValue, diff_values, mask_text
from cinder_reload.report import build_report, status_line

OLD = {
    ("DEFAULT", "debug"): OptionValue(False, mutable=True),
    ("DEFAULT", "transport_url"): OptionValue("rabbit://a", secret=True),
    ("DEFAULT", "host"): OptionValue("h1"),
    ("lvm", "volume_group"): OptionValue("vg1"),
    ("lvm", "san_password"): OptionValue("pw1", secret=True),
    ("nfs", "nfs_shares_config"): OptionValue("/etc/a"),
}


def new(**changes: object) -> dict:
    out = dict(OLD)
    for label, value in changes.items():
        group, name = label.split("__")
        out[(group, name)] = OptionValue(value, OLD[(group, name)].mutable, OLD[(group, name)].secret)
    return out


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"DEFAULT__debug": True}, [("DEFAULT.debug", ChangeKind.LIVE)]),
        ({"lvm__volume_group": "vg2"}, [("lvm.volume_group", ChangeKind.REINIT)]),
        ({"nfs__nfs_shares_config": "/etc/b"}, [("nfs.nfs_shares_config", ChangeKind.RESTART)]),
        ({"DEFAULT__host": "h2"}, [("DEFAULT.host", ChangeKind.RESTART)]),
        ({"DEFAULT__transport_url": "rabbit://b"}, [("DEFAULT.transport_url", ChangeKind.RESTART)]),
        (
            {"lvm__volume_group": "vg2", "DEFAULT__debug": True},
            [("DEFAULT.debug", ChangeKind.LIVE), ("lvm.volume_group", ChangeKind.REINIT)],
        ),
    ],
)
def test_classification(changes: dict, expected: list) -> None:
    diff = diff_values(OLD, new(**changes), reinit_groups={"lvm"}, restart_only={("DEFAULT", "transport_url")})
    assert [(c.label, c.kind) for c in diff.changes] == expected


def test_restart_only_beats_mutable_and_reinit() -> None:
    diff = diff_values(
        OLD,
        new(DEFAULT__debug=True, lvm__volume_group="x"),
        reinit_groups={"lvm"},
        restart_only={("DEFAULT", "debug"), ("lvm", "volume_group")},
    )
    assert {c.kind for c in diff.changes} == {ChangeKind.RESTART}


def test_secrets_are_masked_everywhere() -> None:
    diff = diff_values(
        OLD, new(lvm__san_password="pw2", DEFAULT__transport_url="rabbit://user:pw3@x"), reinit_groups={"lvm"}
    )
    rendered = json.dumps(diff.as_list()) + repr(diff) + diff.summary() + "".join(repr(c) for c in diff.changes)
    for secret in ("pw1", "pw2", "rabbit://a", "pw3"):
        assert secret not in rendered
    assert all(c.shown() == (MASK, MASK) for c in diff.changes)


def test_mask_text_replaces_longest_first() -> None:
    assert mask_text("pw=abc123 and abc", ["abc", "abc123"]) == f"pw={MASK} and {MASK}"
    assert mask_text("ab", ["ab"]) == "ab", "too short to mask without mangling text"


def result_with(**kwargs: object) -> CycleResult:
    diff = diff_values(
        OLD, new(DEFAULT__debug=True, lvm__volume_group="vg2", DEFAULT__host="h2"), reinit_groups={"lvm"}
    )
    return CycleResult(diff=diff, **kwargs)


def test_status_line_ok() -> None:
    line = status_line(result_with(reinitialized=["lvm"]), 3)
    assert line == (
        "Reload #3 ok: 3 changed: 1 live, 1 reinit, 1 restart; re-initialised lvm; pending restart: DEFAULT.host"
    )


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"error": "invalid configuration: x"}, "invalid configuration: x"),
        ({"aborted": True}, "aborted because the service is stopping"),
        ({"failed_groups": {"lvm": "RuntimeError: boom"}}, "re-initialising [lvm] failed (RuntimeError: boom)"),
    ],
)
def test_status_line_failed(kwargs: dict, reason: str) -> None:
    line = status_line(result_with(**kwargs), 4)
    assert line.startswith("Reload failed: ") and reason in line
    assert "\n" not in line


def test_status_line_is_bounded() -> None:
    assert len(status_line(CycleResult(error="x" * 5000), 1)) == 400


def test_report_fields_and_applied_split() -> None:
    result = result_with(failed_groups={"lvm": "RuntimeError: boom"})
    doc = build_report(
        service="cinder-volume",
        pid=1,
        generation=2,
        result=result,
        started_at="t0",
        finished_at="t1",
        started_monotonic=1.0,
        duration=0.5,
    )
    for key in (
        "generation",
        "result",
        "message",
        "started_at",
        "finished_at",
        "changed",
        "reinitialized",
        "pending_restart",
    ):
        assert key in doc
    assert doc["result"] == "failed"
    assert [c["option"] for c in doc["changed"]] == ["debug"]
    assert [c["option"] for c in doc["not_applied"]] == ["volume_group"]
    assert [c["option"] for c in doc["pending_restart"]] == ["host"]
    json.dumps(doc)
