"""What a finished cycle tells the operator: pure functions, no I/O.

One :class:`CycleResult` becomes the state-file document, the one-line
``STATUS=`` and the log line.  All three say the same thing, and none of them
contains a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .cycle import CycleResult
from .diff import ChangeKind, OptionChange, OptKey, mask_text

if TYPE_CHECKING:
    from .state import ChangeRecord, StateDocument, WorkerRecord

__all__ = ["STATUS_FAILED_PREFIX", "build_report", "status_line"]

#: HAProxy's convention for "the reload failed but I am still serving":
#: READY=1 with a STATUS= starting with this (systemd has no reload-failed field).
STATUS_FAILED_PREFIX = "Reload failed: "
STATUS_MAX = 400


def _labels(changes: Iterable[OptionChange]) -> list[str]:
    return [c.label for c in changes]


def failure_reason(result: CycleResult) -> str | None:
    """The one-sentence reason a cycle failed, or None if it succeeded."""
    if result.aborted:
        return "aborted because the service is stopping; the running configuration is unchanged"
    if result.error:
        return result.error
    failed_workers = [w for w in result.workers if not w.ok]
    if failed_workers:
        parts = [f"{w.name} (pid {w.pid}): {w.message.removeprefix(STATUS_FAILED_PREFIX)}" for w in failed_workers]
        ok = [w.name for w in result.workers if w.ok]
        text = f"{len(failed_workers)} of {len(result.workers)} workers failed: " + "; ".join(parts)
        if ok:
            text += "; ok: " + ", ".join(ok)
        return text
    if result.failed_groups:
        parts = [
            f"re-initialising [{g}] failed ({why}); [{g}] keeps its old configuration"
            for g, why in sorted(result.failed_groups.items())
        ]
        if result.reinitialized:
            parts.append("re-initialised: " + ", ".join(result.reinitialized))
        return "; ".join(parts)
    return None


def status_line(result: CycleResult, generation: int) -> str:
    """The ``STATUS=`` text: honest, one line, bounded."""
    reason = failure_reason(result)
    pending = _labels(result.pending_restart)
    if reason is not None:
        text = STATUS_FAILED_PREFIX + reason
    else:
        text = f"Reload #{generation} ok: {result.diff.summary()}"
        if result.reinitialized:
            text += "; re-initialised " + ", ".join(result.reinitialized)
        if result.workers:
            text += f"; {len(result.workers)}/{len(result.workers)} workers ok"
    if pending:
        text += "; pending restart: " + ", ".join(pending)
    return text if len(text) <= STATUS_MAX else text[: STATUS_MAX - 3] + "..."


def _masked_worker(record: WorkerRecord, secrets: list[str]) -> WorkerRecord:
    """A worker's record with its free text masked: a driver's error may quote a password."""
    masked: WorkerRecord = {**record}
    if "message" in masked:
        masked["message"] = mask_text(masked["message"], secrets)
    if masked.get("reason"):
        masked["reason"] = mask_text(str(masked["reason"]), secrets)
    if "failed_groups" in masked:
        masked["failed_groups"] = {g: mask_text(why, secrets) for g, why in masked["failed_groups"].items()}
    if "problems" in masked:
        masked["problems"] = [mask_text(p, secrets) for p in masked["problems"]]
    return masked


#: Why an option that nothing applies live needs a restart.
NO_LIVE_PATH = "read once when the process starts; no live path applies it yet"


def _pending(change: OptionChange, reasons: Mapping[OptKey, str]) -> ChangeRecord:
    record = change.as_dict()
    record["reason"] = reasons.get(change.key, NO_LIVE_PATH)
    return record


def build_report(
    *,
    service: str,
    pid: int,
    generation: int,
    result: CycleResult,
    started_at: str,
    finished_at: str,
    started_monotonic: float,
    duration: float,
    secrets: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
    restart_reasons: Mapping[OptKey, str] | None = None,
) -> StateDocument:
    """The state-file document for a finished cycle.

    ``restart_reasons``: why each restart-only option needs a restart (the
    integration knows); any other one gets :data:`NO_LIVE_PATH`.
    """
    reason = failure_reason(result)
    applied = result.applied
    not_applied = [c for c in result.diff.changes if c not in applied and c.kind is not ChangeKind.RESTART]
    secrets = list(secrets)
    doc: StateDocument = {
        "service": service,
        "pid": pid,
        "generation": generation,
        "result": "ok" if reason is None else "failed",
        "message": mask_text(status_line(result, generation), secrets),
        "started_at": started_at,
        "finished_at": finished_at,
        "started_monotonic": started_monotonic,
        "duration_s": round(duration, 6),
        "changed": [c.as_dict() for c in applied],
        "not_applied": [c.as_dict() for c in not_applied],
        "reinitialized": list(result.reinitialized),
        "failed_groups": {g: mask_text(why, secrets) for g, why in sorted(result.failed_groups.items())},
        "pending_restart": [_pending(c, restart_reasons or {}) for c in result.pending_restart],
        "problems": [mask_text(str(p), secrets) for p in result.problems],
        "workers": [_masked_worker(w.as_dict(), secrets) for w in result.workers],
        "phase": "idle",
        "in_progress": None,
    }
    if extra:
        doc.update(extra)  # type: ignore[typeddict-item]
    return doc
