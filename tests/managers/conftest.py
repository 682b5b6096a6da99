"""Real-manager tests: the harness's fixtures (tests/harness/fixtures.py).

pytest only honours ``pytest_plugins`` in the top-level conftest; another
test directory that wants these fixtures imports them the same way, or the
top-level tests/conftest.py adds ``pytest_plugins = ["harness.fixtures"]``.
"""

from harness.fixtures import (
    debian13_root,
    deploy_refdaemon,
    harness_workdir,
    manager_path,
    systemd252,
    systemd257,
    systemd262,
    sysv_root,
)

__all__ = [
    "debian13_root",
    "deploy_refdaemon",
    "harness_workdir",
    "manager_path",
    "systemd252",
    "systemd257",
    "systemd262",
    "sysv_root",
]
