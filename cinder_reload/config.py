"""Reading a candidate configuration without touching the running one.

A reload parses the files into a *scratch* ``ConfigOpts`` that has the same
options registered as the running one, and validates every value there.  Only
a candidate with no problem is ever applied.  This is what oslo.config's own
``mutate_config_files()`` does not do: it raises half-way on a syntax error
(which is what kills cinder-volume today, see ../shared/notes/baseline.md) and
accepts a bad value for a mutable option unchecked, so every later read of
it raises.

Reading the running ``ConfigOpts`` relies on a few private attributes
(``_args``, ``_opts``, ``_groups``, ``_cli_opts``, ``_use_env``): oslo.config has
no public way to enumerate registered options or the arguments it parsed.
They have been stable since oslo.config 2.x; :func:`registered_options` is the
one place that touches them.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from .diff import DEFAULT_GROUP, OptionValue, OptKey, mask_text
from .files import FileSnapshot, UnsafeFile, parsing_from
from .masking import SecretNames, line_may_be_shown, secret_names, secret_values_in_text

__all__ = [
    "CandidateLoader",
    "ConfigApplyFailed",
    "ConfigInvalid",
    "ConfigProblem",
    "Scope",
    "changed_scope",
    "config_files",
    "install",
    "load_candidate",
    "mask_problems",
    "option_count",
    "option_references",
    "parsed_sections",
    "raw_sections",
    "registered_options",
    "secret_values",
    "snapshot",
]


@dataclass(frozen=True)
class ConfigProblem:
    """One reason a configuration cannot be applied."""

    where: str  # a file path, or "[group] option"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ConfigInvalid(Exception):
    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class RegisteredOpt:
    group: str  # "DEFAULT" for ungrouped options
    opt: cfg.Opt
    cli: bool

    @property
    def key(self) -> OptKey:
        return (self.group, self.opt.dest)


# Options oslo.config registers itself on every __call__ (config-file,
# config-dir, config_source); registering the running object's copies in the
# scratch object would collide with the scratch's own.
_SELF_REGISTERED = frozenset({"config_file", "config_dir", "config_source"})


@dataclass(frozen=True)
class Scope:
    """The options a reload has to read and compare: whole groups, plus single keys."""

    groups: frozenset[str]
    keys: frozenset[OptKey] = frozenset()

    def __call__(self, key: OptKey) -> bool:
        return key[0] in self.groups or key in self.keys


def registered_options(conf: cfg.ConfigOpts, scope: Scope | None = None) -> Iterator[RegisteredOpt]:
    """Every option registered on ``conf`` (or in ``scope``), with its group and CLI flag."""
    if scope is None:
        names: Collection[str] = [DEFAULT_GROUP, *conf._groups]
    else:
        names = sorted(scope.groups | {group for group, _ in scope.keys})
    for group_name in names:
        if group_name == DEFAULT_GROUP:
            for name, info in list(conf._opts.items()):
                if name not in _SELF_REGISTERED and (scope is None or scope((DEFAULT_GROUP, info["opt"].dest))):
                    yield RegisteredOpt(DEFAULT_GROUP, info["opt"], bool(info.get("cli")))
            continue
        group = conf._groups.get(group_name)
        if group is None:
            continue
        for info in list(group._opts.values()):
            if scope is None or scope((group_name, info["opt"].dest)):
                yield RegisteredOpt(group_name, info["opt"], bool(info.get("cli")))


def option_count(conf: cfg.ConfigOpts) -> int:
    """How many options ``conf`` has registered (cheap: a change means new options)."""
    return len(conf._opts) + sum(len(group._opts) for group in conf._groups.values())


def config_files(conf: cfg.ConfigOpts) -> list[str]:
    """The files ``conf`` reads, in the order it reads them."""
    files = list(conf.config_file or [])
    dirs = conf.config_dir or []
    # A single path in older oslo.config, a list since --config-dir repeats.
    for directory in [dirs] if isinstance(dirs, str) else dirs:
        files.extend(sorted(glob.glob(os.path.join(directory, "*.conf"))))
    return files


_EMPTY = "file is empty (no sections or options); refusing to reload from it"


def _check_file(path: str, files: FileSnapshot) -> ConfigProblem | None:
    """Name the file-level fault oslo.config would report less clearly."""
    try:
        text = files.text(path)
    except FileNotFoundError:
        return ConfigProblem(path, "file not found")
    except PermissionError:
        return ConfigProblem(path, f"not readable by uid {os.getuid()} (permission denied)")
    except IsADirectoryError:
        return ConfigProblem(path, "is a directory, not a file")
    except UnsafeFile as exc:
        return ConfigProblem(path, f"{exc.strerror}; refusing to read it")
    except UnicodeDecodeError as exc:
        return ConfigProblem(path, f"not valid UTF-8 ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        return ConfigProblem(path, f"cannot be read: {exc.strerror}")
    meaningful = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", ";"))]
    if not meaningful:
        return ConfigProblem(path, _EMPTY)
    return None


def _check_files(paths: Sequence[str], files: FileSnapshot) -> list[ConfigProblem]:
    """The file-level problems of a set of files, judged as a set.

    cinder starts with an empty drop-in in ``--config-dir``, or with a
    ``cinder.conf`` of comments whose settings all live in ``conf.d``: a
    reload must accept what a start accepts.  What it refuses is a set with
    nothing in it at all (an editor that truncated the only file, a config
    management run caught half-way): applying "all defaults" would silently
    reconfigure a production service.
    """
    problems = [p for p in (_check_file(path, files) for path in paths) if p]
    empty = [p for p in problems if p.message == _EMPTY]
    if empty and len(empty) < len(paths):
        problems = [p for p in problems if p.message != _EMPTY]
    return problems


def _scratch_like(conf: cfg.ConfigOpts, not_overridden: Collection[OptKey] = ()) -> cfg.ConfigOpts:
    """A new ConfigOpts with ``conf``'s options and programmatic values (see :func:`_sync`)."""
    scratch = cfg.ConfigOpts()
    _sync(scratch, conf, frozenset(not_overridden))
    return scratch


