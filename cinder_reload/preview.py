"""What a reload of the running service would do, before it is sent.

The engine writes ``SERVICE.running.json`` next to the state file when the
service becomes ready and after every reload: the files it loaded (as text,
per section and key, secrets as salted hashes), its command line, and how a
change of each option would take effect there (live, a re-initialised
group or a replaced worker, a restart).  ``cinder-reload check --running
SERVICE`` reads the files as they are now and compares: no import of the
service's code, no guess about its set-up, exactly what *that* process
loaded.

The comparison is of text, as oslo.config's parser splits it (``true`` and
``True`` differ here though they read the same); the validation ``check``
runs next to it reads the values.
"""

from __future__ import annotations

import glob
import hashlib
import os
import secrets as random_source
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg, iniparser

from .config import registered_options
from .diff import DEFAULT_GROUP, MASK, ChangeKind, OptKey, classify
from .masking import SecretNames, secret_names

__all__ = ["PreviewChange", "parse_texts", "preview", "running_document", "running_files"]

#: Bumped when the document's shape changes; an older ``check`` refuses a newer one.
VERSION = 1


def _section(name: str) -> str:
    return name if name == DEFAULT_GROUP else name.lower()


def _digest(salt: str, values: Sequence[str]) -> str:
    return "sha256:" + hashlib.sha256((salt + "\0" + "\0".join(values)).encode()).hexdigest()


