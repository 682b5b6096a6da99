"""Fixtures for the packaging tests (pytest_plugins of the harness for the root)."""

from __future__ import annotations

import pytest
from harness.packages import BuiltPackages, build_packages


@pytest.fixture(scope="session")
def built_packages(tmp_path_factory: pytest.TempPathFactory) -> BuiltPackages:
    """The .debs and .rpms of this tree, built and linted once per session."""
    return build_packages(tmp_path_factory.mktemp("packages"))
