"""The configuration files of one reload, read once.

A reload reads each file exactly once, into a :class:`FileSnapshot`; the
validation, the main process's new configuration and every worker work from
those bytes.  Reading twice (validate, then let oslo.config read again to
apply) would apply a file nobody validated when it changed in between, and
describe the other one in ``changed``.

Reading is guarded the way a service that must not hang reads a path an
operator controls: ``O_NONBLOCK`` so a FIFO cannot block ``open()``, ``fstat``
before reading so a device or socket is refused, and a size bound so
``/dev/zero`` behind a symlink cannot eat the memory.

:func:`parsing_from` makes oslo.config parse from the snapshot instead of the
disk, so oslo.config's own parser (its syntax, its error messages) stays the
only one.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from oslo_config import cfg, iniparser

__all__ = ["MAX_CONFIG_BYTES", "FileSnapshot", "UnsafeFile", "parsing_from"]

#: Far above any real cinder.conf (a 50-backend one is ~20 KiB).
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class UnsafeFile(OSError):
    """A path that is not a regular configuration file (or too big to be one)."""


def _fix(path: str) -> str:
    # oslo.config's own normalisation (cfg._fixpath), so lookups match.
    return os.path.abspath(os.path.expanduser(path))


def read_config_bytes(path: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of a regular file, never blocking and never more than ``limit``."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
            raise UnsafeFile(errno.EINVAL, f"is {kind}, not a regular file", path)
        if info.st_size > limit:
            raise UnsafeFile(errno.EFBIG, f"is {info.st_size} bytes, more than the {limit} a config file may be", path)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # grew while we read it
            raise UnsafeFile(errno.EFBIG, f"is more than the {limit} bytes a config file may be", path)
        return b"".join(chunks)
    finally:
        os.close(fd)


class FileSnapshot:
    """Path -> text of every configuration file one reload looked at.

    A path is read the first time anything asks for it and never again; a
    failure to read is remembered too, so every reader of the snapshot sees
    the same outcome.
    """

    def __init__(self, texts: dict[str, str] | None = None) -> None:
        self._texts: dict[str, str] = {_fix(p): t for p, t in (texts or {}).items()}
        self._errors: dict[str, OSError | UnicodeDecodeError] = {}
        self._lock = threading.Lock()

    def text(self, path: str) -> str:
        """The file's text; raises the OSError (or UnicodeDecodeError) reading it raised."""
        key = _fix(path)
        with self._lock:
            if key in self._texts:
                return self._texts[key]
            if key in self._errors:
                raise self._errors[key]
            try:
                text = read_config_bytes(key).decode("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                self._errors[key] = exc
                raise
            self._texts[key] = text
            return text

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._texts)

    def texts(self) -> dict[str, str]:
        with self._lock:
            return dict(self._texts)


_PARSE_LOCK = threading.Lock()


@contextmanager
def parsing_from(snapshot: FileSnapshot) -> Iterator[None]:
    """While the block runs, oslo.config's file parser reads from ``snapshot``.

    ``ConfigParser.parse`` is oslo.config's one place that opens a file (its
    ``_parse_file`` turns ENOENT and EACCES into its own "not found" and
    "permission denied"); pointing it at the snapshot for the duration of one
    parse keeps every message and rule oslo.config's own.  The parse is
    serialised: under eventlet it does not yield (no I/O), under threads the
    lock keeps a concurrent parse off the swapped method.
    """
    original = cfg.ConfigParser.parse

    def parse(parser: cfg.ConfigParser) -> None:
        try:
            text = snapshot.text(parser.filename)
        except UnicodeDecodeError as exc:
            raise iniparser.ParseError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", 0, "") from None
        iniparser.BaseParser.parse(parser, text.splitlines(keepends=True))

    with _PARSE_LOCK:
        cfg.ConfigParser.parse = parse  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            cfg.ConfigParser.parse = original  # type: ignore[method-assign]