def _opt_problem(reg: RegisteredOpt, exc: Exception) -> ConfigProblem:
    where = f"[{reg.group}] {reg.opt.dest}"
    if reg.opt.secret:
        # oslo.config's message quotes the value; a secret must not leak.
        return ConfigProblem(where, f"invalid value for a secret {type(reg.opt).__name__} (value hidden)")
    text = str(exc)
    marker = "is not valid: "
    return ConfigProblem(where, text.split(marker, 1)[1] if marker in text else text)


def load_candidate(
    conf: cfg.ConfigOpts,
    *,
    args: Sequence[str] | None = None,
    required_sections: Collection[str] = (),
    not_overridden: Collection[OptKey] = (),
    files: FileSnapshot | None = None,
) -> cfg.ConfigOpts:
    """Parse the configuration again into a scratch object and validate it.

    Every problem raised is masked (:func:`mask_problems`): the values a
    secret option has in the files, new ones and wrapped ones included,
    never reach the reason an operator is shown.
    """
    files = files if files is not None else FileSnapshot()
    try:
        return _load_candidate(
            conf, args=args, required_sections=required_sections, not_overridden=not_overridden, files=files
        )
    except ConfigInvalid as exc:
        raise ConfigInvalid(mask_problems(exc.problems, conf, files)) from None


def _load_candidate(
    conf: cfg.ConfigOpts,
    *,
    args: Sequence[str] | None,
    required_sections: Collection[str],
    not_overridden: Collection[OptKey],
    files: FileSnapshot,
) -> cfg.ConfigOpts:
    """:func:`load_candidate`, unmasked.

    ``args`` defaults to the command line ``conf`` was called with.  Raises
    :class:`ConfigInvalid` listing every problem found: unreadable, missing,
    empty or malformed files, missing required options, values that fail their
    type (mutable ones included), and ``required_sections`` (groups the
    service has live objects for) that are gone from the files.
    ``not_overridden`` names options whose ``set_override()`` on ``conf`` is
    the reload's own doing: the candidate takes their value from the files.
    Every file is read once, into ``files`` (a new snapshot if None): pass
    the same snapshot to :func:`install` to apply exactly what was validated.
    """
    scratch = _scratch_like(conf, not_overridden)
    return _load(scratch, conf, args, required_sections, files if files is not None else FileSnapshot(), None)


