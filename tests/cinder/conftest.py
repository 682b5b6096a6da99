"""Fixtures for the real-cinder tests: the cached venv, a synced database, a running service."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cinder_venv import cinder_venv as build_cinder_venv  # noqa: E402
from cinderproc import CinderService, db_template  # noqa: E402
from cinderunit import cinder_unit  # noqa: E402, F401  (rendered units under systemd 252)
from harness.fixtures import harness_workdir, systemd252  # noqa: E402, F401  (the real-manager harness, issue 4)


@pytest.fixture(scope="session")
def cinder_venv() -> Path:
    """Real cinder 29 from PyPI with this project installed editable (built once, cached)."""
    return build_cinder_venv()


@pytest.fixture(scope="session")
def cinder_db(cinder_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return db_template(cinder_venv, tmp_path_factory.mktemp("cinder-db"))


@pytest.fixture
def start_cinder(cinder_venv: Path, cinder_db: Path, tmp_path: Path) -> Iterator[Callable[..., CinderService]]:
    started: list[CinderService] = []

    def start(
        service: str = "cinder-volume",
        config: Callable[[Path], str] | None = None,
        env: dict[str, str] | None = None,
    ) -> CinderService:
        workdir = tmp_path / f"{service}-{len(started)}"
        workdir.mkdir()
        svc = CinderService(cinder_venv, workdir, cinder_db, service, config(workdir) if config else None, env)
        started.append(svc)
        svc.wait_ready()
        return svc

    yield start
    for svc in started:
        svc.stop()
