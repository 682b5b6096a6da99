"""What ``cinder-reload check`` says beyond "the values read": the
``oslo-config-validator`` part.

oslo.config reads a file leniently: a misspelt option (``volume_drvier``) is
ignored, a second ``[lvm-1]`` section merges into the first, a repeated key
silently wins.  cinder starts with all of that, so none of it is an error; it
is what an operator most needs to hear before reloading.  This module reads
the files with oslo.config's own line parser (iniparser, so the rules are
oslo.config's) and compares every key with the options the service knows:

* an unknown option or section: a warning, with the closest known name;
* a deprecated option name: a warning naming the current one;
* an option deprecated for removal: a warning;
* an option or section given twice in one file: a warning saying which wins;
* a section named where the service needs one (``enabled_backends``) but
  absent from every file: an error.

Pure: texts and option tables in, findings out.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from oslo_config import cfg, iniparser

from .config import ConfigProblem, registered_options
from .diff import DEFAULT_GROUP

__all__ = ["CheckHints", "KnownOptions", "lint_files", "known_options"]


@dataclass(frozen=True)
class CheckHints:
    """What a service's options provider knows beyond the options it registered.

    Returned (optionally) by the function ``check --options`` names: options
    the service registers only later (a driver's, a library's), sections whose
    keys are those of another group, and sections the configuration itself
    says must exist.
    """

    extra: tuple[tuple[str, cfg.Opt], ...] = ()
    templates: Mapping[str, str] = field(default_factory=dict)
    required_sections: tuple[str, ...] = ()


@dataclass
class KnownOptions:
    """Option names per group (``DEFAULT`` included), as a file may spell them."""

    #: group -> option names (``name`` and ``dest``) valid in it
    names: dict[str, set[str]] = field(default_factory=dict)
    #: (group, deprecated name) -> (group, current name)
    deprecated: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    #: (group, name) of options deprecated for removal
    for_removal: set[tuple[str, str]] = field(default_factory=set)
    #: sections whose keys are checked against ``names[template]`` (a backend
    #: section takes the options of ``backend_defaults``, say)
    templates: dict[str, str] = field(default_factory=dict)

    def add(self, group: str, opt: cfg.Opt) -> None:
        group = _normal(group)
        self.names.setdefault(group, set()).update({opt.name, opt.dest})
        for old in getattr(opt, "deprecated_opts", None) or ():
            old_group = _normal(old.group) if old.group else group
            self.deprecated[(old_group, old.name or opt.dest)] = (group, opt.dest)
            self.names.setdefault(old_group, set())
        if getattr(opt, "deprecated_for_removal", False):
            self.for_removal.add((group, opt.dest))

    def group_names(self, section: str) -> set[str] | None:
        section = _normal(section)
        own = self.names.get(section)
        template = self.templates.get(section)
        if own is None and template is None:
            return None
        return (own or set()) | (self.names.get(template, set()) if template else set())


def _normal(group: str | None) -> str:
    # oslo.config's _normalize_group_name: section names are case-insensitive.
    if not group or group == DEFAULT_GROUP:
        return DEFAULT_GROUP
    return group.lower()


def known_options(conf: cfg.ConfigOpts, hints: CheckHints | None = None) -> KnownOptions:
    """Every option registered on ``conf``, plus what ``hints`` add."""
    known = KnownOptions()
    for reg in registered_options(conf):
        known.add(reg.group, reg.opt)
    for group, opt in hints.extra if hints else ():
        known.add(group, opt)
    for section, template in (hints.templates if hints else {}).items():
        known.templates[_normal(section)] = _normal(template)
    return known


@dataclass
class _Scan(iniparser.BaseParser):
    """One file as oslo.config's parser sees it, with line numbers kept."""

    sections: list[tuple[str, int]] = field(default_factory=list)
    keys: list[tuple[str, str, int]] = field(default_factory=list)
    _section: str | None = None
    _key_line: int = 0

    def new_section(self, section: str) -> None:
        self._section = section
        self.sections.append((section, self.lineno))

    def _split_key_value(self, line: str) -> tuple[str, list[str]]:
        self._key_line = self.lineno  # assignment() is called later, at the next line
        return super()._split_key_value(line)

    def assignment(self, key: str, value: list[str]) -> None:
        if self._section is not None:
            self.keys.append((self._section, key, self._key_line))


def _scan(text: str) -> _Scan | None:
    scan = _Scan()
    try:
        scan.parse(text.splitlines(keepends=True))
    except iniparser.ParseError:
        return None  # the validation reports the syntax error itself
    return scan


def _did_you_mean(name: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def lint_files(
    texts: Mapping[str, str],
    known: KnownOptions,
    required_sections: Collection[str] = (),
) -> tuple[list[ConfigProblem], list[ConfigProblem]]:
    """``(errors, warnings)`` for the files ``texts`` (path -> text, in reading order)."""
    errors: list[ConfigProblem] = []
    warnings: list[ConfigProblem] = []
    present: set[str] = set()
    all_sections = set(known.names) | set(known.templates)
    for path, text in texts.items():
        scan = _scan(text)
        if scan is None:
            continue
        seen_sections: dict[str, int] = {}
        for section, line in scan.sections:
            group = _normal(section)
            present.add(group)
            if group in seen_sections:
                warnings.append(
                    ConfigProblem(
                        f"{path}:{line}",
                        f"section [{section}] again (first at line {seen_sections[group]}); "
                        "oslo.config merges the two, a key in both takes this one's value",
                    )
                )
            else:
                seen_sections[group] = line
            if known.group_names(group) is None:
                warnings.append(
                    ConfigProblem(
                        f"{path}:{line}",
                        f"unknown section [{section}]: no option of this service is read from it"
                        + _did_you_mean(group, all_sections),
                    )
                )
        seen_keys: dict[tuple[str, str], int] = {}
        for section, key, line in scan.keys:
            group = _normal(section)
            where = f"{path}:{line}"
            if (group, key) in seen_keys:
                warnings.append(
                    ConfigProblem(
                        where,
                        f"[{section}] {key} set again (first at line {seen_keys[(group, key)]}); "
                        "this later value is the one used",
                    )
                )
            else:
                seen_keys[(group, key)] = line
            names = known.group_names(group)
            if names is None:
                continue  # the unknown section was reported once
            if (group, key) in known.deprecated:
                new_group, new_name = known.deprecated[(group, key)]
                warnings.append(
                    ConfigProblem(where, f"[{section}] {key} is a deprecated name: use [{new_group}] {new_name}")
                )
            elif key not in names:
                warnings.append(
                    ConfigProblem(where, f"[{section}] {key}: unknown option, ignored" + _did_you_mean(key, names))
                )
            elif (group, key) in known.for_removal:
                warnings.append(ConfigProblem(where, f"[{section}] {key} is deprecated for removal and may be ignored"))
    for section in sorted(required_sections):
        if _normal(section) not in present:
            errors.append(
                ConfigProblem(
                    f"[{section}]",
                    "named by the configuration (enabled_backends) but no file has this section",
                )
            )
    return errors, warnings
