"""The engine's phases as an explicit state machine.

"Reloading" is a phase, not something implied by scattered fields; an illegal
transition is a bug in the engine and raises.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["IllegalTransition", "Phase", "PhaseMachine"]


class Phase(enum.StrEnum):
    STARTING = "starting"  # service not ready yet; SIGHUPs are kept for later
    IDLE = "idle"
    VALIDATING = "validating"
    DRAINING = "draining"
    APPLYING = "applying"
    REINITIALIZING = "reinitializing"
    #: The workers' step of a pre-fork service: replace, or tell, each worker.
    WORKERS = "workers"
    STOPPING = "stopping"
    STOPPED = "stopped"


_CYCLE_END = {Phase.IDLE, Phase.STOPPING}

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.STARTING: frozenset({Phase.IDLE, Phase.STOPPING}),
    Phase.IDLE: frozenset({Phase.VALIDATING, Phase.STOPPING}),
    Phase.VALIDATING: frozenset({Phase.DRAINING, Phase.APPLYING, *_CYCLE_END}),
    Phase.DRAINING: frozenset({Phase.APPLYING, *_CYCLE_END}),
    Phase.APPLYING: frozenset({Phase.REINITIALIZING, Phase.WORKERS, *_CYCLE_END}),
    Phase.REINITIALIZING: frozenset({Phase.WORKERS, *_CYCLE_END}),
    Phase.WORKERS: frozenset(_CYCLE_END),
    Phase.STOPPING: frozenset({Phase.STOPPED}),
    Phase.STOPPED: frozenset(),
}

IN_CYCLE = frozenset({Phase.VALIDATING, Phase.DRAINING, Phase.APPLYING, Phase.REINITIALIZING, Phase.WORKERS})


class IllegalTransition(RuntimeError):
    pass


class PhaseMachine:
    def __init__(self, on_change: Callable[[Phase, Phase], None] | None = None) -> None:
        self.phase = Phase.STARTING
        self._on_change = on_change

    def advance(self, to: Phase) -> None:
        if to not in TRANSITIONS[self.phase]:
            raise IllegalTransition(f"{self.phase.value} -> {to.value}")
        before, self.phase = self.phase, to
        if self._on_change is not None:
            self._on_change(before, to)

    @property
    def in_cycle(self) -> bool:
        return self.phase in IN_CYCLE
