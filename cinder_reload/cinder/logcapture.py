"""The reason cinder logged instead of raising.

cinder catches several start-up failures and only logs them: ``init_host``
("Failed to initialize driver.") and ``cinder.cmd.volume._launch_service``
("Volume service ... failed to start.").  The exception on that record is
the only place the driver's own reason exists, and it is what the operator
must be told.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ErrorRecords", "capturing_errors", "first_line"]


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def reason(self) -> str | None:
        """The last exception logged (message and exception), else the last message."""
        for record in reversed(self.records):
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                return f"{record.getMessage()} {type(exc).__name__}: {first_line(str(exc))}".strip()
        return self.records[-1].getMessage() if self.records else None


def first_line(text: str, limit: int = 300) -> str:
    """An exception's message without the traceback some carry inside it.

    oslo.utils' ImportError text embeds the whole traceback after `` ([``.
    """
    line = text.split(" ([", 1)[0].strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."


@contextmanager
def capturing_errors(logger_name: str, records: ErrorRecords | None = None) -> Iterator[ErrorRecords]:
    handler = records if records is not None else ErrorRecords()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
