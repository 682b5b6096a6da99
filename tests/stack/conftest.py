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
from .units import UnitStack


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


# The real user managers (tests/harness, issue 4), as tests/managers uses them.
from harness.fixtures import harness_workdir, namespaces_unavailable, systemd252  # noqa: E402, F401
from harness.managers import SystemdTrixie257, UserManager  # noqa: E402


@pytest.fixture
def systemd257_stack(stack_workdir: Path, cinder_venv: CinderVenv) -> Iterator[UserManager]:
    """systemd 257 (Debian 13 root) with what the stack's units need bind-mounted:
    the run's directory, the cinder venv and stack deps (the cache), and the
    venv's base interpreter."""
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(reason)
    manager = SystemdTrixie257(stack_workdir, binds=[CACHE, cinder_venv.interpreter_prefix])
    try:
        yield manager
    finally:
        manager.close()


#: cinder's two oslo.service backends: eventlet, and threading (cotyledon), which
#: OpenStack moves every service to (eventlet removal, 2026.2 - 2027.2).
SERVICE_BACKENDS = {"eventlet": {}, "threading": {"OS_CINDER_DISABLE_EVENTLET_PATCHING": "true"}}


@pytest.fixture(params=sorted(SERVICE_BACKENDS))
def volume_unit(
    request: pytest.FixtureRequest,
    cinder_venv: CinderVenv,
    backing: Backing,
    stack_workdir: Path,
    systemd252: UserManager,  # noqa: F811
) -> Iterator[tuple[UnitStack, Backing]]:
    """cinder-volume alone, as the rendered unit (the stack's fixtures: venv, servers, workdir, manager),
    on each of oslo.service's backends."""
    stack = UnitStack(
        stack_workdir,
        cinder_venv,
        backing,
        manager=systemd252,
        services=("cinder-volume",),
        slow_op_seconds=0.0,
        unit_env=dict(SERVICE_BACKENDS[request.param]),
    )
    try:
        stack.db_sync()
        stack.start_service("cinder-volume")
        systemd252.wait_for(stack.unit("cinder-volume"), 180, ActiveState="active", SubState="running")
        # The switch cinder reads (cinder.monkey_patch) reached the main process, or not.
        environ = Path(f"/proc/{stack.main_pid('cinder-volume')}/environ").read_bytes().split(b"\0")
        assert (b"OS_CINDER_DISABLE_EVENTLET_PATCHING=true" in environ) == (request.param == "threading")
        yield stack, backing
    finally:
        stack.stop()
