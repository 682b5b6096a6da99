"""One reload cycle as a pipeline of small named steps.

validate -> plan -> drain -> apply -> re-initialise -> workers -> reopen.

Each step has one failure path that leaves the running state intact:

* validate: the files are read once (files.py) and parsed into a scratch
  object; a broken candidate ends the cycle before anything is touched;
* drain: a timeout (or SIGTERM) reopens every gate and ends the cycle with the
  old configuration in full: never forced through half-drained;
* apply: the running object reads the validated bytes; whatever may not
  change yet is pinned to its running value;
* re-initialise: a failing group gets its old option values back and keeps
  its old objects; groups that succeeded keep their change;
* workers: a pre-fork service's main process hands the plan to its workers
  (workers.py); each result is the worker's own, its failure that worker's.

The cycle does not know about signals, sockets or files: the engine passes in
what it needs and turns the :class:`CycleResult` into STATUS=, the state file,
a log line and events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from oslo_config import cfg

from .apply import Overrides, run_mutate_hooks
from .config import (
    CandidateLoader,
    ConfigInvalid,
    ConfigProblem,
    install,
    raw_sections,
    snapshot,
)
from .diff import ChangeKind, ConfigDiff, OptionChange, OptKey, diff_values, raw_changes
from .drain import DrainAborted, DrainGates, DrainTimeout
from .files import FileSnapshot
from .phases import Phase
from .reinit import GroupChange, ReinitRegistry
from .workers import WorkerPlan, WorkerResult, Workers

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
    #: Options outside any group that the workers carried out (enabled_backends).
    applied_options: set[OptKey] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failed_groups and not self.aborted and all(w.ok for w in self.workers)

    def merge_workers(self, results: list[WorkerResult]) -> None:
        """Take the workers' results in: their groups count as this cycle's."""
        self.workers = list(results)
        for worker in results:
            for group in worker.reinitialized:
                if group not in self.reinitialized:
                    self.reinitialized.append(group)
            for group, why in worker.failed_groups.items():
                self.failed_groups.setdefault(group, why)
            self.applied_options.update(worker.applied_options)

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
            if c.kind is ChangeKind.LIVE
            or (c.kind is ChangeKind.REINIT and (c.group in self.reinitialized or c.key in self.applied_options))
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
    #: A pre-fork service's workers: their groups are classified ``reinit``
    #: here and carried out by them in the cycle's last step.
    workers: Workers | None = None
    generation: int = 0
    worker_timeout: float = 75.0
    #: Groups that are none of this process's business (a sibling worker's
    #: backend): validated like everything else, left out of the diff.
    ignored: Collection[str] = ()
    #: Kept by the engine from one cycle to the next (its scratch object).
    loader: CandidateLoader | None = None
    #: The service's own rules on a candidate (cinder-volume: every backend
    #: enabled_backends names has a section); a problem refuses it.
    candidate_checks: Sequence[Callable[[cfg.ConfigOpts], Sequence[ConfigProblem]]] = ()

    #: The workers' groups under the candidate (set by plan(): a backend
    #: being added is the workers' business before its worker exists).
    _candidate_groups: frozenset[str] = field(default=frozenset(), init=False)

    @property
    def delegated(self) -> frozenset[str]:
        own = frozenset(self.workers.groups()) if self.workers is not None else frozenset()
        return own | self._candidate_groups

    @property
    def owned(self) -> frozenset[OptKey]:
        """Options outside the groups whose change the workers step carries out."""
        return frozenset(self.workers.owned_options()) if self.workers is not None else frozenset()

    def run(self) -> CycleResult:
        result = CycleResult()
        self.enter(Phase.VALIDATING)
        files = FileSnapshot()
        try:
            candidate = self.validate(files)
        except ConfigInvalid as exc:
            result.problems = exc.problems
            result.error = "invalid configuration: " + "; ".join(str(p) for p in exc.problems)
            return result
        result.diff = self.plan(candidate)
        owned = self.owned
        reinit_groups = sorted(
            {c.group for c in result.diff.of_kind(ChangeKind.REINIT) if c.key not in owned} - self.delegated
        )
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
            self.apply(result.diff, files)
            if reinit_groups:
                self.enter(Phase.REINITIALIZING)
            for group in reinit_groups:
                self.reinit_group(group, result)
        except Exception as exc:
            LOG.exception("applying the configuration failed")
            result.error = f"applying the configuration failed: {exc}"
        finally:
            for scope in scopes:
                self.gates.scope(scope).open()
        if self.workers is not None and result.error is None:
            self.enter(Phase.WORKERS)
            result.merge_workers(self.workers.reload(self.worker_plan(result.diff)))
        return result

    # -- steps ---------------------------------------------------------------
    def validate(self, files: FileSnapshot) -> cfg.ConfigOpts:
        """Parse the files (read once, into ``files``) into a scratch ConfigOpts; raise ConfigInvalid."""
        if self.loader is None:
            self.loader = CandidateLoader(self.conf)
        candidate = self.loader.load(
            required_sections=self.registry.groups()
            | (frozenset(self.workers.required_groups()) if self.workers is not None else frozenset()),
            not_overridden=self.overrides.keys(),
            files=files,
        )
        problems = [p for check in self.candidate_checks for p in check(candidate)]
        if problems:
            raise ConfigInvalid(problems)
        return candidate

    def plan(self, candidate: cfg.ConfigOpts) -> ConfigDiff:
        """What changed, and how each change will take effect.

        Only the options validation found could differ are compared (all of
        them unless only a backend's section changed: config.changed_scope).
        """
        only = self.loader.scope if self.loader is not None else None
        running, new = snapshot(self.conf, only), snapshot(candidate, only)
        if self.workers is not None:
            self._candidate_groups = frozenset(self.workers.candidate_groups(candidate))
        diff = diff_values(running, new, self.registry.groups() | self.delegated, self.restart_only)
        owned = self.owned
        if owned:
            # Carried out by the workers step (a backend added or removed),
            # not pending a restart: re-initialisable like a backend's section.
            diff = ConfigDiff(tuple(replace(c, kind=ChangeKind.REINIT) if c.key in owned else c for c in diff.changes))
        if self.delegated:
            # The workers' sections compared as text too: keys no option of
            # this process's covers (registered by a driver in its worker).
            # The snapshots hold every option of those sections (the scope
            # covers each section it compares).
            groups = sorted(self.delegated if only is None else self.delegated & only.groups)
            known = running.keys() | new.keys()
            raw = raw_changes(raw_sections(self.conf, groups), raw_sections(candidate, groups), known)
            diff = ConfigDiff(diff.changes + raw.changes)
        if self.ignored:
            diff = ConfigDiff(tuple(c for c in diff.changes if c.group not in self.ignored))
        return diff

    def apply(self, diff: ConfigDiff, files: FileSnapshot) -> None:
        """The running object reads the validated bytes; what may not change yet is pinned.

        Pending-restart changes stay pinned to their running value (so the
        config reports what the process actually uses, and a worker forked
        later inherits it); re-initialisable ones are pinned too, until
        their group is rebuilt or its worker replaced.  Mutable ones are in
        effect from here on, and oslo.config's mutate hooks run.
        """
        install(self.conf, files)
        self.overrides.set((c for c in diff.changes if c.kind is not ChangeKind.LIVE), to_new=False)
        run_mutate_hooks(self.conf, diff.of_kind(ChangeKind.LIVE))

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

    def worker_plan(self, diff: ConfigDiff) -> WorkerPlan:
        changed = tuple(g for g in diff.groups(ChangeKind.REINIT) if g in self.delegated)
        return WorkerPlan(
            generation=self.generation,
            diff=diff,
            changed_groups=changed,
            overrides=self.overrides,
            timeout=self.worker_timeout,
            drain_timeout=self.drain_timeout,
        )

    def _scope(self, group: str) -> str:
        registration = self.registry.get(group)
        return registration.scope if registration else group
