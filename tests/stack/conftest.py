"""Fixtures of the stack tests: the cinder venv, the backing servers, a stack."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cinderenv import CACHE, VENV_ENV, CinderVenv, find_cinder_venv
from .infra import Backing, backing_services


@pytest.fixture(scope="session")
def cinder_venv() -> CinderVenv:
    venv = find_cinder_venv()
    if venv is None:
        # Not a skip: CI must run these.  tools/setup builds the venv (issue 5).
        pytest.fail(f"no cinder virtualenv in {CACHE} (nor ${VENV_ENV}); run tools/setup")
    return venv


@pytest.fixture
def backing() -> Iterator[Backing]:
    with backing_services() as services:
        yield services


@pytest.fixture
def stack_workdir() -> Iterator[Path]:
    # Short: the user manager's sockets live under it.
    path = Path(tempfile.mkdtemp(prefix="crstack."))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
