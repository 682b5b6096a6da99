"""Shared test set-up: the repo's tests/ directory is importable (refdaemon,
helpers), and every test gets a private state directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The groups pytest-xdist keeps together (``--dist loadgroup``, as tools/test runs it).

    A module is one group: its module-scoped set-ups (the fleet's hosts, a
    Debian root's services) run once, in one worker.  The Ceph tests share
    one group across modules: their clusters listen on fixed loopback
    addresses (127.0.0.1 and 127.0.0.2, port 6789).
    """
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        group = "ceph" if item.get_closest_marker("ceph") is not None else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
