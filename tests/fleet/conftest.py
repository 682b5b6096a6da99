"""Fixtures of the fleet test: one fleet per test module (starting it is most of the cost)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.ceph import ceph_available
from harness.fixtures import namespaces_unavailable
from stack.cinderenv import CACHE, VENV_ENV, CinderVenv, find_cinder_venv

from .fleet import Fleet, running_fleet


def _unavailable() -> str | None:
    """Why network-namespace hosts cannot exist here at all (then, and only then, a skip)."""
    reason = namespaces_unavailable()
    if reason:
        return f"the fleet's hosts are namespaces: {reason}"
    if shutil.which("ip") is None:
        return "the fleet's network needs iproute2's `ip` (netns, veth, bridge)"
    if not os.path.isdir("/sys/class/net") or not os.path.exists("/proc/self/ns/net"):
        return "this kernel has no network namespaces"
    return None


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    missing = ceph_available()
    if missing:
        pytest.fail(missing)  # CI installs ceph (tools/apt-packages.txt): not a skip
    venv: CinderVenv | None = find_cinder_venv()
    if venv is None:
        pytest.fail(f"no cinder virtualenv in {CACHE} (nor ${VENV_ENV}); run tools/setup")
    # Short: unix sockets of the hosts' managers live under it.
    workdir = Path(tempfile.mkdtemp(prefix="crf."))
    workdir.chmod(0o755)
    try:
        with running_fleet(workdir, venv) as running:
            yield running
    finally:
        if os.environ.get("CRFLEET_KEEP"):
            print(f"kept {workdir} (CRFLEET_KEEP is set)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
