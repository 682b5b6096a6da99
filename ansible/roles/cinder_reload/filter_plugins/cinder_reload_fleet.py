"""Pure functions behind the cinder_reload role: no I/O, no Ansible imports.

The role's tasks do the I/O (stat, copy, ``cinder-reload check``,
``systemctl reload``, ``cinder-reload status --json``); what to make of the
results is decided here, where a unit test can feed it tables
(tests/unit/test_fleet_filters.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FilterModule",
    "batches",
    "candidate_args",
    "cluster_conflicts",
    "cluster_of",
    "host_report",
]

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*[=:]\s*(.*?)\s*$")


def cluster_of(text: str) -> str:
    """``[DEFAULT] cluster`` of a cinder.conf text, '' when unset.

    A later line wins, as in oslo.config; comments and other sections are
    ignored.  Only the members' shared queue matters here, so nothing else is
    parsed.
    """
    section = ""
    value = ""
    for line in text.splitlines():
        if line.lstrip().startswith(("#", ";")):
            continue
        header = _SECTION.match(line)
        if header:
            section = header.group(1).strip()
            continue
        if section == "DEFAULT":
            key = _KEY.match(line)
            if key and key.group(1) == "cluster":
                value = key.group(2)
    return value


def batches(hosts: Sequence[str], serial: Any) -> list[list[str]]:
    """The batches Ansible's ``serial:`` makes of ``hosts`` (in play order).

    ``serial`` as a play accepts it: a number, a percentage (``"30%"``) or a
    list of those, the last one repeating (ansible/playbook: ``_get_serialized_batches``).
    0 or empty means every host in one batch.
    """
    hosts = list(hosts)
    total = len(hosts)
    sizes = list(serial) if isinstance(serial, list | tuple) else [serial]
    if not sizes or sizes == [0] or sizes == [None]:
        return [hosts] if hosts else []

    def size(item: Any) -> int:
        text = str(item).strip()
        # As ansible's pct_to_int: a percentage rounds down, but is at least 1.
        count = int(float(text[:-1]) / 100.0 * total) or 1 if text.endswith("%") else int(text)
        return count if count > 0 else total

    result: list[list[str]] = []
    index = 0
    while index < total:
        step = size(sizes[min(len(result), len(sizes) - 1)])
        result.append(hosts[index : index + step])
        index += step
    return result


def cluster_conflicts(plan: Sequence[Sequence[str]], clusters: Mapping[str, str]) -> list[str]:
    """One sentence per batch that would reload two members of one Active/Active cluster at once."""
    problems = []
    for number, batch in enumerate(plan, start=1):
        members: dict[str, list[str]] = {}
        for host in batch:
            cluster = clusters.get(host) or ""
            if cluster:
                members.setdefault(cluster, []).append(host)
        for cluster, hosts in sorted(members.items()):
            if len(hosts) > 1:
                problems.append(
                    f"batch {number} would reload {', '.join(hosts)} together, all members of cluster "
                    f"{cluster!r}: lower serial or order the inventory so that batches hold one member each"
                )
    return problems


def candidate_args(args: Sequence[str], installed: str, candidate: str) -> list[str]:
    """The service's config arguments with the installed file replaced by the staged one."""
    return [candidate if arg == installed else arg for arg in args]


def _change_lines(changes: Sequence[Mapping[str, Any]] | None) -> list[str]:
    lines = []
    for change in changes or ():
        line = f"[{change.get('group')}] {change.get('option')}: {change.get('old')!r} -> {change.get('new')!r}"
        if change.get("reason"):
            line += f" ({change['reason']})"
        lines.append(line)
    return lines


def host_report(
    host: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    pid_before: Any,
    unit_after: str,
    reload_rc: int,
    reload_stderr: str = "",
    seconds: float | None = None,
) -> dict[str, Any]:
    """What one host's reload did, and whether it counts as done.

    ``before``/``after``: the state documents (``cinder-reload status --json``)
    before and after ``systemctl reload``; ``pid_before``: the unit's MainPID
    before, ``unit_after``: ``systemctl show -p MainPID,ActiveState`` after.
    The reload counts only when the exit status is 0, a new cycle was
    recorded by the same main process, its result is ok and the unit is still
    active: each is a separate reason in ``problems``.
    """
    before = before or {}
    after = after or {}
    shown = dict(line.partition("=")[::2] for line in str(unit_after).splitlines() if "=" in line)
    pid_after, active_after = shown.get("MainPID", "?"), shown.get("ActiveState", "")
    problems: list[str] = []
    generation_before = int(before.get("generation") or 0)
    generation_after = int(after.get("generation") or 0)
    if str(pid_before) != str(pid_after):
        problems.append(f"the main process changed ({pid_before} -> {pid_after}): the service restarted")
    if active_after != "active":
        problems.append(f"the unit is {active_after or 'unknown'} after the reload")
    if not after or generation_after <= generation_before:
        problems.append("no new reload cycle was recorded in the state file")
    elif after.get("result") != "ok":
        problems.append(str(after.get("message") or "the reload failed"))
    if reload_rc != 0:
        stderr = reload_stderr.strip()
        problems.append(f"systemctl reload exited {reload_rc}" + (f": {stderr}" if stderr else ""))
    workers = []
    for worker in after.get("workers") or ():
        entry = {
            "worker": worker.get("worker"),
            "result": worker.get("result"),
        }
        if worker.get("old_pid") is not None:
            entry.update(
                replaced=f"{worker.get('old_pid')} -> {worker.get('new_pid')}",
                rpc_paused_s=worker.get("paused_s"),
                new_worker_up_s=worker.get("start_s"),
            )
        if worker.get("result") != "ok":
            entry["message"] = worker.get("message")
        workers.append(entry)
    return {
        "host": host,
        "ok": not problems,
        "problems": problems,
        "message": after.get("message"),
        "main_pid": {"before": pid_before, "after": pid_after},
        "generation": {"before": generation_before, "after": generation_after},
        "changed": _change_lines(after.get("changed")),
        "reinitialized": list(after.get("reinitialized") or ()),
        "workers": workers,
        "failed_groups": dict(after.get("failed_groups") or {}),
        "pending_restart": _change_lines(after.get("pending_restart")),
        "not_applied": _change_lines(after.get("not_applied")),
        "reload_s": after.get("duration_s"),
        "systemctl_s": seconds,
    }


def _seconds(delta: str) -> float | None:
    """ansible.builtin.command's ``delta`` (``H:MM:SS.ffffff``) in seconds."""
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", str(delta or "").strip())
    if not match:
        return None
    hours, minutes, seconds = match.groups()
    return round(int(hours) * 3600 + int(minutes) * 60 + float(seconds), 3)


class FilterModule:
    """Ansible's entry point for a role's ``filter_plugins``."""

    def filters(self) -> dict[str, Any]:
        return {
            "cinder_reload_cluster_of": cluster_of,
            "cinder_reload_batches": batches,
            "cinder_reload_cluster_conflicts": cluster_conflicts,
            "cinder_reload_candidate_args": candidate_args,
            "cinder_reload_host_report": host_report,
            "cinder_reload_seconds": _seconds,
        }
