"""Fixtures of the real-process tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BASE_CONFIG, RefDaemon


@pytest.fixture
def plain(tmp_path: Path) -> Iterator[RefDaemon]:
    """The reference daemon on BASE_CONFIG, ready (READY=1 received); stopped afterwards."""
    d = RefDaemon(tmp_path, BASE_CONFIG)
    d.wait_ready()
    yield d
    d.stop()