def _load(
    scratch: cfg.ConfigOpts,
    conf: cfg.ConfigOpts,
    args: Sequence[str] | None,
    required_sections: Collection[str],
    files: FileSnapshot,
    scope: Callable[[cfg.ConfigOpts], Scope | None] | None,
) -> cfg.ConfigOpts:
    call_args = list(conf._args or []) if args is None else list(args)
    paths = config_files(conf) if args is None else []
    problems = _check_files(paths, files)
    if problems:
        raise ConfigInvalid(problems)
    try:
        with parsing_from(files):
            _call(scratch, conf, call_args, args is None)
    except cfg.ConfigFileParseError as exc:
        # Newer oslo.config says "at FILE:LINE, ...", older "at line LINE, ...".
        message = (exc.msg or "").replace(f"at {exc.config_file}:", "at line ", 1)
        message = _hide_file_line(message, exc.config_file, files, _names_of(conf))
        raise ConfigInvalid([ConfigProblem(exc.config_file, f"syntax error {message}")]) from None
    except cfg.ConfigFilesNotFoundError as exc:
        raise ConfigInvalid([ConfigProblem(f, "file not found") for f in exc.config_files]) from None
    except cfg.ConfigFilesPermissionDeniedError as exc:
        raise ConfigInvalid([ConfigProblem(f, "permission denied") for f in exc.config_files]) from None
    except cfg.RequiredOptError as exc:
        group = getattr(exc.group, "name", exc.group) or DEFAULT_GROUP
        raise ConfigInvalid([ConfigProblem(f"[{group}] {exc.opt_name}", "required option has no value")]) from None
    except cfg.Error as exc:
        raise ConfigInvalid([ConfigProblem("configuration", str(exc))]) from None
    except SystemExit:
        raise ConfigInvalid(_cli_problems(conf, call_args, files, from_command_line=args is not None)) from None
    if args is not None:
        # `check` names its files on the command line: vet them the same way.
        problems = _check_files(config_files(scratch), files)
    wanted = scope(scratch) if scope is not None else None
    for reg in registered_options(scratch, wanted):
        try:
            _read(scratch, reg)
        except (cfg.Error, ValueError) as exc:
            problems.append(_opt_problem(reg, exc))
    present = set(scratch.list_all_sections())
    problems.extend(
        ConfigProblem(
            f"[{section}]",
            "section is in use by this service but missing from the new configuration (removing it needs a restart)",
        )
        for section in sorted(set(required_sections) - present - {DEFAULT_GROUP})
    )
    if problems:
        raise ConfigInvalid(problems)
    return scratch


class CandidateLoader:
    """:func:`load_candidate` for a running service, reload after reload.

    Two things make a reload's validation cost grow with the size of the
    file rather than with the change, and this class removes both:

    * the scratch ``ConfigOpts`` is built once and called again at each
      reload (oslo.config's ``__call__`` starts with ``clear()``, which keeps
      the registered options); options the service registered since, and
      programmatic defaults and overrides, are brought in line first;
    * typed values are read only where they can differ from the running
      ones (:func:`changed_scope`): a backend section edited in a
      50-backend file reads that backend's options, not all 50.

    :attr:`scope` is the filter of the last :meth:`load` (None: everything),
    for the plan to compare the same options.
    """

    def __init__(self, conf: cfg.ConfigOpts) -> None:
        self.conf = conf
        self.scope: Scope | None = None
        self._scratch: cfg.ConfigOpts | None = None
        self._references: tuple[int, dict[str, frozenset[str]]] = (-1, {})

    def load(
        self,
        *,
        required_sections: Collection[str] = (),
        not_overridden: Collection[OptKey] = (),
        files: FileSnapshot | None = None,
    ) -> cfg.ConfigOpts:
        scratch = self._synced_scratch(not_overridden)
        pinned = frozenset(not_overridden)
        self.scope = None

        def scope(candidate: cfg.ConfigOpts) -> Scope | None:
            self.scope = changed_scope(self.conf, candidate, pinned=pinned, references=self._option_references())
            return self.scope

        files = files if files is not None else FileSnapshot()
        try:
            return _load(scratch, self.conf, None, required_sections, files, scope)
        except ConfigInvalid as exc:
            self.scope = None
            raise ConfigInvalid(mask_problems(exc.problems, self.conf, files)) from None
        except BaseException:
            self.scope = None
            raise

    def _option_references(self) -> dict[str, frozenset[str]]:
        count = option_count(self.conf)
        if self._references[0] != count:  # options registered since: look again
            self._references = (count, option_references(self.conf))
        return self._references[1]

    def _synced_scratch(self, not_overridden: Collection[OptKey]) -> cfg.ConfigOpts:
        if self._scratch is not None and _sync(self._scratch, self.conf, frozenset(not_overridden)):
            return self._scratch
        self._scratch = _scratch_like(self.conf, not_overridden)
        return self._scratch


_MISSING = object()


