"""Running commands and waiting on conditions, with deadlines and timings."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["CommandResult", "WaitTimeout", "run", "wait_until"]

T = TypeVar("T")


@dataclass(frozen=True)
class CommandResult:
    """What an operator sees of a command: exit status, output, how long it took."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> CommandResult:
        if self.returncode != 0:
            raise AssertionError(
                f"{' '.join(self.argv)} exited {self.returncode} after {self.duration:.2f}s:\n{self.output}"
            )
        return self

    def __str__(self) -> str:
        return f"`{' '.join(self.argv)}` -> {self.returncode} in {self.duration:.3f}s: {self.output.strip()!r}"


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    input: str | None = None,
) -> CommandResult:
    started = time.monotonic()
    proc = subprocess.run(
        list(argv),
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


class WaitTimeout(AssertionError):
    pass


def wait_until(
    probe: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.02,
) -> T:
    """Call ``probe`` until ``accept`` says yes; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last seen: {value!r}")
        time.sleep(interval)  # a poll interval, not a guess at how long something takes


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
