"""Fixtures of the stack tests: the cinder venv, the backing servers, a stack."""

from __future__ import annotations

import os
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
    # Shown by pytest only when the test failed (captured output).
    for log in sorted([*path.glob("log/*.log"), *path.glob("*.out")]):
        print(f"----- {log.name} (last 4000 chars) -----\n{log.read_text(errors='replace')[-4000:]}")
    if os.environ.get("CRSTACK_KEEP"):
        print(f"kept {path} (CRSTACK_KEEP is set)")
    else:
        shutil.rmtree(path, ignore_errors=True)


# The real user manager (tests/harness, issue 4), as tests/managers uses it.
from harness.fixtures import harness_workdir, systemd252  # noqa: E402, F401