def _sync(scratch: cfg.ConfigOpts, conf: cfg.ConfigOpts, not_overridden: frozenset[OptKey]) -> bool:
    """Give ``scratch`` the options and programmatic values of ``conf``; False if it must be rebuilt.

    Builds a new scratch object and keeps a reused one in line (options
    registered since, defaults and overrides set since).  What the service
    set in code (set_default(), set_override()) is part of its configuration
    as much as the files: cinder gives every backend section's options a
    default of None, for one; left out, each would look changed.  Overrides
    the reload itself set (``not_overridden``) are not copied: the files
    decide those.  Walks oslo.config's option tables directly: this runs at
    every reload over every option (some 4,000 in a 50-backend cinder-volume).
    """
    tables: list[tuple[str | None, dict[str, Any]]] = [(None, conf._opts)]
    tables.extend((name, group._opts) for name, group in conf._groups.items())
    for group, table in tables:
        if group is not None and group not in scratch._groups:
            # A new OptGroup, not the running one: register_group() makes a
            # shallow copy, which would share the running group's option
            # table (and our set_override() values) with the scratch object.
            scratch.register_group(cfg.OptGroup(group, title=conf._groups[group].title))
        mine_table = scratch._opts if group is None else scratch._groups[group]._opts
        for dest, info in table.items():
            if group is None and dest in _SELF_REGISTERED:
                continue
            mine = mine_table.get(dest)
            if mine is None:
                if not info.get("cli"):
                    scratch.register_opt(info["opt"], group=group)
                elif scratch._args is None:
                    scratch.register_cli_opt(info["opt"], group=group)
                else:
                    return False  # argparse is built: a new CLI option needs a new object
                mine = mine_table[dest]
            elif mine["opt"] is not info["opt"]:
                return False  # re-registered differently
            if "default" in info or "default" in mine:
                _align(scratch, dest, group, "default", info.get("default", _MISSING), mine)
            if "override" in info or "override" in mine:
                wanted = (group or DEFAULT_GROUP, dest) not in not_overridden
                override = info.get("override", _MISSING) if wanted else _MISSING
                _align(scratch, dest, group, "override", override, mine)
    # An option unregistered from the running object: start over.
    return _own_option_count(conf) == _own_option_count(scratch)


def _own_option_count(conf: cfg.ConfigOpts) -> int:
    """:func:`option_count` without the options oslo.config registers on each call."""
    return option_count(conf) - len(_SELF_REGISTERED & conf._opts.keys())


def _align(
    scratch: cfg.ConfigOpts, dest: str, group: str | None, kind: str, want: Any, mine: Mapping[str, Any]
) -> None:
    """Give the scratch option the programmatic ``default`` or ``override`` the running one has (or none)."""
    have = mine.get(kind, _MISSING)
    if want is have or want == have:
        return
    if want is _MISSING:
        getattr(scratch, f"clear_{kind}")(dest, group=group)
    else:
        getattr(scratch, f"set_{kind}")(dest, want, group=group)


_REFERENCE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\.")


def changed_scope(
    running: cfg.ConfigOpts,
    candidate: cfg.ConfigOpts,
    *,
    pinned: Collection[OptKey] = (),
    references: Mapping[str, Collection[str]] | None = None,
) -> Scope | None:
    """Which options can differ between ``running`` and ``candidate``; None: any.

    A typed value is a function of its option's text in the files, its
    programmatic default or override, the environment and the command line
    (fixed for the life of the process), and, through substitution and
    deprecated names, of other options: ``$name`` looks in its own section,
    then in DEFAULT; ``${group.name}`` anywhere.  So when DEFAULT's text is
    unchanged and nothing refers into the changed sections from outside (no
    ``${changed.name}`` in another section's text or an option's default, no
    option read through a deprecated name there), only the changed
    sections' options can differ, plus the ``pinned`` ones (pending a
    restart, or a backend whose new worker did not come up: still reported
    and retried at every reload).  An edit in DEFAULT reads everything.
    ``references``: :func:`option_references` of ``running``, if known.
    """
    before, after = parsed_sections(running), parsed_sections(candidate)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    if DEFAULT_GROUP in changed:
        return None
    if changed:
        for sections in (before, after):
            for name, keys in sections.items():
                if name in changed:
                    continue
                for values in keys.values():
                    for value in values:
                        if "$" in value and any(group in changed for group in _REFERENCE.findall(value)):
                            return None
        refs = option_references(running) if references is None else references
        if any(group not in changed and changed & set(targets) for group, targets in refs.items()):
            return None
    return Scope(frozenset(changed), frozenset(pinned))


