"""One reload cycle as a pipeline of small named steps.

validate -> plan -> drain -> apply live -> re-initialise -> reopen.

Each step has one failure path that leaves the running state intact:

* validate: a broken candidate ends the cycle before anything is touched;
* drain: a timeout (or SIGTERM) reopens every gate and ends the cycle with the
  old configuration in full: never forced through half-drained;
* re-initialise: a failing group gets its old option values back and keeps
  its old objects; groups that succeeded keep their change.

The cycle does not know about signals, sockets or files: the engine passes in
what it needs and turns the :class:`CycleResult` into STATUS=, the state file,
a log line and events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from oslo_config import cfg

from .apply import Overrides, mutate_live
from .config import ConfigInvalid, ConfigProblem, load_candidate, snapshot
from .diff import ChangeKind, ConfigDiff, OptionChange, OptKey, diff_values
from .drain import DrainAborted, DrainGates, DrainTimeout
from .phases import Phase
from .reinit import GroupChange, ReinitRegistry
from .workers import WorkerResult

__all__ = ["CycleResult", "ReloadCycle"]

LOG = logging.getLogger(__name__)


@dataclass
class CycleResult:
    diff: ConfigDiff = field(default_factory=ConfigDiff)
    problems: tuple[ConfigProblem, ...] = ()
    reinitialized: list[str] = field(default_factory=list)
    failed_groups: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # a cycle-level failure (invalid config, drain timeout, ...)
    aborted: bool = False  # the service began stopping mid-cycle
    #: One result per worker process, when the changes are carried out by workers.
    workers: list[WorkerResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.failed_groups
            and not self.aborted
            and all(w.ok for w in self.workers)
        )

    def merge_workers(self, results: list[WorkerResult]) -> None:
        """Take the workers' results in: their groups count as this cycle's."""
        self.workers = list(results)
        for worker in results:
            for group in worker.reinitialized:
                if group not in self.reinitialized:
                    self.reinitialized.append(group)
            for group, why in worker.failed_groups.items():
                self.failed_groups.setdefault(group, why)

    @property
    def pending_restart(self) -> tuple[OptionChange, ...]:
        return self.diff.of_kind(ChangeKind.RESTART)

    @property
    def applied(self) -> list[OptionChange]:
        """Changes in effect after the cycle (live ones and successful groups)."""
        if self.error or self.aborted:
            return []
        return [
            c
            for c in self.diff.changes
            if c.kind is ChangeKind.LIVE or (c.kind is ChangeKind.REINIT and c.group in self.reinitialized)
        ]


@dataclass
class ReloadCycle:
    conf: cfg.ConfigOpts
    gates: DrainGates
    registry: ReinitRegistry
    overrides: Overrides
    drain_timeout: float
    restart_only: Collection[OptKey] = ()
    enter: Callable[[Phase], None] = lambda phase: None
    should_abort: Callable[[], bool] = lambda: False
    on_slow_drain: Callable[[float, dict[str, int]], None] | None = None
    slow_drain_after: float = 3.0
    #: Groups re-initialised by other processes (the workers of a main
    #: process): their changes are classified ``reinit``, but this cycle
    #: neither drains nor re-initialises them.
    delegated: Collection[str] = ()
    #: Groups that are none of this process's business (a sibling worker's
    #: backend): validated like everything else, left out of the diff.
    ignored: Collection[str] = ()

    def run(self) -> CycleResult:
        result = CycleResult()
        self.enter(Phase.VALIDATING)
        try:
            candidate = self.validate()
        except ConfigInvalid as exc:
            result.problems = exc.problems
            result.error = "invalid configuration: " + "; ".join(str(p) for p in exc.problems)
            return result
        result.diff = self.plan(candidate)
        reinit_groups = [g for g in result.diff.groups(ChangeKind.REINIT) if g not in self.delegated]
        if self.should_abort():
            result.aborted = True
            return result

        scopes = sorted({self._scope(g) for g in reinit_groups})
        if scopes:
            self.enter(Phase.DRAINING)
            try:
                self.gates.drain(
                    scopes,
                    self.drain_timeout,
                    should_abort=self.should_abort,
                    on_slow=self.on_slow_drain,
                    slow_after=self.slow_drain_after,
                )
            except DrainTimeout as exc:
                result.error = f"{exc}; nothing was changed"
                return result
            except DrainAborted:
                result.aborted = True
                return result
        try:
            self.enter(Phase.APPLYING)
            self.apply_live(result.diff)
            if reinit_groups:
                self.enter(Phase.REINITIALIZING)
            for group in reinit_groups:
                self.reinit_group(group, result)
        except Exception as exc:
            # mutate_config_files() re-reads the files: one edited again since
            # validation can still fail here, before any group was touched.
            LOG.exception("applying the configuration failed")
            result.error = f"applying the configuration failed: {exc}"
        finally:
            for scope in scopes:
                self.gates.scope(scope).open()
        return result

    # -- steps ---------------------------------------------------------------
    def validate(self) -> cfg.ConfigOpts:
        """Parse the files into a scratch ConfigOpts; raise ConfigInvalid."""
        return load_candidate(
            self.conf,
            required_sections=self.registry.groups() | frozenset(self.delegated),
            not_overridden=self.overrides.keys(),
        )

    def plan(self, candidate: cfg.ConfigOpts) -> ConfigDiff:
        """What changed, and how each change will take effect."""
        diff = diff_values(
            snapshot(self.conf),
            snapshot(candidate),
            self.registry.groups() | frozenset(self.delegated),
            self.restart_only,
        )
        if self.ignored:
            diff = ConfigDiff(tuple(c for c in diff.changes if c.group not in self.ignored))
        return diff

    def apply_live(self, diff: ConfigDiff) -> None:
        """Mutable options through oslo.config; restart-only ones pinned back."""
        live = diff.of_kind(ChangeKind.LIVE)
        restart_but_mutable = [c for c in diff.of_kind(ChangeKind.RESTART) if c.mutable]
        if live or restart_but_mutable:
            secret_labels = [c.label for c in diff.changes if c.secret]
            mutate_live(self.conf, diff.of_kind(ChangeKind.REINIT), secret_labels)
        # A mutable option the integration declared restart-only would have
        # been swapped by mutate_config_files(); pin it to its running value so
        # the config reports what the process actually uses.
        self.overrides.set(restart_but_mutable, to_new=False)

    def reinit_group(self, group: str, result: CycleResult) -> None:
        registration = self.registry.get(group)
        assert registration is not None  # plan() classified only registered groups as REINIT
        changes = tuple(c for c in result.diff.in_group(group) if c.kind is ChangeKind.REINIT)
        undo = self.overrides.set(changes)
        try:
            registration.reinit(GroupChange(group, changes))
        except Exception as exc:
            self.overrides.undo(undo)
            LOG.exception("re-initialising [%s] failed, it keeps its old configuration: %s", group, exc)
            result.failed_groups[group] = f"{type(exc).__name__}: {exc}"
        else:
            result.reinitialized.append(group)

    def _scope(self, group: str) -> str:
        registration = self.registry.get(group)
        return registration.scope if registration else group