def parse_texts(texts: Iterable[str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{section: {key: values}}`` of files read in order, a later file's key winning.

    oslo.config's own line parser; a file that does not parse contributes
    what it had before the error (the validation reports the error).
    """
    merged: dict[str, dict[str, tuple[str, ...]]] = {}
    for text in texts:
        sections: dict[str, dict[str, list[str]]] = {}
        parser = cfg.ConfigParser("<preview>", sections)
        try:
            iniparser.BaseParser.parse(parser, text.splitlines(keepends=True))
        except iniparser.ParseError:
            pass
        for section, keys in sections.items():
            target = merged.setdefault(_section(section), {})
            for key, values in keys.items():
                target[key] = tuple(values)
    return merged


def _loaded_sections(conf: cfg.ConfigOpts) -> dict[str, dict[str, tuple[str, ...]]]:
    namespace = getattr(conf, "_namespace", None)
    parsed: list[dict[str, dict[str, list[str]]]] = list(getattr(namespace, "_parsed", None) or [])
    merged: dict[str, dict[str, tuple[str, ...]]] = {}
    for sections in reversed(parsed):  # oslo.config keeps the newest file first
        for section, keys in sections.items():
            target = merged.setdefault(_section(section), {})
            for key, values in keys.items():
                target[key] = tuple(values)
    return merged


def running_document(
    conf: cfg.ConfigOpts,
    *,
    service: str,
    pid: int,
    reinit_groups: Collection[str],
    worker_groups: Collection[str],
    shared_groups: Collection[str] = (),
    restart_only: Collection[OptKey],
    ignored: Collection[str] = (),
    owned: Collection[OptKey] = (),
    salt: str | None = None,
    names: SecretNames | None = None,
) -> dict[str, Any]:
    """The running service's side of the preview (see the module docstring).

    ``names``: :func:`secret_names` of ``conf``'s registered options, if the
    caller keeps them (a 50-backend cinder-volume has ~8,000 to go through).
    """
    salt = salt if salt is not None else random_source.token_hex(16)
    if names is None:
        names = secret_names(reg.opt for reg in registered_options(conf))
    how: dict[str, dict[str, str]] = {}
    secret_keys: set[tuple[str, str]] = set()
    for reg in registered_options(conf):
        kind = classify(reg.key, reg.opt.mutable, reinit_groups, restart_only)
        if reg.key in owned:
            # Carried out by replacing the workers (Workers.owned_options),
            # as the reload's plan classifies it.
            kind = ChangeKind.REINIT
        group = _section(reg.group)
        for name in {reg.opt.dest, reg.opt.name}:
            how.setdefault(group, {})[name] = kind.value
            if reg.opt.secret:
                secret_keys.add((group, name))
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in _loaded_sections(conf).items():
        shown: dict[str, Any] = {}
        for key, values in keys.items():
            if (section, key) in secret_keys or names.is_secret(key) or key not in how.get(section, {}):
                # A secret, or a key no option of this process covers (a
                # driver's, registered in its worker): compared, never shown.
                shown[key] = {"digest": _digest(salt, values)}
            else:
                shown[key] = list(values)
        sections[section] = shown
    try:
        files, dirs = list(conf.config_file or []), conf.config_dir or []
    except cfg.Error:
        files, dirs = [], []
    return {
        "version": VERSION,
        "service": service,
        "pid": pid,
        "args": list(conf._args or []),
        "files": [os.path.abspath(f) for f in files],
        "dirs": [os.path.abspath(d) for d in ([dirs] if isinstance(dirs, str) else dirs)],
        "salt": salt,
        "sections": sections,
        "how": how,
        "secret": sorted(f"{g}.{k}" for g, k in secret_keys),
        "workers": sorted(worker_groups),
        "shared": sorted(shared_groups),
        "ignored": sorted(ignored),
        "owned": sorted(f"{_section(g)}.{k}" for g, k in owned),
    }


def running_files(document: Mapping[str, Any]) -> list[str]:
    """The files a reload of that service would read now, in oslo.config's order."""
    files = list(document.get("files") or [])
    for directory in document.get("dirs") or []:
        files.extend(sorted(glob.glob(os.path.join(directory, "*.conf"))))
    return files


@dataclass(frozen=True)
class PreviewChange:
    section: str
    key: str
    old: str  # as it may be shown: secrets and unknown keys as ****
    new: str
    #: live | reinit | restart | unknown (no option reads it: ignored)
    kind: str
    worker: bool = False  # a re-initialisation that replaces this section's worker process
    shared: bool = False  # ... or every worker, one at a time (a section they all read)
    owned: bool = False  # an option the workers carry out by being replaced (cinder-api's, cinder-backup's)

    def __str__(self) -> str:
        return f"[{self.section}] {self.key}: {self.old} -> {self.new}"


def _show(values: tuple[str, ...] | None) -> str:
    if values is None:
        return "(not set)"
    return repr(values[0]) if len(values) == 1 else repr(list(values))


def preview(document: Mapping[str, Any], texts: Sequence[str]) -> list[PreviewChange]:
    """Every key whose text differs between what the service loaded and ``texts``."""
    salt = str(document.get("salt", ""))
    loaded: Mapping[str, Mapping[str, Any]] = document.get("sections") or {}
    how: Mapping[str, Mapping[str, str]] = document.get("how") or {}
    secret = set(document.get("secret") or [])
    workers = set(document.get("workers") or [])
    shared = set(document.get("shared") or [])
    ignored = set(document.get("ignored") or [])
    owned = set(document.get("owned") or [])
    names = secret_names(())
    now = parse_texts(texts)
    changes: list[PreviewChange] = []
    for section in sorted(set(loaded) | set(now), key=lambda s: (s != DEFAULT_GROUP, s)):
        if section in ignored:
            continue
        before, after = loaded.get(section, {}), now.get(section, {})
        for key in sorted(set(before) | set(after)):
            old, new = before.get(key), after.get(key)
            hidden = isinstance(old, dict) or f"{section}.{key}" in secret or names.is_secret(key)
            if isinstance(old, dict):
                same = new is not None and old.get("digest") == _digest(salt, new)
            else:
                same = (tuple(old) if old is not None else None) == new
            if same:
                continue
            kind = how.get(section, {}).get(key)
            if kind is None:
                # No option of the main process reads it: a driver's, in a
                # worker's section (its worker is replaced), else ignored.
                kind = ChangeKind.REINIT.value if section in workers else "unknown"
            changes.append(
                PreviewChange(
                    section,
                    key,
                    MASK if hidden and old is not None else _show(None if old is None else tuple(old)),
                    MASK if hidden and new is not None else _show(new),
                    kind,
                    worker=kind == ChangeKind.REINIT.value and section in workers,
                    shared=section in shared,
                    owned=f"{section}.{key}" in owned,
                )
            )
    return changes


def describe(changes: Sequence[PreviewChange]) -> list[str]:
    """One line per change, saying how it would take effect."""
    lines: list[str] = []
    for change in changes:
        if change.kind == ChangeKind.LIVE.value:
            effect = "applied live"
        elif change.owned:
            effect = "the workers replaced"
        elif change.worker and change.shared:
            effect = "every worker replaced, one at a time"
        elif change.worker:
            effect = f"worker {change.section} replaced"
        elif change.kind == ChangeKind.REINIT.value:
            effect = f"[{change.section}] re-initialised"
        elif change.kind == ChangeKind.RESTART.value:
            effect = "needs a restart (reported pending, not applied)"
        else:
            effect = "no option reads it: ignored"
        lines.append(f"{change}: {effect}")
    return lines