def option_references(conf: cfg.ConfigOpts) -> dict[str, frozenset[str]]:
    """For each group, the other groups its options read through a default or a deprecated name."""
    found: dict[str, set[str]] = {}
    for reg in registered_options(conf):
        targets: set[str] = set()
        default = reg.opt.default
        if isinstance(default, str) and "$" in default:
            targets.update(_REFERENCE.findall(default))
        targets.update(d.group for d in reg.opt.deprecated_opts if d.group and d.group != reg.group)
        if targets:
            found.setdefault(reg.group, set()).update(targets)
    return {group: frozenset(targets) for group, targets in found.items()}


def parsed_sections(conf: cfg.ConfigOpts) -> dict[str, dict[str, tuple[str, ...]]]:
    """Every section as the files spell it (see :func:`raw_sections`)."""
    namespace = getattr(conf, "_namespace", None)
    parsed: list[dict[str, dict[str, list[str]]]] = list(getattr(namespace, "_parsed", None) or [])
    names = {name for sections in parsed for name in sections}
    return raw_sections(conf, names)


def _call(scratch: cfg.ConfigOpts, conf: cfg.ConfigOpts, call_args: list[str], defaults: bool) -> None:
    scratch(
        args=call_args,
        # vars(): on a ConfigOpts never called, attribute access would
        # look these up as options and raise NoSuchOptError.
        project=vars(conf).get("project"),
        prog=vars(conf).get("prog") or "cinder-reload",
        default_config_files=conf.default_config_files if defaults else [],
        default_config_dirs=conf.default_config_dirs if defaults else [],
        use_env=getattr(conf, "_use_env", True),
    )


class ConfigApplyFailed(Exception):
    """oslo.config refused the snapshot it was to install (a bug: it validated)."""


def install(conf: cfg.ConfigOpts, files: FileSnapshot) -> None:
    """Make ``conf`` read the validated snapshot: every group, from those bytes.

    oslo.config's own ``reload_config_files()``, parsing from the snapshot
    instead of the disk.  Options the reload must not change yet (pending a
    restart, a group whose worker could not come up) are pinned afterwards
    with ``set_override()`` by the caller.  ``_mutable_ns`` is dropped because
    mutable options would otherwise keep reading an older namespace that
    ``mutate_config_files()`` (which cinder-reload never calls) left behind.
    """
    # Before the reload: reload_config_files() clears oslo.config's value cache.
    conf._mutable_ns = None
    with parsing_from(files):
        if not conf.reload_config_files():
            raise ConfigApplyFailed("oslo.config refused the validated files (see its warning above)")


