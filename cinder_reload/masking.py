"""Secrets by option, not by line text: what may be shown of a config file.

Masking the *running* values of ``secret=True`` options (diff.mask_text) is
not enough.  A password wrapped onto a continuation line, a new password in a
file that fails validation, or a driver's ``san_password`` that the main
process never registered are not running values, and oslo.config's parse
errors quote the offending file line verbatim.  So this module reads the
files the way oslo.config's parser does (without ever failing) and answers
two questions:

* which values in these files belong to a secret option (every line of a
  multi-line value included), so that any text can be masked with them;
* whether one file line may be quoted at all: only a section header, or the
  first line of an assignment to an option known not to be secret.

Pure functions over text; the callers own the files and the ConfigOpts.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence

from oslo_config import cfg

__all__ = [
    "SecretLogFilter",
    "SecretNames",
    "line_may_be_shown",
    "secret_names",
    "secret_values_in_parsed",
    "secret_values_in_text",
]

#: Key names that look like credentials.  Used only for keys no registered
#: option covers (a driver registers its options in its worker, out of the
#: main process's sight): masking a non-secret value by mistake hides a value,
#: showing a password by mistake publishes it.
_LOOKS_SECRET = re.compile(r"pass|secret|token|credential|private|(^|_)key($|_)|auth", re.IGNORECASE)


class SecretNames:
    """Which option names are secret, and which are known not to be."""

    def __init__(self, secret: Collection[str] = (), known: Collection[str] = ()) -> None:
        self.secret = frozenset(n.lower() for n in secret)
        self.known = frozenset(n.lower() for n in known)

    def is_secret(self, key: str) -> bool:
        name = key.strip().lower()
        if name in self.secret:
            return True
        return name not in self.known and bool(_LOOKS_SECRET.search(name))

    def is_known_public(self, key: str) -> bool:
        name = key.strip().lower()
        return name in self.known and name not in self.secret


def _names(opt: cfg.Opt) -> Iterator[str]:
    yield opt.name
    yield opt.dest
    for deprecated in getattr(opt, "deprecated_opts", None) or ():
        if getattr(deprecated, "name", None):
            yield deprecated.name


def secret_names(opts: Iterable[cfg.Opt]) -> SecretNames:
    """The names (current and deprecated) of ``opts``, split by ``secret=``."""
    secret: set[str] = set()
    known: set[str] = set()
    for opt in opts:
        names = set(_names(opt))
        known |= names
        if opt.secret:
            secret |= names
    return SecretNames(secret, known)


def _key_of(line: str) -> str:
    """The key of an assignment line as oslo.config's iniparser splits it."""
    colon, equal = line.find(":"), line.find("=")
    if colon < 0 and equal < 0:
        return line.split(None, 1)[0] if line.split() else ""
    if colon < 0 or (0 <= equal < colon):
        return line[:equal].strip()
    return line[:colon].strip()


def _value_of(line: str) -> str:
    colon, equal = line.find(":"), line.find("=")
    if colon < 0 and equal < 0:
        parts = line.split(None, 1)  # "password s3cret": a mistyped assignment
        return parts[1].strip() if len(parts) > 1 else ""
    cut = equal if colon < 0 or (0 <= equal < colon) else colon
    value = line[cut + 1 :].strip()
    if value and value[0] == value[-1] and value.startswith(("'", '"')):
        value = value[1:-1]
    return value


def secret_values_in_text(text: str, names: SecretNames) -> list[str]:
    """Every value (and every line of a multi-line value) a secret key has in ``text``.

    Follows iniparser's rules (an indented line continues the previous
    assignment; a blank line, a comment or a new key ends it) but never
    raises: a file that does not parse is exactly the one whose error
    message must not show a password.  An indented line with no assignment
    before it is counted as secret too: it is the wrapped half of something.
    """
    values: list[str] = []
    current_secret = False
    in_value = False
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            in_value = False
            continue
        if line.startswith((" ", "\t")):
            if current_secret or not in_value:
                values.append(line.strip())
            continue
        if line.startswith(("[", "#", ";")):
            in_value = current_secret = False
            continue
        key = _key_of(line)
        in_value = True
        current_secret = names.is_secret(key) or not (set(line) & {"=", ":"})
        if current_secret:
            if set(line) & {"=", ":"}:
                values.append(_value_of(line))
            else:
                # "password s3cret" (a mistyped assignment) or a bare wrapped
                # value: the whole line, and what follows its first word.
                values.append(line.strip())
                values.append(_value_of(line))
    return [v for v in values if v]


def line_may_be_shown(text: str, lineno: int, names: SecretNames) -> bool:
    """Whether line ``lineno`` (1-based) of ``text`` may be quoted in a message.

    Only a section header, or the first line of an assignment to an option
    known not to be secret.  A continuation line, a line without ``=`` or
    ``:``, an unknown key: hidden, since any of them may be half a password.
    """
    lines = text.splitlines()
    if not 1 <= lineno <= len(lines):
        return False
    line = lines[lineno - 1].rstrip()
    if not line or line.startswith((" ", "\t")):
        return False
    if line.startswith("["):
        return True
    if not (set(line) & {"=", ":"}):
        return False
    return names.is_known_public(_key_of(line))


def secret_values_in_parsed(
    parsed: Iterable[Mapping[str, Mapping[str, Sequence[str]]]], names: SecretNames
) -> list[str]:
    """Secret values in oslo.config's parsed files (``{section: {key: [values]}}`` per file).

    Each value and each of its lines: oslo.config joins a multi-line value
    with a newline, and a message may quote one line of it.
    """
    values: list[str] = []
    for sections in parsed:
        for keys in sections.values():
            for key, items in keys.items():
                if names.is_secret(key):
                    for item in items:
                        values.append(str(item))
                        values.extend(part.strip() for part in str(item).splitlines())
    return [v for v in values if v]


class SecretLogFilter(logging.Filter):
    """Masks secrets in the records of the loggers it is attached to.

    A re-initialiser's exception (a driver that could not connect, quoting
    its URL) is logged with its traceback; the state file and STATUS= mask
    it, the log must too.  ``secrets`` is called per record (a handful per
    reload), so values that only the new files hold are known by then.
    """

    def __init__(self, secrets: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self._secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        from .diff import mask_text

        values = list(self._secrets())
        if not values:
            return True
        message = record.getMessage()
        masked = mask_text(message, values)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, values)
        return True
