"""shellcheck and checkbashisms on the committed init scripts and their /etc/default files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (REPO / "initscripts").iterdir() if p.is_file())
DEFAULTS = sorted((REPO / "initscripts" / "default").iterdir())


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # tools/setup installs it (tools/apt-packages.txt): missing means a broken setup
        pytest.fail(f"{name} is not installed; run ./tools/setup")
    return path


def test_there_are_four_scripts() -> None:
    assert [p.name for p in SCRIPTS] == ["cinder-api", "cinder-backup", "cinder-scheduler", "cinder-volume"]


def test_shellcheck_reports_nothing() -> None:
    result = subprocess.run(
        [_tool("shellcheck"), "--shell=sh", *map(str, SCRIPTS + DEFAULTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_checkbashisms_reports_nothing() -> None:
    result = subprocess.run(
        [_tool("checkbashisms"), "--posix", *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_lsb_headers() -> None:
    for script in SCRIPTS:
        text = script.read_text()
        assert text.startswith("#!/bin/sh\n### BEGIN INIT INFO\n")
        assert f"# Provides:          {script.name}\n" in text
        assert "# Required-Start:    $network $local_fs $remote_fs $syslog\n" in text
        assert "# Default-Start:     2 3 4 5\n# Default-Stop:      0 1 6\n" in text
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "--exec" not in code and "--pidfile" in code and "--user" in code  # not the interpreter
        assert "{start|stop|status|restart|try-restart|reload|force-reload}" in text