def raw_sections(conf: cfg.ConfigOpts, names: Collection[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """Each named section as the files spell it: ``{section: {key: values}}``.

    A backend's driver registers some of its options only once it runs (in a
    worker, where the main process cannot see them); comparing the text of
    the section, not only the options the main process knows, is what
    notices a change to one of those.  Files merge in oslo.config's order (a
    later file's key wins).
    """
    namespace = getattr(conf, "_namespace", None)
    parsed: list[dict[str, dict[str, list[str]]]] = list(getattr(namespace, "_parsed", None) or [])
    result: dict[str, dict[str, tuple[str, ...]]] = {}
    for name in names:
        merged: dict[str, tuple[str, ...]] = {}
        for sections in reversed(parsed):  # oslo.config keeps the newest file first
            for key, values in sections.get(name, {}).items():
                merged[key] = tuple(values)
        result[name] = merged
    return result


def _cli_problems(
    conf: cfg.ConfigOpts, call_args: Sequence[str], snapshot: FileSnapshot, *, from_command_line: bool = False
) -> list[ConfigProblem]:
    """Why argparse gave up: usually a bad value in the files for a CLI option.

    oslo.config hands a file's value of a CLI option (``debug = perhaps``) to
    argparse as a default, and argparse exits instead of raising.  Parse the
    files again with every option registered as a plain one, and name every
    option whose value does not read.
    """
    scratch = cfg.ConfigOpts()
    for reg in registered_options(conf):
        if reg.group != DEFAULT_GROUP and reg.group not in scratch._groups:
            scratch.register_group(cfg.OptGroup(reg.group))
        scratch.register_opt(reg.opt, group=None if reg.group == DEFAULT_GROUP else reg.group)
    if from_command_line:
        # `check`: ``conf`` was never called, so it has no config_file yet;
        # the files are those the command line names.
        file_args = _file_args(call_args)
    else:
        file_args = [item for path in config_files(conf) for item in ("--config-file", path)]
    problems: list[ConfigProblem] = []
    try:
        with parsing_from(snapshot):
            scratch(
                args=file_args,
                project=vars(conf).get("project"),
                default_config_files=[],
                default_config_dirs=[],
            )
        # Every option, not only the CLI ones: argparse stopped the first
        # parse before any other value was read, and all problems are listed.
        for reg in registered_options(scratch):
            try:
                _read(scratch, reg)
            except (cfg.Error, ValueError) as exc:
                problems.append(_opt_problem(reg, exc))
    except (cfg.Error, SystemExit):
        pass
    return problems or [ConfigProblem("command line", f"invalid arguments {list(call_args)!r}")]


def _file_args(args: Sequence[str]) -> list[str]:
    """The ``--config-file``/``--config-dir`` arguments of a command line."""
    kept: list[str] = []
    items = list(args)
    for index, item in enumerate(items):
        if item in ("--config-file", "--config-dir") and index + 1 < len(items):
            kept += [item, items[index + 1]]
        elif item.startswith(("--config-file=", "--config-dir=")):
            kept.append(item)
    return kept


def _read(conf: cfg.ConfigOpts, reg: RegisteredOpt) -> Any:
    if reg.group == DEFAULT_GROUP:
        return getattr(conf, reg.opt.dest)
    return getattr(getattr(conf, reg.group), reg.opt.dest)


def secret_values(conf: cfg.ConfigOpts) -> list[str]:
    """The effective values of ``conf``'s secret options: only those are read
    (masking runs per log record; a full :func:`snapshot` is ~1,500 reads)."""
    values: list[str] = []
    for reg in registered_options(conf):
        if not reg.opt.secret:
            continue
        try:
            value = _read(conf, reg)
        except (cfg.Error, ValueError):
            continue
        if isinstance(value, (list, tuple)):
            values.extend(str(item) for item in value if item)
        elif value:
            values.append(str(value))
    return values


def snapshot(conf: cfg.ConfigOpts, only: Scope | None = None) -> dict[OptKey, OptionValue]:
    """The effective value of every registered option (overrides included), or of those in ``only``."""
    values: dict[OptKey, OptionValue] = {}
    for reg in registered_options(conf, only):
        try:
            value = _read(conf, reg)
        except (cfg.Error, ValueError):
            # A running config can hold an unreadable mutable value that
            # oslo.config accepted before this helper was installed; treat it
            # as "unknown" so any valid candidate counts as a change.
            value = _Unreadable()
        values[reg.key] = OptionValue(value, mutable=reg.opt.mutable, secret=reg.opt.secret)
    return values


class _Unreadable:
    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)

    def __str__(self) -> str:
        return "<invalid>"


_QUOTED_LINE = re.compile(r"^at line (?P<lineno>\d+), (?P<what>.*?): (?P<line>'.*'|\".*\")$", re.DOTALL)


def _names_of(conf: cfg.ConfigOpts) -> SecretNames:
    return secret_names(reg.opt for reg in registered_options(conf))


def _hide_file_line(message: str, path: str, files: FileSnapshot, names: SecretNames) -> str:
    """Drop the quoted file line from a parse error unless it is safe to show.

    oslo.config's parse errors end with the offending line quoted; that line
    may be a mistyped ``password s3cret`` (no ``=``) or the wrapped half of a
    password on a continuation line.  Whether it is shown is decided by what
    the line *is* in the file (masking.line_may_be_shown), not by its text.
    """
    match = _QUOTED_LINE.match(message)
    if not match:
        return message
    try:
        text = files.text(path)
    except (OSError, UnicodeDecodeError):
        text = ""
    if line_may_be_shown(text, int(match.group("lineno")), names):
        return message
    return f"at line {match.group('lineno')}, {match.group('what')} (line not shown: it may contain a secret)"


def mask_problems(problems: Sequence[ConfigProblem], conf: cfg.ConfigOpts, files: FileSnapshot) -> list[ConfigProblem]:
    """``problems`` with every secret value the files or ``conf`` hold replaced by ``****``."""
    names = _names_of(conf)
    values = secret_values(conf)
    for text in files.texts().values():
        values.extend(secret_values_in_text(text, names))
    return [ConfigProblem(mask_text(p.where, values), mask_text(p.message, values)) for p in problems]
